"""The MachinePool reconciler: Cluster API's MachinePool controller, phase by phase.

For one MachinePool key:

1. Read the pool and its Cluster from the caches. A missing Cluster is reported
   (``Available=False``, reason ``ClusterNotFound``, and a Warning Event) and re-checked when
   a Cluster appears; a pool being deleted does not need its Cluster.
2. Add the finalizer ``machinepool.cluster.x-k8s.io`` (and stop: the update re-queues us);
   keep the ``cluster.x-k8s.io/cluster-name`` label and an owner reference to the Cluster.
   Not paused: the cluster-autoscaler min/max-size annotations may default ``spec.replicas``
   once (:mod:`.autoscaler`), before the infrastructure pool is adopted.
3. Paused (``Cluster.spec.paused`` or the ``cluster.x-k8s.io/paused`` annotation): set
   ``Paused=True`` and do nothing else — not even deletion.
4. Deleting: the pool's Machines first (each drained by the Machine controller), then
   :mod:`.deletion`. Otherwise bootstrap, infrastructure, node references and Machines
   (:mod:`.bootstrap`, :mod:`.infrastructure`, :mod:`.noderefs`, :mod:`.machines`); every
   phase runs even when an earlier one failed, and their errors are reported together.
5. :mod:`.status` computes phase and summary conditions (:mod:`.autoscaler` adds
   ``AutoscalerBounds``); then the scope's one commit writes the spec fields we own and
   the status, each only if it changed, and ``observedGeneration`` only when the reconcile
   succeeded, and records the Events. Which writes come earlier, and why, is listed in one
   place: :mod:`.scope`.

The result asks for a requeue only when time alone will change something (a Node becoming
available after ``minReadySeconds``, a fallback while Nodes are missing); everything else is
driven by watch events.
"""

from __future__ import annotations

from typing import Any

import pydantic
import structlog

from controller.api.kinds import MACHINE_POOL
from controller.api.labels import CLUSTER_NAME_LABEL
from controller.machinepool.autoscaler import default_replicas, report_bounds
from controller.machinepool.bootstrap import reconcile_bootstrap
from controller.machinepool.deletion import reconcile_delete
from controller.machinepool.external import ExternalObjects
from controller.machinepool.infrastructure import reconcile_infrastructure
from controller.machinepool.machines import PoolMachines, delete_pool_machines, reconcile_machines
from controller.machinepool.noderefs import reconcile_noderefs
from controller.machinepool.scope import PoolScope
from controller.machinepool.status import update_status
from controller.runtime.conditions import Cond
from controller.runtime.controller import ReconcileError, Result, TerminalError
from controller.runtime.events import EventRecorder
from controller.runtime.finalizers import add_finalizer, remove_finalizer
from controller.runtime.informer import Informer
from controller.runtime.kube import ApiError, KubeClient
from controller.workload.clusters import WorkloadClusters

FINALIZER = "machinepool.cluster.x-k8s.io"

_log = structlog.get_logger(__name__)


class MachinePoolReconciler:
    """Reconciles MachinePools; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        pools: Informer,
        clusters: Informer,
        external: ExternalObjects,
        workloads: WorkloadClusters,
        secrets: Informer | None = None,
        recorder: EventRecorder | None = None,
        machines: PoolMachines | None = None,
    ) -> None:
        self.kube = kube
        self.pools = pools
        self.clusters = clusters
        self.external = external
        self.workloads = workloads
        self.secrets = secrets
        self.recorder = recorder
        self.machines = machines

    async def reconcile(self, key: str) -> Result:
        obj = self.pools.store.get(key)
        if obj is None:
            return Result()
        try:
            scope = PoolScope.from_object(obj, kube=self.kube, recorder=self.recorder)
        except pydantic.ValidationError as exc:
            raise TerminalError(f"MachinePool {key} does not parse: {exc}") from exc
        cluster_name = scope.pool.spec.cluster_name
        cluster = self.clusters.store.get(f"{scope.namespace}/{cluster_name}")
        scope.cluster = cluster

        if cluster is None and not scope.deleting:
            message = f"Cluster {scope.namespace}/{cluster_name} not found"
            scope.condition(
                Cond(type="Available", status="False", reason="ClusterNotFound", message=message)
            )
            scope.event("Warning", "ClusterNotFound", message)
            await scope.commit_pool(succeeded=False)
            return Result()

        if not scope.deleting and await add_finalizer(
            kube=self.kube, resource=MACHINE_POOL, obj=scope.obj, finalizer=FINALIZER
        ):
            return Result()  # the update re-queues us
        if not scope.paused(cluster=cluster):  # before the infra pool is adopted
            await default_replicas(kube=self.kube, scope=scope)
        if cluster is not None:
            await self._ensure_cluster_link(scope, cluster)

        paused_why = scope.paused(cluster=cluster)
        if paused_why:
            scope.condition(Cond(type="Paused", status="True", reason="Paused", message=paused_why))
            await scope.commit_pool(succeeded=True, paused=True)
            return Result()
        scope.condition(Cond(type="Paused", status="False", reason="NotPaused"))

        errors: list[str] = []
        if scope.deleting:
            try:
                done = await self._delete_machines(scope) and await reconcile_delete(
                    scope=scope, external=self.external, workloads=self.workloads
                )
            except ApiError as exc:
                errors.append(f"deletion: {exc}")
                done = False
            update_status(scope)
            if done:
                await self._remove_finalizer(scope)
                return Result()
        else:
            phases = (
                (
                    "bootstrap",
                    reconcile_bootstrap(scope=scope, external=self.external, secrets=self.secrets),
                ),
                ("infrastructure", reconcile_infrastructure(scope=scope, external=self.external)),
            )
            for name, phase in phases:
                try:
                    await phase
                except ApiError as exc:
                    errors.append(f"{name}: {exc}")
            try:
                await reconcile_noderefs(scope=scope, workloads=self.workloads)
            except ApiError as exc:
                errors.append(f"node references: {exc}")
            if self.machines is not None:
                try:
                    await reconcile_machines(scope=scope, machines=self.machines)
                except ApiError as exc:
                    errors.append(f"machines: {exc}")
            report_bounds(scope)
            update_status(scope)
        await scope.commit_pool(succeeded=not errors)
        if errors:
            raise ReconcileError("; ".join(errors))
        return Result(requeue_after=scope.requeue_after)

    # ------------------------------------------------------------- helpers

    async def _delete_machines(self, scope: PoolScope) -> bool:
        """First step of deletion: the pool's Machines go (each drained), then the rest."""
        if self.machines is None:
            return True
        remaining = await delete_pool_machines(scope=scope, machines=self.machines)
        if not remaining:
            return True
        shown = "; ".join(scope.deleting_machines[:3]) or ", ".join(remaining[:3])
        more = f"; and {len(remaining) - 3} more" if len(remaining) > 3 else ""
        scope.condition(
            Cond(
                type="Deleting",
                status="True",
                reason="WaitingForMachines",
                message=f"waiting for {len(remaining)} Machine(s) to be deleted: {shown}{more}",
            )
        )
        return False

    async def _ensure_cluster_link(self, scope: PoolScope, cluster: dict[str, Any]) -> None:
        """An early write (see :mod:`.scope`): the owner reference list is replaced whole, so
        it goes with a resourceVersion precondition the scope's commit does not carry."""
        meta = scope.obj["metadata"]
        labels = meta.get("labels") or {}
        refs = meta.get("ownerReferences") or []
        uid = cluster["metadata"]["uid"]
        patch: dict[str, Any] = {}
        if labels.get(CLUSTER_NAME_LABEL) != scope.pool.spec.cluster_name:
            patch["labels"] = {CLUSTER_NAME_LABEL: scope.pool.spec.cluster_name}
        if not any(r.get("uid") == uid for r in refs):
            patch["ownerReferences"] = [
                *refs,
                {
                    "apiVersion": cluster.get("apiVersion", "cluster.x-k8s.io/v1beta2"),
                    "kind": "Cluster",
                    "name": cluster["metadata"]["name"],
                    "uid": uid,
                },
            ]
        if patch:
            updated = await self.kube.merge_patch(
                MACHINE_POOL,
                namespace=scope.namespace,
                name=scope.name,
                patch={"metadata": patch},
                resource_version=meta["resourceVersion"],
            )
            scope.adopt(updated)

    async def _remove_finalizer(self, scope: PoolScope) -> None:
        await remove_finalizer(
            kube=self.kube, resource=MACHINE_POOL, obj=scope.obj, finalizer=FINALIZER
        )
        scope.emit_events()
