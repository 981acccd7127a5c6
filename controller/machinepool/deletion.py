"""Deletion: remove what the pool owns, then let the MachinePool go.

Order, as Cluster API: delete the bootstrap config (if any) and the infrastructure pool, and
wait until both are gone (the provider tears down the cloud group meanwhile; their deletion
events re-queue the pool). Each is deleted only if its controller owner reference carries
this pool's uid (:meth:`~.external.ExternalObjects.delete`): an object the pool never
adopted, another pool's, or one of a kind that is not a contract kind for its role is left
alone, so naming another pool's infra pool cannot delete it or its cloud group.

Then delete the workload Nodes the pool referenced, unless
``template.spec.deletion.nodeDeletionTimeoutSeconds`` (default 10) has passed since the
deletion began, so an unreachable workload cluster cannot hold the pool forever. Then drop
the finalizer.

Returns True when the finalizer may be removed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller.machinepool.contract import Role
from controller.machinepool.external import ExternalObjects
from controller.machinepool.noderefs import retired_candidates
from controller.machinepool.scope import PoolScope
from controller.runtime.conditions import Cond
from controller.runtime.kube import NODES, ApiError
from controller.workload.clusters import ClusterKey, WorkloadClusters

DEFAULT_NODE_DELETION_TIMEOUT = 10


async def reconcile_delete(
    *, scope: PoolScope, external: ExternalObjects, workloads: WorkloadClusters
) -> bool:
    spec = scope.pool.spec.template.spec
    waiting: list[str] = []
    refs = [
        (spec.bootstrap.config_ref, Role.BOOTSTRAP),
        (spec.infrastructure_ref, Role.INFRASTRUCTURE),
    ]
    uid = str(scope.obj["metadata"]["uid"])
    for ref, role in refs:
        if ref is None:
            continue
        try:
            if await external.delete(namespace=scope.namespace, ref=ref, role=role, owner_uid=uid):
                waiting.append(f"{ref.kind} {ref.name}")
        except LookupError:
            continue  # not a kind the pool can own, so nothing of it is the pool's to delete
    if waiting:
        scope.condition(
            Cond(
                type="Deleting",
                status="True",
                reason="WaitingForOwnedObjects",
                message=f"waiting for {', '.join(waiting)} to be deleted",
            )
        )
        scope.requeue(15.0)
        return False

    timeout = spec.deletion.node_deletion_timeout_seconds
    if timeout is None:
        timeout = DEFAULT_NODE_DELETION_TIMEOUT
    started = datetime.fromisoformat(
        str(scope.obj["metadata"]["deletionTimestamp"]).replace("Z", "+00:00")
    )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    cluster = workloads.get(ClusterKey(scope.namespace, scope.pool.spec.cluster_name))
    node_refs: list[dict[str, object]] = list(scope.status.get("nodeRefs") or [])
    if cluster is not None:
        node_refs = [{"name": n["metadata"]["name"]}
                     for n in retired_candidates(scope=scope, cluster=cluster)]  # fmt: skip
    if node_refs and (timeout == 0 or elapsed < timeout):
        if cluster is None:
            scope.condition(
                Cond(
                    type="Deleting",
                    status="True",
                    reason="WaitingForWorkloadCluster",
                    message=(
                        "cannot reach the workload cluster to delete Nodes; giving up on them "
                        f"{timeout}s after deletion started"
                        if timeout
                        else "cannot reach the workload cluster to delete Nodes"
                    ),
                )
            )
            scope.requeue(max(timeout - elapsed, 1.0) if timeout else 15.0)
            return False
        for node_ref in node_refs:
            try:
                await cluster.kube.delete(NODES, name=str(node_ref["name"]))
            except ApiError as exc:
                if not exc.not_found:
                    raise
    elif node_refs:
        scope.event(
            "Warning",
            "NodeDeletionSkipped",
            f"nodeDeletionTimeoutSeconds ({timeout}s) passed; {len(node_refs)} Node(s) left "
            "in the workload cluster",
        )
    return True
