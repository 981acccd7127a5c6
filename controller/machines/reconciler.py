"""The Machine controller for MachinePool Machines: status from the infra machine and the
Node, and the deletion path that drains before anything is removed.

Only Machines whose controller owner is a MachinePool and whose infra machine is of a kind
this process watches are handled; other Machines belong to other controllers and are never
touched. The owner reference must also carry the uid of the live MachinePool of that name:
a Machine whose reference is stale (a pool of the same name deleted and recreated) or forged
is not acted on for that pool — no finalizer, no status, no drain, no deletion of an infra
machine or a Node. If such a Machine is being deleted with our finalizer, the finalizer is
released (after the API server, not just the cache, confirms the mismatch) with a
``StaleOwnerReference`` Warning Event, and nothing else is done.

Status (written only when it changes): ``status.nodeRef``, ``status.nodeInfo``,
``status.addresses`` (the infra machine's ``status.addresses``, as Cluster API copies them;
the Node's addresses only while the infra machine reports none),
``status.initialization.infrastructureProvisioned``, ``phase``
(``Provisioning`` → ``Provisioned`` → ``Running``, ``Deleting``), and the conditions
``InfrastructureReady`` (the infra machine's instance runs), ``NodeReady`` and
``NodeHealthy`` (the Node's Ready condition; ``NodeNotFound`` while it has not appeared),
``Ready`` (both), ``Available`` (Ready for ``spec.minReadySeconds``; a requeue is scheduled
for the moment it will be) and ``UpToDate`` (the infra machine's, i.e. launched from the
group's current template).

Deletion, in order, each step recorded in the ``Deleting`` condition:

1. drain: cordon the Node and evict its pods through the Eviction API
   (:mod:`.drain`), one pass per reconcile, requeued until done. A PodDisruptionBudget that
   blocks an eviction keeps the Machine in ``Deleting`` with reason ``DrainingNode`` and the
   blocked pods in the message, until ``spec.deletion.nodeDrainTimeoutSeconds`` passes
   (unset or 0: no limit), then the drain is abandoned with a Warning Event. Skipped with the
   ``machine.cluster.x-k8s.io/exclude-node-draining`` annotation, when the Node is gone, and
   when the instance is already gone;
2. delete the infra machine and wait until it is gone: its provider deletes the instance
   with the group shrunk by one, so no cloud ever picks a replacement or a different victim;
3. delete the Node; with the workload cluster unreachable this gives up after
   ``spec.deletion.nodeDeletionTimeoutSeconds`` (default 10) with a Warning Event;
4. remove the finalizer.

Status is written by one :class:`~controller.runtime.scope.ObjectScope` commit per reconcile
(Events go with it), with the resourceVersion precondition: other writers (a MachineHealthCheck's
``HealthCheckSucceeded``/``OwnerRemediated``) set conditions in the same list, which a merge
patch replaces whole, so a write from a stale cache fails with a conflict instead of undoing
theirs. The conflict is dropped: the newer version's watch event brings the Machine back.

Failure: API errors propagate (the controller retries with backoff); a workload cluster that
is not connected is waited for, within the timeouts above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from controller.api.kinds import MACHINE, MACHINE_POOL
from controller.api.labels import (
    DELETE_REASON_ANNOTATION,
    EXCLUDE_NODE_DRAINING_ANNOTATION,
    MACHINE_FINALIZER,
)
from controller.machines.drain import cordon, drain_deadline_passed, drain_step
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.controller import Result
from controller.runtime.events import EventRecorder
from controller.runtime.finalizers import add_finalizer, remove_finalizer
from controller.runtime.informer import Informer
from controller.runtime.kube import NODES, ApiError, KubeClient
from controller.runtime.scope import ObjectScope
from controller.runtime.store import Obj
from controller.workload.clusters import ClusterKey, WorkloadCluster, WorkloadClusters

DEFAULT_NODE_DELETION_TIMEOUT = 10
DRAIN_POLL = 5.0

_log = structlog.get_logger(__name__)


_ADDRESS_TYPES = frozenset({"Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"})


def _addresses(obj: Obj | None) -> list[dict[str, str]]:
    """``status.addresses`` of an infra machine or a Node, as Machine addresses."""
    return [
        {"type": str(a["type"]), "address": str(a["address"])}
        for a in ((obj or {}).get("status") or {}).get("addresses") or []
        if a.get("type") in _ADDRESS_TYPES and a.get("address")
    ]


def parse_time(value: object) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(obj: Obj | None, type_: str) -> dict[str, Any] | None:
    """The condition ``type_`` of ``obj``'s status, if it has one."""
    return conditions.get(((obj or {}).get("status") or {}).get("conditions") or [], type_)


def pool_owner(machine: Obj) -> dict[str, Any] | None:
    """The Machine's controller owner reference when it is a MachinePool."""
    for ref in machine["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == MACHINE_POOL.kind and ref.get("controller"):
            return dict(ref)
    return None


def is_pool_machine(machine: Obj) -> bool:
    return pool_owner(machine) is not None


class MachineReconciler:
    """Reconciles MachinePool Machines; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        machines: Informer,
        pools: Informer,
        clusters: Informer,
        workloads: WorkloadClusters,
        infra_machines: Mapping[tuple[str, str], Informer],
        recorder: EventRecorder | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.machines = machines
        self.pools = pools
        self.clusters = clusters
        self.workloads = workloads
        self.infra_machines = dict(infra_machines)
        self.recorder = recorder
        self.now = now

    async def reconcile(self, key: str) -> Result:
        cached = self.machines.store.get(key)
        owner = None if cached is None else pool_owner(cached)
        if cached is None or owner is None:
            return Result()
        # Status writes carry the precondition: see the module docstring.
        scope = ObjectScope(kube=self.kube, resource=MACHINE, obj=cached,
                            recorder=self.recorder, precondition=True)  # fmt: skip
        machine = scope.obj
        meta = machine["metadata"]
        spec = machine.get("spec") or {}
        ref = spec.get("infrastructureRef") or {}
        if (str(ref.get("apiGroup")), str(ref.get("kind"))) not in self.infra_machines:
            _log.debug("machine's infra kind is not ours", machine=key, kind=ref.get("kind"))
            return Result()
        if not self._owner_is_live(machine, owner):
            return await self._stale_owner(scope, owner)
        cluster = self.clusters.store.get(f"{meta['namespace']}/{spec.get('clusterName')}")
        if scope.paused(cluster=cluster):
            return Result()
        workload = self.workloads.get(ClusterKey(str(meta["namespace"]),
                                                 str(spec.get("clusterName"))))  # fmt: skip
        if meta.get("deletionTimestamp"):
            if MACHINE_FINALIZER not in (meta.get("finalizers") or []):
                return Result()
            return await self._delete(scope, workload=workload)
        if await add_finalizer(
            kube=self.kube, resource=MACHINE, obj=machine, finalizer=MACHINE_FINALIZER
        ):
            return Result()
        return await self._observe(scope, workload=workload)

    # ------------------------------------------------------------- owner

    def _live_pool_uid(self, namespace: str, name: str) -> str | None:
        pool = self.pools.store.get(f"{namespace}/{name}")
        return None if pool is None else str(pool["metadata"].get("uid"))

    def _owner_is_live(self, machine: Obj, owner: dict[str, Any]) -> bool:
        """The owner reference carries the uid of the MachinePool of that name, as cached."""
        namespace = str(machine["metadata"]["namespace"])
        return self._live_pool_uid(namespace, str(owner.get("name"))) == owner.get("uid")

    async def _stale_owner(self, scope: ObjectScope, owner: dict[str, Any]) -> Result:
        """Nothing is done for a pool this Machine does not belong to. A Machine on its way
        out is let go once the API server confirms the mismatch (a cache can lag behind a
        pool just created), so it cannot hang on our finalizer."""
        machine = scope.obj
        meta = machine["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if not meta.get("deletionTimestamp") or MACHINE_FINALIZER not in (
            meta.get("finalizers") or []
        ):
            _log.info("machine's MachinePool owner reference is not the live pool; ignored",
                      machine=key, pool=owner.get("name"), uid=owner.get("uid"))  # fmt: skip
            return Result()  # the pool's own events bring the Machine back
        try:
            live = await self.kube.get(
                MACHINE_POOL, namespace=str(meta["namespace"]), name=str(owner.get("name"))
            )
            live_uid: object = live["metadata"].get("uid")
        except ApiError as exc:
            if not exc.not_found:
                raise
            live_uid = None
        if live_uid == owner.get("uid"):
            return Result(requeue_after=1.0)  # the cache is behind: look again shortly
        scope.event("Warning", "StaleOwnerReference",
                    f"MachinePool {owner.get('name')} with uid {owner.get('uid')} does not exist; "
                    "the finalizer is removed without draining or deleting anything")  # fmt: skip
        scope.emit_events()
        try:
            await remove_finalizer(
                kube=self.kube, resource=MACHINE, obj=machine, finalizer=MACHINE_FINALIZER
            )
        except ApiError as exc:
            if not exc.not_found:
                raise
        return Result()

    # ------------------------------------------------------------- status

    def _infra_informer(self, machine: Obj) -> Informer:
        ref = (machine.get("spec") or {}).get("infrastructureRef") or {}
        return self.infra_machines[(str(ref.get("apiGroup")), str(ref.get("kind")))]

    def _infra_machine(self, machine: Obj) -> Obj | None:
        ref = (machine.get("spec") or {}).get("infrastructureRef") or {}
        informer = self.infra_machines.get((str(ref.get("apiGroup")), str(ref.get("kind"))))
        if informer is None:
            return None
        return informer.store.get(f"{machine['metadata']['namespace']}/{ref.get('name')}")

    def _node(self, machine: Obj, workload: WorkloadCluster | None) -> Obj | None:
        if workload is None:
            return None
        provider_id = (machine.get("spec") or {}).get("providerID")
        if provider_id:
            node = workload.node_for_provider_id(str(provider_id))
            if node is not None:
                return node
        ref = (machine.get("status") or {}).get("nodeRef") or {}
        return workload.nodes.store.get(str(ref["name"])) if ref.get("name") else None

    async def _observe(self, scope: ObjectScope, *, workload: WorkloadCluster | None) -> Result:
        result = Result()
        now = self.now()
        machine = scope.before  # read what was read; decide into the working status
        status = scope.status
        infra = self._infra_machine(machine)
        provisioned = bool(
            ((infra or {}).get("status") or {}).get("initialization", {}).get("provisioned")
        )
        status.setdefault("initialization", {})["infrastructureProvisioned"] = provisioned
        set_ = self._setter(scope)
        if infra is None:
            set_("InfrastructureReady", False, "InfrastructureNotFound",
                 "the infra machine does not exist")  # fmt: skip
        elif provisioned:
            set_("InfrastructureReady", True, "Ready", "")
        else:
            set_("InfrastructureReady", False, "Provisioning",
                 f"waiting for {infra.get('kind')} {infra['metadata']['name']}")  # fmt: skip

        # As Cluster API: the infra machine's addresses; the Node's only when it has none.
        infra_addresses = _addresses(infra)
        if infra_addresses:
            status["addresses"] = infra_addresses
        node = self._node(machine, workload)
        node_ready_since: datetime | None = None
        if node is not None:
            node_meta = node["metadata"]
            status["nodeRef"] = {"name": node_meta["name"]}
            info = (node.get("status") or {}).get("nodeInfo")
            if info:
                status["nodeInfo"] = info
            if not infra_addresses:
                addresses = _addresses(node)
                if addresses:
                    status["addresses"] = addresses
            ready = condition(node, "Ready")
            if ready and ready.get("status") == "True":
                node_ready_since = parse_time(ready.get("lastTransitionTime")) or now
                set_("NodeReady", True, "NodeReady", "")
                set_("NodeHealthy", True, "NodeHealthy", "")
            else:
                state = (ready or {}).get("status", "Unknown")
                message = f"Node {node_meta['name']} Ready condition is {state}"
                set_("NodeReady", False, "NodeNotReady", message)
                set_("NodeHealthy", False, "NodeNotReady", message)
        elif workload is None:
            status.pop("nodeRef", None)
            set_("NodeReady", None, "WorkloadClusterNotConnected",
                 "cannot read Nodes: the workload cluster is not connected")  # fmt: skip
            set_("NodeHealthy", None, "WorkloadClusterNotConnected", "")
        else:
            had_node = bool(status.pop("nodeRef", None))
            reason = "NodeDeleted" if had_node else "NodeNotFound"
            message = (
                "the Node of this Machine was deleted"
                if had_node
                else f"no Node with providerID {(machine.get('spec') or {}).get('providerID')}"
            )
            set_("NodeReady", False, reason, message)
            set_("NodeHealthy", False, reason, message)

        ready_ok = provisioned and node_ready_since is not None
        set_("Ready", ready_ok, "Ready" if ready_ok else "NotReady",
             "" if ready_ok else "waiting for the instance and its Node to be ready")  # fmt: skip
        min_ready = int((machine.get("spec") or {}).get("minReadySeconds") or 0)
        if ready_ok and node_ready_since is not None:
            remaining = min_ready - (now - node_ready_since).total_seconds()
            if remaining <= 0:
                set_("Available", True, "Available", "")
            else:
                set_("Available", False, "WaitingForMinReadySeconds",
                     f"Ready for {min_ready - remaining:.0f}s of {min_ready}s")  # fmt: skip
                result = Result(requeue_after=max(remaining, 0.5))
        else:
            set_("Available", False, "NotReady", "the Machine is not Ready")
        up_to_date = condition(infra, "UpToDate")
        if up_to_date is None:
            set_("UpToDate", None, "Unknown", "the infra machine does not say")
        else:
            set_("UpToDate", up_to_date.get("status") == "True",
                 str(up_to_date.get("reason") or "UpToDate"),
                 str(up_to_date.get("message") or ""))  # fmt: skip
        status["phase"] = (
            "Running"
            if ready_ok
            else "Provisioned"
            if provisioned or status.get("nodeRef")
            else "Provisioning"
        )
        set_("Deleting", False, "NotDeleting", "")
        await scope.commit(observed=True)
        return result

    @staticmethod
    def _setter(scope: ObjectScope) -> Callable[[str, bool | None, str, str], None]:
        def set_(type_: str, ok: bool | None, reason: str, message: str) -> None:
            value: Literal["True", "False", "Unknown"] = (
                "Unknown" if ok is None else "True" if ok else "False"
            )
            scope.condition(Cond(type=type_, status=value, reason=reason, message=message))

        return set_

    # ----------------------------------------------------------- deletion

    async def _delete(self, scope: ObjectScope, *, workload: WorkloadCluster | None) -> Result:
        machine = scope.before  # read what was read; decide into the working status
        meta = machine["metadata"]
        now = self.now()
        status = scope.status
        status["phase"] = "Deleting"
        set_ = self._setter(scope)
        spec = machine.get("spec") or {}
        deletion_spec = spec.get("deletion") or {}
        annotations = meta.get("annotations") or {}
        reason = annotations.get(DELETE_REASON_ANNOTATION)
        infra = self._infra_machine(machine)
        node = self._node(machine, workload)
        node_name = (
            node["metadata"]["name"]
            if node is not None
            else ((status.get("nodeRef") or {}).get("name"))
        )

        # 1. drain
        skip_drain = (
            EXCLUDE_NODE_DRAINING_ANNOTATION in annotations
            or reason == "InstanceGone"
            or infra is None
            or bool(infra["metadata"].get("deletionTimestamp"))
            or (workload is not None and node is None)
            or not node_name
        )
        if not skip_drain:
            started = parse_time((status.get("deletion") or {}).get("nodeDrainStartTime"))
            if started is None:
                started = now
                status.setdefault("deletion", {})["nodeDrainStartTime"] = stamp(now)
            timeout = deletion_spec.get("nodeDrainTimeoutSeconds")
            if workload is None:
                message = "waiting for the workload cluster connection to drain the Node"
                drained = False
            else:
                assert node is not None
                node_name = str(node_name)
                await cordon(kube=workload.kube, node=node_name)
                ready = condition(node, "Ready")
                outcome = await drain_step(
                    kube=workload.kube,
                    node=node_name,
                    now=now,
                    node_unreachable=not (ready and ready.get("status") == "True"),
                )
                drained = outcome.done
                message = outcome.message
            if not drained:
                if drain_deadline_passed(started=started, timeout_seconds=timeout, now=now):
                    scope.event("Warning", "DrainTimeout",
                                f"nodeDrainTimeoutSeconds ({timeout}s) passed; deleting "
                                f"without a complete drain: {message}")  # fmt: skip
                else:
                    set_("Deleting", True, "DrainingNode", f"draining Node {node_name}: {message}")
                    self._v1beta1(scope, "DrainingSucceeded", "Draining", message)
                    await scope.commit()
                    return Result(requeue_after=DRAIN_POLL)
            elif status.get("deletion", {}).get("nodeDrainStartTime"):
                scope.event("Normal", "NodeDrained", f"drained Node {node_name}")
            self._v1beta1(scope, "DrainingSucceeded", "", "", ok=True)

        # 2. the infra machine, and with it the instance
        if infra is not None:
            infra_meta = infra["metadata"]
            if not infra_meta.get("deletionTimestamp"):
                try:
                    await self.kube.delete(
                        self._infra_informer(machine).resource,
                        namespace=infra_meta["namespace"],
                        name=infra_meta["name"],
                    )
                except ApiError as exc:
                    if not exc.not_found:
                        raise
            set_("Deleting", True, "WaitingForInfrastructureDeletion",
                 f"waiting for {infra.get('kind')} {infra_meta['name']} and its instance "
                 "to be deleted")  # fmt: skip
            await scope.commit()
            return Result(requeue_after=30.0)  # its deletion event wakes us sooner

        # 3. the Node
        if node_name:
            if workload is None:
                timeout = deletion_spec.get("nodeDeletionTimeoutSeconds")
                timeout = DEFAULT_NODE_DELETION_TIMEOUT if timeout is None else int(timeout)
                began = parse_time(meta.get("deletionTimestamp")) or now
                elapsed = (now - began).total_seconds()
                if timeout == 0 or elapsed < timeout:
                    message = f"cannot reach the workload cluster to delete Node {node_name}"
                    set_("Deleting", True, "WaitingForWorkloadCluster", message)
                    await scope.commit()
                    return Result(requeue_after=max(timeout - elapsed, 1.0) if timeout else 15.0)
                scope.event("Warning", "NodeDeletionSkipped",
                            f"nodeDeletionTimeoutSeconds ({timeout}s) passed; Node {node_name} "
                            "left in the workload cluster")  # fmt: skip
            else:
                try:
                    await workload.kube.delete(NODES, name=node_name)
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                scope.event("Normal", "NodeDeleted", f"deleted Node {node_name}")

        # 4. let the Machine go (its status is not written: it is about to disappear)
        scope.emit_events()
        try:
            await remove_finalizer(
                kube=self.kube, resource=MACHINE, obj=machine, finalizer=MACHINE_FINALIZER
            )
        except ApiError as exc:
            if not exc.not_found:
                raise
        _log.info("machine deleted", machine=f"{meta['namespace']}/{meta['name']}",
                  reason=reason or "unknown")  # fmt: skip
        return Result()

    @staticmethod
    def _v1beta1(
        scope: ObjectScope, type_: str, reason: str, message: str, *, ok: bool = False
    ) -> None:
        scope.v1beta1_condition(
            Cond(type=type_, status="True" if ok else "False", reason=reason, message=message,
                 severity="Info"),
        )  # fmt: skip


__all__ = ["MachineReconciler", "is_pool_machine"]
