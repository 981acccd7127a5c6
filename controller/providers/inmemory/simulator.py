"""The simulated cloud: instance groups whose instances boot, fail, and run kubelets.

:class:`Simulator` implements :class:`~controller.providers.base.InstanceGroupProvider`
in-process (the HTTP server in :mod:`.server` is a thin layer over it), plus a few calls for
tests and chaos (:meth:`Simulator.fail_instance`, :meth:`Simulator.inspect`).

Behaviour:

- A group is kept at its desired capacity: ``pending`` and ``running`` instances count; when
  one fails or is terminated without shrinking the group, a replacement is launched at once.
  When the capacity is lowered by :meth:`set_capacity` the simulator picks the victims, as a
  cloud does: from the zone with the most instances, then instances of an older template
  version, then still-pending ones, then the newest.
- Launches happen in batches of at most ``launch_batch`` (:data:`LAUNCH_BATCH`): a call
  that raises the capacity launches the first batch, and the driver launches the rest, one
  batch per step, yielding to the event loop in between; so ``describe_group`` right after a
  large raise may list fewer instances than the capacity (as a cloud's does). Every step is
  linear in the instances it looks at (no per-instance recount), so no capacity blocks the
  event loop for long.
- A launch picks the group's least-populated zone (ties in the order of the zones, so an empty
  group fills them round robin) and the current template version. It boots after
  ``bootDelaySeconds`` ±20% jitter, or fails then with probability ``failureRate``; a failed
  instance stays listed as ``failed`` for ``failed_retention`` seconds, and never registers a
  Node. Random draws come from one generator seeded by ``seed``: the same seed and the same
  calls give the same instances, zones and failures.
- A booted instance registers its Node through the :class:`~.nodes.NodeRegistrar`; the Node
  turns ``Ready`` ``readyDelaySeconds`` after registration. A terminated (or crashed) instance
  has its Node marked ``Ready=Unknown``; the driver never deletes it. Registrar calls run in
  their own tasks (at most ``node_concurrency`` at once), one at a time per instance; a failed
  call is logged and retried with exponential backoff (``node_retry_initial`` doubling up to
  ``node_retry_max``). An unreachable workload cluster never blocks the API or other groups.
- The cloud's node lifecycle controller (:mod:`.nodelifecycle`) runs with the simulator when
  it can reach workload Nodes (``cloud_nodes``, else the registrar if it can list and delete
  Nodes, as :class:`~.workload.KubeNodeRegistrar` can): every ``node_monitor_period`` seconds
  it deletes the not-Ready Nodes with an ``inmemory://`` provider ID whose instance is in no
  group (terminated, or never this cloud's), in every cluster a group of this simulator
  names or named. :attr:`Simulator.nodes_deleted` counts them.
- ``delete_instance`` of an instance that already left the group succeeds (it is remembered,
  up to ``tombstone_limit`` per group), so the call is safe to retry; shrinking never takes the
  group below ``min_size`` (``ValidationError``); deleting a ``failed`` instance never lowers
  the capacity (it no longer counted, and its replacement is already there).
- Ownership: ``ensure_group`` and ``delete_group`` of an existing group whose tags lack any
  of the caller's ``owner_tags`` raise
  :class:`~controller.providers.base.GroupOwnedByOthersError` and change nothing.
- ``ensure_group`` clamps the capacity of an existing group into a new
  ``[min_size, max_size]``, and creates a group at ``min_size`` (0 unless a minimum is set).
- All times come from the injectable :class:`~.clock.SimClock`; with the default clock the
  simulator runs in virtual time under ``looptime``.

State: with ``state_file``, the state is loaded on :meth:`start` (instances that were booting
keep booting towards their original deadlines) and written atomically shortly after every
change (see :mod:`.persistence`) and on :meth:`aclose`.

Errors are the protocol's typed errors: :class:`GroupNotFoundError` (``GroupNotFound``),
:class:`PermanentError` with ``InstanceNotFound`` or ``ValidationError``, and whatever the
current :class:`~.faults.Faults` inject (throttling, retryable errors, hangs, latency).
API calls made before :meth:`start` raise :class:`RuntimeError`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import structlog

from controller.providers.base import (
    GroupNotFoundError,
    GroupOwnedByOthersError,
    GroupSpec,
    GroupStatus,
    Instance,
    InstanceState,
    PermanentError,
    owned,
)
from controller.providers.inmemory.clock import LoopWallClock, SimClock
from controller.providers.inmemory.faults import FaultGate, Faults
from controller.providers.inmemory.names import instance_id, node_name, provider_id
from controller.providers.inmemory.nodelifecycle import NodeLifecycleController, WorkloadNodes
from controller.providers.inmemory.nodes import NodeRegistrar, NodeRegistration
from controller.providers.inmemory.persistence import (
    DebouncedSaver,
    StateFileError,
    load_state_document,
)
from controller.providers.inmemory.state import (
    GroupRecord,
    InstancePhase,
    InstanceRecord,
    NodePhase,
    decode_state,
    encode_state,
)
from controller.providers.inmemory.template import LaunchTemplate, validate_zones

__all__ = ["LAUNCH_BATCH", "GroupView", "InstanceView", "Simulator"]

_log = structlog.get_logger(__name__)

#: Deadlines this close to now count as due (keeps the driver from spinning on rounding).
_EPSILON = 1e-3
_MAX_NAME = 255
#: Instances launched per step at most: a step runs without yielding, so this bounds how
#: long a huge capacity blocks the event loop (a few milliseconds per batch).
LAUNCH_BATCH = 256

_T = TypeVar("_T")
NodeAction = Literal["register", "ready", "unknown"]


@dataclass(frozen=True, slots=True)
class InstanceView:
    """A read-only copy of one instance's record, for tests and diagnostics."""

    instance_id: str
    provider_id: str
    node_name: str
    zone: str
    phase: InstancePhase
    version: str
    node: NodePhase
    launched_at: float
    cluster: str


@dataclass(frozen=True, slots=True)
class GroupView:
    """A read-only copy of one group's record, for tests and diagnostics."""

    name: str
    cluster: str
    desired: int
    min_size: int
    max_size: int | None
    zones: tuple[str, ...]
    template_version: str
    instances: tuple[InstanceView, ...]
    tags: tuple[tuple[str, str], ...] = ()


class Simulator:
    """A small cloud of instance groups; see the module docstring."""

    def __init__(
        self,
        *,
        registrar: NodeRegistrar | None = None,
        clock: SimClock | None = None,
        seed: int | None = None,
        state_file: Path | None = None,
        save_debounce: float = 0.2,
        failed_retention: float = 10.0,
        terminate_delay: float = 0.0,
        node_retry_initial: float = 0.5,
        node_retry_max: float = 30.0,
        node_concurrency: int = 16,
        tombstone_limit: int = 1000,
        node_monitor_period: float = 5.0,
        cloud_nodes: WorkloadNodes | None = None,
        launch_batch: int = LAUNCH_BATCH,
    ) -> None:
        for option, value in (
            ("save_debounce", save_debounce),
            ("failed_retention", failed_retention),
            ("terminate_delay", terminate_delay),
        ):
            if value < 0:
                raise ValueError(f"{option} must not be negative, got {value}")
        if node_retry_initial <= 0 or node_retry_max < node_retry_initial:
            raise ValueError("node retries need 0 < node_retry_initial <= node_retry_max")
        if node_concurrency < 1 or tombstone_limit < 1 or launch_batch < 1:
            raise ValueError(
                "node_concurrency, tombstone_limit and launch_batch must be at least 1"
            )
        if not node_monitor_period > 0:
            raise ValueError(f"node_monitor_period must be positive, got {node_monitor_period}")
        self._registrar = registrar
        self._clock: SimClock = clock or LoopWallClock()
        self._rng = random.Random(seed)
        self._gate = FaultGate(
            clock=self._clock, rng=random.Random(None if seed is None else f"faults-{seed}")
        )
        self._state_file = state_file
        self._failed_retention = failed_retention
        self._terminate_delay = terminate_delay
        self._node_retry_initial = node_retry_initial
        self._node_retry_max = node_retry_max
        self._node_slots = asyncio.Semaphore(node_concurrency)
        self._tombstone_limit = tombstone_limit
        self._launch_batch = launch_batch
        self._groups: dict[str, GroupRecord] = {}
        #: Terminated instances whose Node still has to be marked Unknown.
        self._gone: dict[str, InstanceRecord] = {}
        self._node_tasks: dict[str, asyncio.Task[None]] = {}
        self._node_attempts: dict[str, int] = {}
        self._node_retry_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._saver = (
            DebouncedSaver(
                path=state_file, snapshot=self._snapshot, clock=self._clock, debounce=save_debounce
            )
            if state_file is not None
            else None
        )
        if cloud_nodes is None and isinstance(registrar, WorkloadNodes):
            cloud_nodes = registrar
        self._lifecycle = (
            NodeLifecycleController(
                nodes=cloud_nodes,
                existing=self._existing_provider_ids,
                active_clusters=self._active_clusters,
                clock=self._clock,
                period=node_monitor_period,
            )
            if cloud_nodes is not None
            else None
        )
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the state file (if any) and start the clock-driven behaviour."""
        if self._started:
            return
        if self._state_file is not None:
            document = await asyncio.to_thread(load_state_document, self._state_file)
            if document is not None:
                try:
                    self._groups, self._gone = decode_state(
                        document, tombstone_limit=self._tombstone_limit
                    )
                except ValueError as exc:
                    raise StateFileError(f"state file {self._state_file}: {exc}") from exc
                _log.info(
                    "simulator state loaded",
                    path=str(self._state_file),
                    groups=len(self._groups),
                    instances=sum(len(g.instances) for g in self._groups.values()),
                )
        now = self._clock.now()
        for group in self._groups.values():
            self._converge(group, now)
        self._started = True
        self._driver = asyncio.create_task(self._drive(), name="simulator driver")
        if self._lifecycle is not None:
            for inst in self._gone.values():
                self._lifecycle.watch(inst.cluster)
            self._lifecycle.start()
        if self._saver is not None:
            self._saver.start()

    async def aclose(self) -> None:
        """Stop the driver and registrar calls, release hung calls, write the final state."""
        self._gate.release_hung_calls()
        tasks = [t for t in (self._driver, *self._node_tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._driver = None
        if self._lifecycle is not None:
            await self._lifecycle.aclose()
        self._node_tasks.clear()
        if self._saver is not None:
            await self._saver.aclose()
        self._started = False

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults:
        return self._gate.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._gate.faults = faults
        _log.info("simulator faults set", **faults.to_json())

    def release_hung_calls(self) -> None:
        """Make calls hung by the ``hang`` fault fail now (a server shutting down calls this)."""
        self._gate.release_hung_calls()

    # ------------------------------------------------------------------ provider protocol

    async def ensure_group(self, *, spec: GroupSpec) -> GroupStatus:
        return await self._call("ensure_group", lambda: self._ensure(spec))

    async def describe_group(self, *, name: str) -> GroupStatus:
        return await self._call("describe_group", lambda: self._status(self._group(name)))

    async def list_groups(self) -> list[GroupStatus]:
        """Every group, by name (one call serving many pools)."""
        return await self._call(
            "list_groups", lambda: [self._status(g) for _, g in sorted(self._groups.items())]
        )

    async def set_capacity(self, *, name: str, desired: int) -> None:
        await self._call("set_capacity", lambda: self._set_capacity(name, desired))

    async def delete_instance(self, *, name: str, instance_id: str, shrink: bool) -> None:
        await self._call(
            "delete_instance", lambda: self._delete_instance(name, instance_id, shrink)
        )

    async def delete_group(self, *, name: str, owner_tags: Mapping[str, str]) -> None:
        await self._call("delete_group", lambda: self._delete_group(name, owner_tags))

    # ------------------------------------------------------------------ chaos and inspection

    async def fail_instance(self, *, name: str, instance_id: str) -> None:
        """Crash a pending or running instance: it turns ``failed`` and is replaced.

        Not subject to faults (it is the test's hand, not an API client).
        """
        self._require_started()
        group = self._group(name)
        inst = group.instances.get(instance_id)
        if inst is None:
            raise _instance_not_found(name, instance_id)
        if inst.phase == "failed":
            return
        if not inst.active:
            raise _validation(f"instance {instance_id} is {inst.phase} and cannot fail")
        now = self._clock.now()
        inst.phase = "failed"
        inst.failed_at = now
        _log.info("instance crashed", group=name, instance=instance_id)
        self._converge(group, now)
        self._changed()

    def inspect(self, *, name: str) -> GroupView | None:
        """A copy of the group's record, free of faults; None when there is no such group."""
        group = self._groups.get(name)
        if group is None:
            return None
        return GroupView(
            name=group.name,
            cluster=group.cluster,
            desired=group.desired,
            min_size=group.min_size,
            max_size=group.max_size,
            zones=group.zones,
            template_version=group.template_version,
            instances=tuple(_view(inst) for inst in _ordered(group.instances.values())),
            tags=tuple(sorted(group.tags.items())),
        )

    def group_names(self) -> list[str]:
        return sorted(self._groups)

    @property
    def nodes_deleted(self) -> int:
        """Nodes of gone instances the cloud's node lifecycle controller has deleted."""
        return 0 if self._lifecycle is None else self._lifecycle.deleted

    @property
    def node_monitor_passes(self) -> int:
        """Passes the node lifecycle controller has completed (0 when it is off)."""
        return 0 if self._lifecycle is None else self._lifecycle.passes

    def watched_clusters(self) -> frozenset[str]:
        """The workload clusters the node lifecycle controller sweeps (empty when it is off)."""
        return frozenset() if self._lifecycle is None else self._lifecycle.watched()

    def terminated(self) -> list[InstanceView]:
        """Instances gone from their group whose Node is not yet marked Unknown."""
        return [_view(inst) for inst in _ordered(self._gone.values())]

    # ------------------------------------------------------------------ operations

    async def _call(self, operation: str, action: Callable[[], _T]) -> _T:
        self._require_started()
        await self._gate.before(operation)
        result = action()
        self._gate.after(operation)
        return result

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the simulator is not running: use `async with Simulator(...)`")

    def _ensure(self, spec: GroupSpec) -> GroupStatus:
        template, launch, zones = _validate_spec(spec)
        now = self._clock.now()
        group = self._groups.get(spec.name)
        changed = True
        if group is not None:
            _check_owner(group, spec.owner_tags)
        if group is None:
            group = GroupRecord(
                name=spec.name,
                cluster=spec.cluster,
                template=template,
                template_version=spec.template_version,
                launch=launch,
                min_size=spec.min_size,
                max_size=spec.max_size,
                spec_zones=zones,
                bootstrap_data=bytes(spec.bootstrap_data),
                tags=dict(spec.tags),
                desired=spec.min_size,
                created_at=now,
                tombstones=deque(maxlen=self._tombstone_limit),
            )
            self._groups[spec.name] = group
            _log.info("group created", group=spec.name, cluster=spec.cluster)
        else:
            before = _shape(group)
            if group.template_version != spec.template_version:
                _log.info(
                    "group template changed",
                    group=spec.name,
                    old=group.template_version,
                    new=spec.template_version,
                )
            group.cluster = spec.cluster
            group.template = template
            group.template_version = spec.template_version
            group.launch = launch
            group.min_size = spec.min_size
            group.max_size = spec.max_size
            group.spec_zones = zones
            group.bootstrap_data = bytes(spec.bootstrap_data)
            group.tags = dict(spec.tags)
            clamped = max(group.desired, group.min_size)
            if group.max_size is not None:
                clamped = min(clamped, group.max_size)
            group.desired = clamped
            changed = _shape(group) != before
        if self._lifecycle is not None:
            self._lifecycle.watch(group.cluster)
        if self._converge(group, now) or changed:
            self._changed()  # a no-op ensure (every resync) neither wakes nor writes
        return self._status(group)

    def _set_capacity(self, name: str, desired: int) -> None:
        group = self._group(name)
        if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0:
            raise _validation(f"desired capacity must be a non-negative integer, got {desired!r}")
        if desired < group.min_size or (group.max_size is not None and desired > group.max_size):
            raise _validation(
                f"desired capacity {desired} is outside the group's bounds "
                f"(min {group.min_size}, max {_bound(group.max_size)})"
            )
        if desired != group.desired:
            _log.info("group capacity set", group=name, old=group.desired, new=desired)
        group.desired = desired
        self._converge(group, self._clock.now())
        self._changed()

    def _delete_instance(self, name: str, instance_id: str, shrink: bool) -> None:
        group = self._group(name)
        inst = group.instances.get(instance_id)
        if inst is None:
            if instance_id in group.tombstones:
                return
            raise _instance_not_found(name, instance_id)
        if inst.phase == "terminating":
            return
        if shrink and inst.active:
            if group.desired - 1 < group.min_size:
                raise _validation(
                    f"cannot shrink group {name} below its minimum size {group.min_size}"
                )
            group.desired -= 1
        now = self._clock.now()
        _log.info("instance deleted", group=name, instance=instance_id, shrink=shrink)
        self._terminate(group, inst, now)
        self._converge(group, now)
        self._changed()

    def _delete_group(self, name: str, owner_tags: Mapping[str, str]) -> None:
        group = self._groups.get(name)
        if group is None:
            return
        _check_owner(group, owner_tags)
        del self._groups[name]
        for inst in list(group.instances.values()):
            self._retire(group, inst)
        _log.info("group deleted", group=name)
        self._changed()

    # ------------------------------------------------------------------ capacity

    def _converge(self, group: GroupRecord, now: float) -> bool:
        """Launch or terminate towards the desired capacity; True if anything changed.

        At most ``launch_batch`` instances are launched per call; a group still short wakes
        the driver, which launches the next batch after yielding to the event loop. Each
        step is linear in the group's size: zone counts and taken IDs are computed once.
        """
        active = group.active()
        missing = group.desired - len(active)
        if missing > 0:
            batch = min(missing, self._launch_batch)
            counts = Counter(inst.zone for inst in active)
            taken = self._taken_ids()
            for _ in range(batch):
                self._launch(group, now, counts=counts, taken=taken)
            if batch < missing:
                self._wake.set()  # the driver launches the rest, one batch per step
        elif missing < 0:
            for victim in _victims(active, count=-missing, current=group.template_version):
                self._terminate(group, victim, now)
        return missing != 0

    def _backlog(self, now: float) -> bool:
        """Launch the next batch of every group still short; True if one still is."""
        short = False
        for group in list(self._groups.values()):
            if group.desired <= sum(1 for inst in group.instances.values() if inst.active):
                continue
            self._converge(group, now)
            self._changed()
            short = short or group.desired > len(group.active())
        return short

    def _launch(
        self, group: GroupRecord, now: float, *, counts: Counter[str], taken: set[str]
    ) -> None:
        """Launch one instance; ``counts`` (active per zone) and ``taken`` are updated."""
        zones = group.zones
        zone = min(zones, key=lambda z: (counts[z], zones.index(z)))
        counts[zone] += 1
        iid = self._new_instance_id(group, taken=taken)
        taken.add(iid)
        launch = group.launch
        boot_delay = launch.boot_delay * self._rng.uniform(0.8, 1.2)
        will_fail = self._rng.random() < launch.failure_rate
        group.instances[iid] = InstanceRecord(
            instance_id=iid,
            group=group.name,
            cluster=group.cluster,
            provider_id=provider_id(zone=zone, instance_id=iid),
            node_name=node_name(iid),
            zone=zone,
            version=group.template_version,
            launched_at=now,
            boot_at=now + boot_delay,
            will_fail=will_fail,
            ready_delay=launch.ready_delay,
            kubelet_version=launch.kubernetes_version,
            instance_type=launch.instance_type,
        )
        _log.debug("instance launched", group=group.name, instance=iid, zone=zone)

    def _new_instance_id(self, group: GroupRecord, *, taken: set[str]) -> str:
        while True:
            iid = instance_id(group=group.name, suffix=self._rng.getrandbits(32))
            if iid not in taken:
                return iid

    def _taken_ids(self) -> set[str]:
        """Every instance ID in use or remembered: in a group, gone, or a tombstone."""
        taken = set(self._gone)
        for group in self._groups.values():
            taken.update(group.instances)
            taken.update(group.tombstones)
        return taken

    def _terminate(self, group: GroupRecord, inst: InstanceRecord, now: float) -> None:
        if self._terminate_delay > 0:
            inst.phase = "terminating"
            inst.terminate_at = now + self._terminate_delay
        else:
            self._retire(group, inst)

    def _retire(self, group: GroupRecord, inst: InstanceRecord) -> None:
        """The instance leaves its group; its Node, if any, still has to be marked Unknown."""
        group.instances.pop(inst.instance_id, None)
        group.tombstones.append(inst.instance_id)
        inst.phase = "terminated"
        if self._registrar is not None and (
            inst.node in ("registered", "ready") or inst.instance_id in self._node_tasks
        ):
            self._gone[inst.instance_id] = inst
        else:
            self._forget(inst.instance_id)

    def _forget(self, iid: str) -> None:
        self._gone.pop(iid, None)
        self._node_attempts.pop(iid, None)
        self._node_retry_at.pop(iid, None)

    # ------------------------------------------------------------------ the clock

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            try:
                self._advance(now)
                backlog = self._backlog(now)
                self._sync_nodes(now)
                deadline = now if backlog else self._next_deadline(now)
            except Exception:  # a bug must not stop the cloud
                _log.exception("simulator step failed")
                deadline = now + 1.0
            await self._sleep(None if deadline is None else max(deadline - now, _EPSILON))

    async def _sleep(self, delay: float | None) -> None:
        """Until ``delay`` passes on the clock or something changes."""
        if delay is None:
            await self._wake.wait()
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
            await asyncio.gather(waiter, sleeper, return_exceptions=True)

    def _advance(self, now: float) -> None:
        for group in list(self._groups.values()):
            changed = lost = False
            for inst in list(group.instances.values()):
                if inst.phase == "pending" and _due(inst.boot_at, now):
                    changed = True
                    if inst.will_fail:
                        inst.phase = "failed"
                        inst.failed_at = now
                        lost = True
                        _log.info(
                            "instance failed to launch", group=group.name, instance=inst.instance_id
                        )
                    else:
                        inst.phase = "running"
                        _log.info("instance running", group=group.name, instance=inst.instance_id)
                elif self._leaves_group(inst, now):
                    self._retire(group, inst)
                    changed = True
            if lost:
                self._converge(group, now)
            if changed:
                self._changed()
        for iid, inst in list(self._gone.items()):
            if iid not in self._node_tasks and inst.node in ("absent", "unknown"):
                self._forget(iid)

    def _leaves_group(self, inst: InstanceRecord, now: float) -> bool:
        """A failed instance past its retention, or a terminating one past its delay."""
        if inst.phase == "failed" and inst.failed_at is not None:
            return _due(inst.failed_at + self._failed_retention, now)
        if inst.phase == "terminating" and inst.terminate_at is not None:
            return _due(inst.terminate_at, now)
        return False

    def _next_deadline(self, now: float) -> float | None:
        deadline: float | None = None

        def consider(when: float) -> None:
            nonlocal deadline
            if deadline is None or when < deadline:
                deadline = when

        for inst in self._all_instances():
            if inst.phase == "pending":
                consider(inst.boot_at)
            elif inst.phase == "failed" and inst.failed_at is not None:
                consider(inst.failed_at + self._failed_retention)
            elif inst.phase == "terminating" and inst.terminate_at is not None:
                consider(inst.terminate_at)
            if self._registrar is None or inst.instance_id in self._node_tasks:
                continue
            if inst.phase == "running" and inst.node == "registered" and inst.ready_at is not None:
                consider(inst.ready_at)
            retry_at = self._node_retry_at.get(inst.instance_id)
            if retry_at is not None and _node_action(inst, now) is not None:
                consider(retry_at)
        return deadline

    def _all_instances(self) -> Iterator[InstanceRecord]:
        for group in self._groups.values():
            yield from group.instances.values()
        yield from self._gone.values()

    # ------------------------------------------------------------------ nodes

    def _sync_nodes(self, now: float) -> None:
        if self._registrar is None:
            return
        for inst in list(self._all_instances()):
            iid = inst.instance_id
            if iid in self._node_tasks:
                continue
            action = _node_action(inst, now)
            if action is None:
                continue
            retry_at = self._node_retry_at.get(iid)
            if retry_at is not None and not _due(retry_at, now):
                continue
            self._node_tasks[iid] = asyncio.create_task(
                self._node_call(inst, action), name=f"node {action} {iid}"
            )

    async def _node_call(self, inst: InstanceRecord, action: NodeAction) -> None:
        registrar = self._registrar
        assert registrar is not None
        iid = inst.instance_id
        try:
            async with self._node_slots:
                if action == "register":
                    await registrar.register(
                        cluster=inst.cluster,
                        node=NodeRegistration(
                            name=inst.node_name,
                            provider_id=inst.provider_id,
                            zone=inst.zone,
                            kubelet_version=inst.kubelet_version,
                            instance_type=inst.instance_type,
                        ),
                    )
                elif action == "ready":
                    await registrar.set_ready(cluster=inst.cluster, name=inst.node_name)
                else:
                    await registrar.mark_unknown(cluster=inst.cluster, name=inst.node_name)
        except Exception as exc:
            attempts = self._node_attempts.get(iid, 0) + 1
            self._node_attempts[iid] = attempts
            delay = min(self._node_retry_initial * 2 ** (attempts - 1), self._node_retry_max)
            self._node_retry_at[iid] = self._clock.now() + delay
            _log.warning(
                "workload cluster call failed; will retry",
                action=action,
                cluster=inst.cluster,
                node=inst.node_name,
                attempts=attempts,
                retry_in=round(delay, 3),
                error=str(exc) or type(exc).__name__,
            )
        else:
            self._node_attempts.pop(iid, None)
            self._node_retry_at.pop(iid, None)
            if action == "register":
                inst.node = "registered"
                inst.ready_at = self._clock.now() + inst.ready_delay
            elif action == "ready":
                inst.node = "ready"
            else:
                inst.node = "unknown"
            _log.info("node updated", action=action, cluster=inst.cluster, node=inst.node_name)
            self._changed()
        finally:
            self._node_tasks.pop(iid, None)
            self._wake.set()

    # ------------------------------------------------------------------ helpers

    def _existing_provider_ids(self) -> set[str]:
        """What InstanceExistsByProviderID is true for: instances in a group (terminated ones
        have left theirs)."""
        return {
            inst.provider_id for group in self._groups.values() for inst in group.instances.values()
        }

    def _active_clusters(self) -> set[str]:
        return {group.cluster for group in self._groups.values()}

    def _group(self, name: str) -> GroupRecord:
        group = self._groups.get(name)
        if group is None:
            raise GroupNotFoundError(f"group {name} does not exist", code="GroupNotFound")
        return group

    def _status(self, group: GroupRecord) -> GroupStatus:
        return GroupStatus(
            name=group.name,
            desired_capacity=group.desired,
            template_version=group.template_version,
            instances=[
                Instance(
                    instance_id=inst.instance_id,
                    provider_id=inst.provider_id,
                    zone=inst.zone,
                    state=cast(InstanceState, inst.phase),
                    version=inst.version,
                    launched_at=datetime.fromtimestamp(inst.launched_at, UTC),
                )
                for inst in _ordered(group.instances.values())
            ],
        )

    def _changed(self) -> None:
        self._wake.set()
        if self._saver is not None:
            self._saver.mark_dirty()

    def _snapshot(self) -> dict[str, Any]:
        return encode_state(groups=self._groups, gone=self._gone, saved_at=self._clock.now())


def _shape(group: GroupRecord) -> tuple[object, ...]:
    """Everything ``ensure_group`` may change, to tell a real change from a repeat."""
    return (
        group.cluster,
        group.template,
        group.template_version,
        group.min_size,
        group.max_size,
        group.spec_zones,
        group.bootstrap_data,
        group.tags,
        group.desired,
    )


def _victims(active: list[InstanceRecord], *, count: int, current: str) -> list[InstanceRecord]:
    """The ``count`` instances a scale-in takes, in order, as a cloud picks them one by one:
    from the zone with the most instances (recounted after each pick), then of an older
    template version, then still pending, then the newest. O(n log n + count * zones)."""
    by_zone: dict[str, deque[InstanceRecord]] = {}
    for inst in sorted(
        active,
        key=lambda i: (i.version == current, i.phase == "running", -i.launched_at, i.instance_id),
    ):
        by_zone.setdefault(inst.zone, deque()).append(inst)
    picked: list[InstanceRecord] = []
    while len(picked) < count and by_zone:
        zone = min(
            by_zone,
            key=lambda z: (
                -len(by_zone[z]),
                by_zone[z][0].version == current,
                by_zone[z][0].phase == "running",
                -by_zone[z][0].launched_at,
                by_zone[z][0].instance_id,
            ),
        )
        picked.append(by_zone[zone].popleft())
        if not by_zone[zone]:
            del by_zone[zone]
    return picked


def _node_action(inst: InstanceRecord, now: float) -> NodeAction | None:
    """What the instance's kubelet has to tell the workload cluster next, if anything."""
    if inst.phase == "running":
        if inst.node == "absent":
            return "register"
        if inst.node == "registered" and inst.ready_at is not None and _due(inst.ready_at, now):
            return "ready"
        return None
    if inst.phase in ("failed", "terminating", "terminated") and inst.node in (
        "registered",
        "ready",
    ):
        return "unknown"
    return None


def _due(when: float, now: float) -> bool:
    return when <= now + _EPSILON


def _ordered(instances: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    """In launch order (records are kept, and persisted, in insertion order)."""
    return list(instances)


def _view(inst: InstanceRecord) -> InstanceView:
    return InstanceView(
        instance_id=inst.instance_id,
        provider_id=inst.provider_id,
        node_name=inst.node_name,
        zone=inst.zone,
        phase=inst.phase,
        version=inst.version,
        node=inst.node,
        launched_at=inst.launched_at,
        cluster=inst.cluster,
    )


def _bound(value: int | None) -> str:
    return "none" if value is None else str(value)


def _check_owner(group: GroupRecord, owner_tags: Mapping[str, str]) -> None:
    if not owned(tags=group.tags, owner_tags=owner_tags):
        raise GroupOwnedByOthersError(
            f"group {group.name} exists but its tags do not show it belongs to this pool"
        )


def _validation(message: str) -> PermanentError:
    return PermanentError(message, code="ValidationError")


def _instance_not_found(group: str, iid: str) -> PermanentError:
    return PermanentError(f"instance {iid} is not in group {group}", code="InstanceNotFound")


def _validate_spec(spec: GroupSpec) -> tuple[dict[str, Any], LaunchTemplate, tuple[str, ...]]:
    """The template as plain JSON data, its parsed form and the zones; ValidationError if bad."""
    name = spec.name
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
        raise _validation(f"group name must be 1..{_MAX_NAME} characters")
    if "/" in name or not name.isprintable():
        raise _validation(f"group name {name!r} must be printable and contain no '/'")
    namespace, sep, cluster = spec.cluster.partition("/")
    if not sep or not namespace or not cluster or "/" in cluster:
        raise _validation(f"cluster {spec.cluster!r} is not namespace/name")
    if isinstance(spec.min_size, bool) or not isinstance(spec.min_size, int) or spec.min_size < 0:
        raise _validation(f"minSize must be a non-negative integer, got {spec.min_size!r}")
    if spec.max_size is not None and (
        isinstance(spec.max_size, bool)
        or not isinstance(spec.max_size, int)
        or spec.max_size < spec.min_size
    ):
        raise _validation(
            f"maxSize must be an integer of at least minSize ({spec.min_size}), "
            f"got {spec.max_size!r}"
        )
    if not isinstance(spec.template_version, str):
        raise _validation("templateVersion must be a string")
    try:
        template = json.loads(json.dumps(dict(spec.template)))
        launch = LaunchTemplate.parse(template)
        zones = validate_zones(list(spec.zones), key="zones")
    except (TypeError, ValueError) as exc:
        raise _validation(str(exc)) from exc
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.tags.items()):
        raise _validation("tags must map strings to strings")
    if not owned(tags=spec.tags, owner_tags=spec.owner_tags):
        raise _validation("ownerTags must be among the tags")
    return template, launch, zones
