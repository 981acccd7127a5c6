"""The infrastructure half: one generic reconciler per infra pool kind, driving a provider.

For one infra pool (an InMemoryMachinePool, an AWSMachinePool, ...) it:

1. waits for its owning MachinePool (the controller ownerReference the core reconciler sets)
   and honours pause (the Cluster's ``spec.paused`` or the ``cluster.x-k8s.io/paused``
   annotation on either object);
2. adds its finalizer, and on deletion deletes the cloud group, then drops the finalizer;
3. checks ``minSize <= replicas <= maxSize`` *before* any cloud call — a clash is the
   ``Ready=False`` condition with reason ``ReplicasOutOfRange``, not a cloud error;
4. makes sure the group exists with the wanted shape (:meth:`ensure_group`), and sets its
   capacity: up by ``set_capacity``; down by deleting chosen instances with the group shrunk
   in the same call (the delete policy picks: ``Oldest`` by default, ``Newest``, ``Random``),
   so the cloud never chooses a victim. Under ``cluster.x-k8s.io/replicas-managed-by`` the
   capacity is left to the external autoscaler, and the group's desired capacity is copied
   into the MachinePool's ``spec.replicas`` once the group has that many instances;
5. writes the contract: ``spec.providerIDList`` (in launch order, then by ID, so it is
   stable), ``status.replicas``, ``status.ready`` and ``status.initialization.provisioned``,
   ``status.instances``, and a ``Ready`` condition.

Provider errors: throttling and transient errors requeue after the provider's hint (or
with backoff); a permanent error (bad configuration, quota, authorization) is reported in
the ``Ready`` condition and ``status.failureReason``/``failureMessage`` with the provider's
code and message, and cleared as soon as a reconcile succeeds.

The cloud has no watch, so a pool is polled: every few seconds while instances boot or the
size differs, and every ``steady_poll`` seconds once converged (to notice drift).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any, Literal, Protocol

import structlog

from controller.api.kinds import MACHINE_POOL, Kind
from controller.providers.base import (
    GroupSpec,
    GroupStatus,
    Instance,
    InstanceGroupProvider,
    PermanentError,
    ProviderError,
    RetryableError,
)
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.controller import ReconcileError, Result
from controller.runtime.events import EventRecorder
from controller.runtime.finalizers import add_finalizer, remove_finalizer
from controller.runtime.informer import Informer
from controller.runtime.kube import KubeClient
from controller.runtime.patch import merge_patch

REPLICAS_MANAGED_BY = "cluster.x-k8s.io/replicas-managed-by"
PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"

_log = structlog.get_logger(__name__)

Obj = dict[str, Any]


class PoolAdapter(Protocol):
    """What differs per infra kind: how its spec becomes a :class:`GroupSpec`."""

    kind: Kind
    finalizer: str

    def group_name(self, *, infra: Obj) -> str:
        """The cloud group's name: stable for the object's life, unique in the account."""
        ...

    def group_spec(self, *, infra: Obj, pool: Obj) -> GroupSpec: ...

    def delete_policy(self, *, infra: Obj) -> str: ...

    def size_bounds(self, *, infra: Obj) -> tuple[int, int | None]: ...


def _owner_pool_name(infra: Obj) -> str | None:
    for ref in infra["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == MACHINE_POOL.kind and ref.get("controller"):
            return str(ref["name"])
    return None


def order_for_removal(
    instances: list[Instance], *, policy: str, rng: Callable[[], float] = random.random
) -> list[Instance]:
    """Instances in the order scale-in removes them (failed ones always first)."""
    failed = [i for i in instances if i.state == "failed"]
    rest = [i for i in instances if i.state != "failed"]
    if policy == "Newest":
        rest.sort(key=lambda i: (i.launched_at, i.instance_id), reverse=True)
    elif policy == "Random":
        rest.sort(key=lambda _: rng())
    else:
        rest.sort(key=lambda i: (i.launched_at, i.instance_id))
    return failed + rest


class InfraPoolReconciler:
    """Reconciles one infra pool kind through a provider; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        adapter: PoolAdapter,
        provider: InstanceGroupProvider,
        infra: Informer,
        pools: Informer,
        clusters: Informer,
        recorder: EventRecorder | None = None,
        busy_poll: float = 2.0,
        steady_poll: float = 60.0,
    ) -> None:
        self.kube = kube
        self.adapter = adapter
        self.provider = provider
        self.infra = infra
        self.pools = pools
        self.clusters = clusters
        self.recorder = recorder
        self.busy_poll = busy_poll
        self.steady_poll = steady_poll

    async def reconcile(self, key: str) -> Result:
        cached = self.infra.store.get(key)
        if cached is None:
            return Result()
        infra = copy.deepcopy(cached)
        meta = infra["metadata"]
        namespace = str(meta["namespace"])
        kind = self.adapter.kind
        deleting = bool(meta.get("deletionTimestamp"))

        if deleting:
            if self.adapter.finalizer not in (meta.get("finalizers") or []):
                return Result()
            name = self.adapter.group_name(infra=infra)
            try:
                await self.provider.delete_group(name=name)
            except RetryableError as exc:
                return self._retry(exc)
            await remove_finalizer(
                kube=self.kube, resource=kind, obj=infra, finalizer=self.adapter.finalizer
            )
            return Result()

        owner = _owner_pool_name(infra)
        pool = self.pools.store.get(f"{namespace}/{owner}") if owner else None
        if pool is None:
            return Result()  # the MachinePool adopts us; that update re-queues this key
        cluster = self.clusters.store.get(f"{namespace}/{pool['spec'].get('clusterName')}")
        if self._paused(infra, pool, cluster):
            return Result()
        if await add_finalizer(
            kube=self.kube, resource=kind, obj=infra, finalizer=self.adapter.finalizer
        ):
            return Result()  # the update re-queues us

        status = copy.deepcopy(infra.get("status") or {})
        spec_patch: dict[str, Any] = {}
        managed = (pool["metadata"].get("annotations") or {}).get(REPLICAS_MANAGED_BY)
        external_size = managed is not None and managed.lower() != "false"
        desired = pool["spec"].get("replicas")
        desired = 1 if desired is None else int(desired)
        low, high = self.adapter.size_bounds(infra=infra)
        if not external_size and (desired < low or (high is not None and desired > high)):
            bound = f"[{low}, {high}]" if high is not None else f">= {low}"
            self._set_ready(
                status, infra, False, "ReplicasOutOfRange",
                f"MachinePool {owner} wants {desired} replicas; this pool allows {bound}",
            )  # fmt: skip
            await self._write(infra, status=status, spec_patch=spec_patch)
            return Result()

        try:
            group = await self.provider.ensure_group(
                spec=self.adapter.group_spec(infra=infra, pool=pool)
            )
            group = await self._scale(group, desired=desired, infra=infra, external=external_size)
        except PermanentError as exc:
            status["failureReason"] = exc.code
            status["failureMessage"] = exc.message
            self._set_ready(status, infra, False, exc.code, exc.message)
            self._event(infra, "Warning", exc.code, exc.message)
            await self._write(infra, status=status, spec_patch=spec_patch)
            return Result(requeue_after=self.steady_poll)
        except RetryableError as exc:
            return self._retry(exc)

        instances = sorted(
            (i for i in group.instances if i.state in ("pending", "running")),
            key=lambda i: (i.launched_at, i.instance_id),
        )
        ids = [i.provider_id for i in instances]
        if ids != list((infra.get("spec") or {}).get("providerIDList") or []):
            spec_patch["providerIDList"] = ids
        status.pop("failureReason", None)
        status.pop("failureMessage", None)
        status["replicas"] = len(instances)
        status["ready"] = True
        status.setdefault("initialization", {})["provisioned"] = True
        status["instances"] = [
            {
                "instanceID": i.instance_id,
                "providerID": i.provider_id,
                "zone": i.zone,
                "state": i.state,
                "version": i.version,
                "ready": i.state == "running",
                "launchedAt": i.launched_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for i in instances
        ]
        # Optional adapter hook: provider-specific status fields (AWS: the launch template).
        status_fields = getattr(self.adapter, "status_fields", None)
        if status_fields is not None:
            status.update(status_fields(infra=infra, group=group))
        self._set_ready(status, infra, True, "Ready", "")
        await self._write(infra, status=status, spec_patch=spec_patch)
        if external_size and owner is not None:
            await self._follow_group_size(pool, group=group, live=len(instances))
        converged = all(i.state == "running" for i in instances) and (
            external_size or len(instances) == desired
        )
        return Result(requeue_after=self.steady_poll if converged else self.busy_poll)

    # ---------------------------------------------------------------- steps

    async def _scale(
        self, group: GroupStatus, *, desired: int, infra: Obj, external: bool
    ) -> GroupStatus:
        if external or group.desired_capacity == desired:
            return group
        if desired > group.desired_capacity:
            await self.provider.set_capacity(name=group.name, desired=desired)
        else:
            live = [i for i in group.instances if i.state != "terminating"]
            surplus = group.desired_capacity - desired
            victims = order_for_removal(live, policy=self.adapter.delete_policy(infra=infra))
            for instance in victims[:surplus]:
                await self.provider.delete_instance(
                    name=group.name, instance_id=instance.instance_id, shrink=True
                )
            if surplus > len(victims):
                await self.provider.set_capacity(name=group.name, desired=desired)
        return await self.provider.describe_group(name=group.name)

    async def _follow_group_size(self, pool: Obj, *, group: GroupStatus, live: int) -> None:
        """Under replicas-managed-by, copy the group's desired capacity into
        ``MachinePool.spec.replicas`` (as CAPA does), once the group has settled there: the
        core reconciler copies the instance count, so both agree and never flip-flop."""
        wanted = group.desired_capacity
        if live != wanted or pool["spec"].get("replicas") == wanted:
            return
        meta = pool["metadata"]
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=meta["namespace"], name=meta["name"],
            patch={"spec": {"replicas": wanted}},
        )  # fmt: skip

    @staticmethod
    def _paused(infra: Obj, pool: Obj, cluster: Obj | None) -> bool:
        if cluster is not None and (cluster.get("spec") or {}).get("paused"):
            return True
        return any(
            PAUSED_ANNOTATION in (o["metadata"].get("annotations") or {}) for o in (infra, pool)
        )

    def _retry(self, exc: ProviderError) -> Result:
        if exc.retry_after is not None:
            _log.info("provider asked us to wait", code=exc.code, seconds=exc.retry_after)
            return Result(requeue_after=exc.retry_after)
        raise ReconcileError(f"provider: {exc}")

    def _set_ready(self, status: Obj, infra: Obj, ok: bool, reason: str, message: str) -> None:
        generation = infra["metadata"].get("generation")
        status["conditions"] = conditions.set_v1beta2(
            status.get("conditions", []),
            Cond(type="Ready", status="True" if ok else "False", reason=reason, message=message),
            generation=int(generation) if generation is not None else None,
        )
        if generation is not None:
            status["observedGeneration"] = int(generation)

    async def _write(self, infra: Obj, *, status: Obj, spec_patch: Obj) -> None:
        meta = infra["metadata"]
        kind = self.adapter.kind
        if spec_patch:
            await self.kube.merge_patch(
                kind, namespace=meta["namespace"], name=meta["name"], patch={"spec": spec_patch}
            )
        patch = merge_patch(infra.get("status") or {}, status)
        if patch:
            await self.kube.merge_patch(
                kind, namespace=meta["namespace"], name=meta["name"], subresource="status",
                patch={"status": patch},
            )  # fmt: skip

    def _event(
        self, infra: Obj, type_: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        if self.recorder is not None:
            self.recorder.event(infra, type=type_, reason=reason, message=message)


__all__ = ["InfraPoolReconciler", "PoolAdapter", "order_for_removal"]
