"""Node references: match the pool's provider IDs to workload-cluster Nodes.

Matching is by exact ``spec.providerID`` string, through the Node informer's providerID
index (no list of all Nodes per reconcile). For each matched Node the pool records a
``status.nodeRefs`` entry; a Node counts as ready when its ``Ready`` condition is True and as
available once it has been ready for ``template.spec.minReadySeconds``. When a Node will
become available later, a requeue is scheduled for exactly then, so ``availableReplicas``
never goes stale (Cluster API misses this).

Matched Nodes get the owner annotations (``cluster.x-k8s.io/cluster-name``,
``-cluster-namespace``, ``-owner-kind``, ``-owner-name``) and lose the
``node.cluster.x-k8s.io/uninitialized`` taint, in one JSON patch per Node
(:func:`node_patch`), sent only when something changes. The patch carries its own
preconditions instead of a resourceVersion: the taint is removed by index after a ``test``
of that very entry, and when the cached Node has no annotations the map is added after a
``test`` that it is still absent. So a concurrent write to the taints or the annotations
makes the whole patch fail (422, nothing applied) and the reconcile is retried; it can never
drop another writer's taint or annotation. The kubelet's status writes, which move the
resourceVersion every few seconds, do not touch the tested paths and so cause no conflict.
Nodes the pool referenced whose provider ID has left ``providerIDList`` (scaled-in
instances) are deleted.

Failure: no kubeconfig Secret, an unusable kubeconfig, or a workload cluster whose cache is
not synced leaves the counters as they were and sets ``MachinesReady=Unknown`` with the
reason; Node writes that fail are retried by the next reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.machinepool.scope import PoolScope
from controller.runtime.conditions import Cond
from controller.runtime.kube import NODES, ApiError, KubeClient
from controller.workload.clusters import ClusterKey, WorkloadCluster, WorkloadClusters

UNINITIALIZED_TAINT = "node.cluster.x-k8s.io/uninitialized"
OWNER_ANNOTATIONS = (
    "cluster.x-k8s.io/cluster-name",
    "cluster.x-k8s.io/cluster-namespace",
    "cluster.x-k8s.io/owner-kind",
    "cluster.x-k8s.io/owner-name",
)


def _ready_since(node: dict[str, Any]) -> datetime | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            stamp = cond.get("lastTransitionTime")
            if not stamp:
                return datetime.now(UTC)
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return None


def retired_candidates(*, scope: PoolScope, cluster: WorkloadCluster) -> list[dict[str, Any]]:
    """Nodes this pool has referenced: those in ``status.nodeRefs`` and those carrying its
    owner annotations. The annotations make the answer independent of a status that a
    reconcile on a slightly stale cache may not have seen yet."""
    found: dict[str, dict[str, Any]] = {}
    for ref in scope.status.get("nodeRefs") or []:
        node = cluster.nodes.store.get(str(ref.get("name")))
        if node is not None:
            found[node["metadata"]["name"]] = node
    for node in cluster.nodes_owned_by(kind="MachinePool", namespace=scope.namespace,
                                       name=scope.name):  # fmt: skip
        found[node["metadata"]["name"]] = node
    return list(found.values())


async def reconcile_noderefs(*, scope: PoolScope, workloads: WorkloadClusters) -> None:
    key = ClusterKey(scope.namespace, scope.pool.spec.cluster_name)
    cluster = workloads.get(key)
    if cluster is None:
        reason, message = (
            "WorkloadClusterNotConnected",
            f"no kubeconfig Secret {key.name}-kubeconfig in namespace {key.namespace}",
        )
        error = workloads.error(key)
        if error is not None:  # a fixed reason; the message never holds Secret data
            reason, message = error.reason, error.message
        scope.condition(
            Cond(type="MachinesReady", status="Unknown", reason=reason, message=message)
        )
        return
    if not cluster.nodes.synced:
        scope.condition(
            Cond(
                type="MachinesReady",
                status="Unknown",
                reason="WorkloadClusterNotSynced",
                message=f"waiting to list the Nodes of cluster {key}",
            )
        )
        scope.requeue(5.0)
        return
    ids = scope.provider_ids
    wanted = set(ids)
    for node in retired_candidates(scope=scope, cluster=cluster):
        provider_id = (node.get("spec") or {}).get("providerID")
        if provider_id and provider_id not in wanted:
            try:
                await cluster.kube.delete(NODES, name=node["metadata"]["name"])
            except ApiError as exc:
                if not exc.not_found:
                    raise
            scope.event(
                "Normal",
                "NodeDeleted",
                f"deleted Node {node['metadata']['name']}: its instance left the pool",
            )

    min_ready = scope.pool.spec.template.spec.min_ready_seconds or 0
    now = datetime.now(UTC)
    refs: list[dict[str, Any]] = []
    ready = available = 0
    versions: dict[str, int] = {}
    missing: list[str] = []
    for provider_id in ids:
        matched = cluster.node_for_provider_id(provider_id)
        if matched is None:
            missing.append(provider_id)
            continue
        node = matched
        meta = node["metadata"]
        refs.append({"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]})
        version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
        if version:
            versions[version] = versions.get(version, 0) + 1
        since = _ready_since(node)
        if since is not None:
            ready += 1
            remaining = min_ready - (now - since).total_seconds()
            if remaining <= 0:
                available += 1
            else:
                scope.requeue(remaining)
        await _patch_node(scope=scope, cluster_kube=cluster.kube, node=node)

    replicas = int(scope.status.get("replicas") or 0)
    scope.status["nodeRefs"] = refs
    scope.status["readyReplicas"] = ready
    scope.status["availableReplicas"] = available
    if versions:  # the API requires at least one entry when the field is present
        scope.status["versions"] = [
            {"version": v, "replicas": n} for v, n in sorted(versions.items())
        ]
    else:
        scope.status.pop("versions", None)
    v1 = scope.status.setdefault("deprecated", {}).setdefault("v1beta1", {})
    v1["readyReplicas"] = ready
    v1["availableReplicas"] = available
    v1["unavailableReplicas"] = max(replicas - available, 0)

    desired = scope.desired_replicas
    if ready == len(ids) == desired and not missing:
        scope.condition(Cond(type="MachinesReady", status="True", reason="Ready"))
        scope.v1beta1_condition(Cond(type="ReplicasReady", status="True", reason=""))
        return
    message = f"{ready} of {desired} Nodes ready"
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        message += f"; no Node yet with providerID {shown}"
    scope.condition(
        Cond(type="MachinesReady", status="False", reason="WaitingForNodes", message=message)
    )
    scope.v1beta1_condition(
        Cond(
            type="ReplicasReady", status="False", reason="WaitingForReplicasReady", message=message
        )
    )
    scope.requeue(30.0)


def _pointer(key: str) -> str:
    """One JSON Pointer reference token (RFC 6901): ``~`` as ``~0``, ``/`` as ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


def node_patch(*, node: dict[str, Any], annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902 ops) that gives cached ``node`` ``annotations`` and takes off
    the first :data:`UNINITIALIZED_TAINT`; empty when there is nothing to change.

    Every op is guarded by what it relies on, so the patch applies only to a Node whose
    tested parts still look as cached: annotation keys are added one by one into an existing
    map (other keys untouched), or, when the cache shows no map, the map is added after a
    ``test`` that it is still absent (the API server's JSON patch treats a ``null`` test
    value as "absent"); the taint is removed at its index after a ``test`` of the entry.
    """
    ops: list[dict[str, Any]] = []
    current = node["metadata"].get("annotations") or {}
    changed = {k: v for k, v in annotations.items() if current.get(k) != v}
    if changed and current:
        ops += [
            {"op": "add", "path": f"/metadata/annotations/{_pointer(k)}", "value": v}
            for k, v in changed.items()
        ]
    elif changed:
        ops += [
            {"op": "test", "path": "/metadata/annotations", "value": None},
            {"op": "add", "path": "/metadata/annotations", "value": changed},
        ]
    taints = (node.get("spec") or {}).get("taints") or []
    for index, taint in enumerate(taints):
        if taint.get("key") == UNINITIALIZED_TAINT:
            path = f"/spec/taints/{index}"
            ops += [{"op": "test", "path": path, "value": taint}, {"op": "remove", "path": path}]
            break
    return ops


async def _patch_node(*, scope: PoolScope, cluster_kube: KubeClient, node: dict[str, Any]) -> None:
    """Owner annotations and removal of the uninitialized taint: one guarded JSON patch
    (:func:`node_patch`), none when the Node already has both."""
    ops = node_patch(
        node=node,
        annotations={
            "cluster.x-k8s.io/cluster-name": scope.pool.spec.cluster_name,
            "cluster.x-k8s.io/cluster-namespace": scope.namespace,
            "cluster.x-k8s.io/owner-kind": "MachinePool",
            "cluster.x-k8s.io/owner-name": scope.name,
        },
    )
    if ops:
        await cluster_kube.json_patch(NODES, name=node["metadata"]["name"], ops=ops)
