"""The infrastructure half: one generic reconciler per infra pool kind, driving a provider.

For one infra pool (an InMemoryMachinePool, an AWSMachinePool, ...) it:

1. waits for its owning MachinePool (the controller ownerReference the core reconciler sets)
   and honours pause (the Cluster's ``spec.paused`` or the ``cluster.x-k8s.io/paused``
   annotation on either object);
2. adds its finalizer, and on deletion deletes the cloud group, then drops the finalizer (a
   group whose ownership tags say it is not ours is left in place: a ``GroupOwnedByOthers``
   Event, and the finalizer is dropped all the same, so the pool can go);
3. checks ``minSize <= replicas <= maxSize`` *before* any cloud call — a clash is the
   ``Ready=False`` condition with reason ``ReplicasOutOfRange``, not a cloud error. Where
   the provider has no ``maxSize`` (an InMemoryMachinePool without one), ``max_replicas``
   (``--max-replicas-per-pool``, :data:`DEFAULT_MAX_REPLICAS`) is the upper bound, and a
   ``minSize`` above it is refused the same way even under an external autoscaler: a
   tenant's ``replicas: 2147483647`` never reaches the cloud. Nothing is launched or
   deleted for a refused pool (a group already bigger is left as it is);
4. records the group's name in ``status.groupName`` before the first cloud call (the
   adapter reuses a recorded name for the object's life;
   :mod:`controller.providers.naming`), then
   makes sure the group exists with the wanted shape (:meth:`ensure_group`; an adapter with
   ``remembered_annotations`` records on the infra pool what that call applies, before it
   and again after it succeeded, so the record survives restarts: AWS keeps its
   last-applied tags there to remove the ones dropped from the spec) and keeps one
   infra machine per instance (:mod:`.infra_machines`; the core controller makes a Machine for
   each), then follows :func:`.scaling.plan_scaling`: launches by raising the capacity with
   ``set_capacity``; removes the instances it picks (``cluster.x-k8s.io/delete-machine``
   first, then the delete policy: ``Oldest`` by default, ``Newest``, ``Random``) by deleting
   their Machines, so each is drained first and then deleted with the group shrunk in the
   same call; the cloud never chooses a victim. An instance without a Machine yet is deleted
   directly. With a rolling-update strategy, instances launched from an older template are
   replaced within ``maxSurge``/``maxUnavailable``. Under
   ``cluster.x-k8s.io/replicas-managed-by`` the capacity is left to the external autoscaler,
   and the group's desired capacity is copied into the MachinePool's ``spec.replicas`` once
   the group has that many instances (as CAPA does; the core copies the instance count);
5. publishes scale-from-zero capacity (annotations and ``status.capacity``) when the adapter
   knows its instance type (:mod:`.capacity`);
6. writes the contract: ``spec.providerIDList`` (in launch order, then by ID, so it is
   stable), ``status.replicas``, ``status.ready`` and ``status.initialization.provisioned``,
   ``status.instances``, and a ``Ready`` condition.

Writes go through one :class:`~controller.runtime.scope.ObjectScope` per reconcile (no
precondition: this reconciler is the only writer of the pool's status and of the spec
fields and annotations it owns, and merge patches touch only those keys). Its commit at the
end writes metadata and spec in one request and status in another, each only if changed;
the early commits are the ones above that must precede a cloud call (``status.groupName``,
the remembered annotations) and the finalizer.

Provider errors: throttling and transient errors requeue after the provider's hint (or
with backoff); a permanent error (bad configuration, quota, authorization) is reported in
the ``Ready`` condition and ``status.failureReason``/``failureMessage`` with the provider's
code and message, and cleared as soon as a reconcile succeeds. A group (or launch template)
of the pool's name whose tags do not prove it is ours is such an error, with reason
``GroupOwnedByOthers``: nothing of it is changed, and the pool is looked at again only every
``steady_poll`` seconds or when it changes.

The cloud has no watch, so a pool is polled: every few seconds while instances boot or the
size differs, and every ``steady_poll`` seconds once converged (to notice drift).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from controller.api.kinds import MACHINE, MACHINE_POOL
from controller.api.labels import (
    CLUSTER_NAME_LABEL,
    DELETE_REASON_ANNOTATION,
    REPLICAS_MANAGED_BY_ANNOTATION,
    machine_name,
)
from controller.infrastructure.capacity import publish_capacity
from controller.infrastructure.infra_machines import InfraMachines
from controller.infrastructure.scaling import (
    Member,
    Plan,
    Rollout,
    plan_scaling,
    resolve_rollout,
)
from controller.providers.adapter import PoolAdapter
from controller.providers.base import (
    GroupOwnedByOthersError,
    GroupStatus,
    InstanceGroupProvider,
    PermanentError,
    ProviderError,
    RetryableError,
)
from controller.providers.naming import GROUP_NAME_FIELD
from controller.runtime.conditions import Cond
from controller.runtime.controller import ReconcileError, Result
from controller.runtime.deletion import delete_with_annotations
from controller.runtime.events import EventRecorder
from controller.runtime.finalizers import add_finalizer, remove_finalizer
from controller.runtime.informer import Informer
from controller.runtime.kube import KubeClient
from controller.runtime.scope import ObjectScope
from controller.runtime.store import Obj

REPLICAS_MANAGED_BY = REPLICAS_MANAGED_BY_ANNOTATION
#: How long a removal we asked for counts as "going" before the Machine cache shows it.
EXPECTATION_TTL = 30.0
#: The largest pool a provider without its own ``maxSize`` may have: the largest single
#: pool the controller is benchmarked and supported at (bench/scale.py). Each replica is a
#: Machine and an infra machine in etcd, so an unbounded size is a denial of service.
DEFAULT_MAX_REPLICAS = 5000

_log = structlog.get_logger(__name__)


def _owner_pool_name(infra: Obj) -> str | None:
    for ref in infra["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == MACHINE_POOL.kind and ref.get("controller"):
            return str(ref["name"])
    return None


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
        infra_machines: InfraMachines | None = None,
        busy_poll: float = 2.0,
        steady_poll: float = 60.0,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_replicas < 1:
            raise ValueError(f"max_replicas must be at least 1, got {max_replicas}")
        self.kube = kube
        self.adapter = adapter
        self.provider = provider
        self.infra = infra
        self.pools = pools
        self.clusters = clusters
        self.recorder = recorder
        self.infra_machines = infra_machines
        self.busy_poll = busy_poll
        self.steady_poll = steady_poll
        self.max_replicas = max_replicas
        self.clock = clock
        #: instance ID -> when we asked for its removal (ReplicaSet-style expectations: a
        #: removal counts as going until the Machine cache shows it, or the TTL passes).
        self._removing: dict[str, float] = {}

    async def reconcile(self, key: str) -> Result:
        cached = self.infra.store.get(key)
        if cached is None:
            return Result()
        # The reconciler is the only writer of the pool's status and of the spec and
        # annotations it owns (merged key by key): no precondition.
        scope = ObjectScope(kube=self.kube, resource=self.adapter.kind, obj=cached,
                            recorder=self.recorder)  # fmt: skip
        try:
            return await self._reconcile(scope)
        finally:
            scope.emit_events()  # the paths that return without a commit

    async def _reconcile(self, scope: ObjectScope) -> Result:
        infra = scope.obj
        meta = infra["metadata"]
        namespace = str(meta["namespace"])
        kind = self.adapter.kind
        deleting = bool(meta.get("deletionTimestamp"))

        if deleting:
            if self.adapter.finalizer not in (meta.get("finalizers") or []):
                return Result()
            name = self.adapter.group_name(infra=infra)
            owner_tags = self.adapter.owner_tags(infra=infra, cluster=self._cluster_name(infra))
            try:
                await self.provider.delete_group(name=name, owner_tags=owner_tags)
            except GroupOwnedByOthersError as exc:
                # Not ours to delete: leave it, say so, and let the pool go.
                _log.warning("cloud group is not ours; leaving it", group=name, error=exc.message)
                scope.event("Warning", exc.code, f"{exc.message}; left in place")
            except RetryableError as exc:
                return self._retry(exc)
            if self.infra_machines is not None:
                await self.infra_machines.release_all(infra=infra)
            await remove_finalizer(
                kube=self.kube, resource=kind, obj=infra, finalizer=self.adapter.finalizer
            )
            return Result()

        owner = _owner_pool_name(infra)
        pool = self.pools.store.get(f"{namespace}/{owner}") if owner else None
        if pool is None:
            return Result()  # the MachinePool adopts us; that update re-queues this key
        cluster = self.clusters.store.get(f"{namespace}/{pool['spec'].get('clusterName')}")
        if scope.paused(cluster=cluster, also=(pool,)):
            return Result()
        if await add_finalizer(
            kube=self.kube, resource=kind, obj=infra, finalizer=self.adapter.finalizer
        ):
            return Result()  # the update re-queues us

        status = scope.status
        managed = (pool["metadata"].get("annotations") or {}).get(REPLICAS_MANAGED_BY)
        external_size = managed is not None and managed.lower() != "false"
        desired = pool["spec"].get("replicas")
        desired = 1 if desired is None else int(desired)
        low, high = self.adapter.size_bounds(infra=infra)
        limit = high if high is not None else self.max_replicas
        if low > limit or (not external_size and not low <= desired <= limit):
            source = "" if high is not None else " (--max-replicas-per-pool)"
            self._set_ready(
                scope, False, "ReplicasOutOfRange",
                f"MachinePool {owner} wants {desired} replicas; this pool allows "
                f"[{low}, {limit}]{source}",
            )  # fmt: skip
            publish_capacity(adapter=self.adapter, infra=infra, status=status)
            await scope.commit(observed=True)
            return Result()

        await self._record_group_name(scope)
        # After the early groupName commit, which carries nothing else: the capacity goes out
        # with the annotations record before the cloud call and with the status at the end.
        publish_capacity(adapter=self.adapter, infra=infra, status=status)
        try:
            await self._remember(scope, applied=False)
            group = await self.provider.ensure_group(
                spec=self.adapter.group_spec(infra=infra, pool=pool)
            )
            await self._remember(scope, applied=True)
            if self.infra_machines is not None and await self.infra_machines.sync(
                infra=infra, pool=pool, group=group, provider=self.provider, min_size=low
            ):
                group = await self.provider.describe_group(name=group.name)
            plan = Plan(members=len(group.instances))
            # A MachinePool being deleted is taking its Machines down one by one: replacing
            # them would launch instances nothing will ever drain or delete.
            pool_deleting = bool(pool["metadata"].get("deletionTimestamp"))
            if not external_size and not pool_deleting:
                plan = self._plan(group, desired=desired, infra=infra)
                group = await self._scale(group, plan=plan, infra=infra)
        except PermanentError as exc:
            status["failureReason"] = exc.code
            status["failureMessage"] = exc.message
            self._set_ready(scope, False, exc.code, exc.message)
            scope.event("Warning", exc.code, exc.message)
            await scope.commit(observed=True)
            return Result(requeue_after=self.steady_poll)
        except RetryableError as exc:
            return self._retry(exc)

        instances = sorted(
            (i for i in group.instances if i.state in ("pending", "running")),
            key=lambda i: (i.launched_at, i.instance_id),
        )
        ids = [i.provider_id for i in instances]
        if ids != list((infra.get("spec") or {}).get("providerIDList") or []):
            infra.setdefault("spec", {})["providerIDList"] = ids
        status.pop("failureReason", None)
        status.pop("failureMessage", None)
        status["replicas"] = len(instances)
        status["ready"] = True
        if self.adapter.machine_kind is not None:
            status["infrastructureMachineKind"] = self.adapter.machine_kind.kind
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
        # Provider-specific status fields (AWS: the launch template; none by default).
        status.update(self.adapter.status_fields(infra=infra, group=group))
        self._set_ready(scope, True, "Ready", "")
        await scope.commit(observed=True)
        if external_size:
            await self._follow_group_size(pool, group=group, live=len(instances))
        converged = (
            all(i.state == "running" for i in instances)
            and (external_size or (plan.members == desired and not plan.outdated))
            and not plan.removals
        )
        return Result(requeue_after=self.steady_poll if converged else self.busy_poll)

    # ---------------------------------------------------------------- steps

    def _plan(self, group: GroupStatus, *, desired: int, infra: Obj) -> Plan:
        now = self.clock()
        self._removing = {
            iid: when for iid, when in self._removing.items() if now - when < EXPECTATION_TTL
        }
        if self.infra_machines is not None:
            members = self.infra_machines.members(infra=infra, group=group)
            hold = bool(self.infra_machines.unaccounted_deletions(infra=infra))
        else:
            members = [Member(instance=i, ready=i.state == "running") for i in group.instances]
            hold = False
        members = [
            Member(instance=m.instance, going=True, marked=m.marked, ready=m.ready)
            if m.instance.instance_id in self._removing and not m.going
            else m
            for m in members
        ]
        limits = self.adapter.rolling_update(infra=infra)
        rollout: Rollout | None = None
        if limits is not None:
            rollout = resolve_rollout(
                max_surge=limits[0], max_unavailable=limits[1], desired=desired
            )
        return plan_scaling(
            members=members,
            desired=desired,
            capacity=group.desired_capacity,
            template_version=group.template_version,
            policy=self.adapter.delete_policy(infra=infra),
            rollout=rollout,
            hold=hold,
        )

    async def _scale(self, group: GroupStatus, *, plan: Plan, infra: Obj) -> GroupStatus:
        if plan.capacity is None and not plan.removals:
            return group
        if plan.capacity is not None and plan.capacity > group.desired_capacity:
            await self.provider.set_capacity(name=group.name, desired=plan.capacity)
        namespace = str(infra["metadata"]["namespace"])
        for removal in plan.removals:
            instance = removal.instance
            machine = None
            if self.infra_machines is not None:
                machine = self.infra_machines.machine(
                    namespace=namespace,
                    name=machine_name(pool=str(infra["metadata"]["name"]),
                                      instance_id=instance.instance_id),
                )  # fmt: skip
            if machine is not None:
                _log.info("removing machine", machine=machine["metadata"]["name"],
                          reason=removal.reason)  # fmt: skip
                await delete_with_annotations(
                    kube=self.kube, resource=MACHINE, obj=machine,
                    annotations={DELETE_REASON_ANNOTATION: removal.reason},
                )  # fmt: skip
            else:
                await self.provider.delete_instance(
                    name=group.name, instance_id=instance.instance_id, shrink=True
                )
            # Only a removal that was asked for counts as going: one whose call failed (a
            # 409 on a stale Machine) must be planned again by the retry, not trusted for
            # EXPECTATION_TTL and then left to the steady poll.
            self._removing[instance.instance_id] = self.clock()
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

    async def _remember(self, scope: ObjectScope, *, applied: bool) -> None:
        """The adapter's remembered annotations (AWS: the last-applied tags; none by
        default), written before ``ensure_group`` (``applied=False``) and after it
        succeeded (``applied=True``), only when they differ: an early write of the
        metadata alone, so the record survives a crash between the two."""
        wanted = self.adapter.remembered_annotations(infra=scope.obj, applied=applied)
        if not wanted:
            return
        meta = scope.obj["metadata"]
        annotations = dict(meta.get("annotations") or {})
        if all(annotations.get(k) == v for k, v in wanted.items()):
            return
        meta["annotations"] = {**annotations, **wanted}
        await scope.commit(status=False)

    async def _record_group_name(self, scope: ObjectScope) -> None:
        """Write ``status.groupName`` before the first cloud call (an early commit), so the
        name a group was created under is the one the pool uses for its life."""
        name = self.adapter.group_name(infra=scope.obj)
        if (scope.before.get("status") or {}).get(GROUP_NAME_FIELD) == name:
            return
        scope.status[GROUP_NAME_FIELD] = name
        await scope.commit()

    def _cluster_name(self, infra: Obj) -> str | None:
        """The pool's Cluster name: from its MachinePool while cached, else from the
        ``cluster.x-k8s.io/cluster-name`` label; None when neither says."""
        meta = infra["metadata"]
        owner = _owner_pool_name(infra)
        pool = self.pools.store.get(f"{meta['namespace']}/{owner}") if owner else None
        if pool is not None and pool["spec"].get("clusterName"):
            return str(pool["spec"]["clusterName"])
        label = (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL)
        return str(label) if label else None

    def _retry(self, exc: ProviderError) -> Result:
        if exc.retry_after is not None:
            _log.info("provider asked us to wait", code=exc.code, seconds=exc.retry_after)
            return Result(requeue_after=exc.retry_after)
        raise ReconcileError(f"provider: {exc}")

    @staticmethod
    def _set_ready(scope: ObjectScope, ok: bool, reason: str, message: str) -> None:
        scope.condition(
            Cond(type="Ready", status="True" if ok else "False", reason=reason, message=message)
        )


__all__ = ["DEFAULT_MAX_REPLICAS", "InfraPoolReconciler"]
