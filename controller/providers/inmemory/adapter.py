"""How an ``InMemoryMachinePool`` becomes a simulated instance group.

The group's name (:mod:`controller.providers.naming`: a readable prefix and a hash of
``<namespace>/<name>``, recorded in ``status.groupName`` and kept for the object's life) never
collides across namespaces; the group carries the ownership tags (the pool's namespace and
name, and :data:`CLUSTER_TAG`), and a group of that name without them is left untouched.
Its template is the
pool's ``spec.template`` plus the Kubernetes version of the owning MachinePool (what the
simulated kubelets report); its template version is ``template.version`` when given, else a
short hash of the template, so any change to the template is a new version.
``template.instanceType`` names one of :data:`INSTANCE_TYPES`, whose capacity is published
for cluster-autoscaler's scale from zero (:mod:`controller.infrastructure.capacity`); other names
publish nothing.
"""

from __future__ import annotations

import hashlib
import json

from controller.api.kinds import IN_MEMORY_MACHINE, IN_MEMORY_MACHINE_POOL, Kind
from controller.providers.adapter import NodeCapacity, PoolAdapterDefaults
from controller.providers.base import GroupSpec
from controller.providers.inmemory.template import DEFAULT_KUBERNETES_VERSION
from controller.providers.naming import group_name, pool_owner_tags, recorded_group_name
from controller.runtime.store import Obj

#: The simulator's group names are at most 255 characters.
MAX_GROUP_NAME = 255
#: Ownership tag naming the pool's Cluster API Cluster.
CLUSTER_TAG = "machinepool.cluster.x-k8s.io/cluster-name"

#: The simulator's instance types, for cluster-autoscaler's scale from zero. Simulated Nodes
#: do not enforce them; they are what a pool of that type says it offers.
INSTANCE_TYPES: dict[str, NodeCapacity] = {
    "small": NodeCapacity(cpu="2", memory="4Gi", ephemeral_disk="20Gi", max_pods=110),
    "medium": NodeCapacity(cpu="4", memory="16Gi", ephemeral_disk="50Gi", max_pods=110),
    "large": NodeCapacity(cpu="16", memory="64Gi", ephemeral_disk="200Gi", max_pods=250),
    "gpu": NodeCapacity(
        cpu="8", memory="32Gi", ephemeral_disk="100Gi", max_pods=110,
        gpu_type="nvidia.com/gpu", gpu_count=1,
    ),
}  # fmt: skip


def inmemory_group_name(*, namespace: str, name: str) -> str:
    """The group name a new ``InMemoryMachinePool`` ``namespace/name`` gets."""
    return group_name(namespace=namespace, name=name, max_length=MAX_GROUP_NAME)


class InMemoryPoolAdapter(PoolAdapterDefaults):
    """:class:`~controller.providers.adapter.PoolAdapter` for ``InMemoryMachinePool``."""

    kind: Kind = IN_MEMORY_MACHINE_POOL
    machine_kind: Kind = IN_MEMORY_MACHINE
    finalizer: str = "inmemorymachinepool.infrastructure.cluster.x-k8s.io"

    def group_name(self, *, infra: Obj) -> str:
        return recorded_group_name(infra=infra, max_length=MAX_GROUP_NAME)

    def owner_tags(self, *, infra: Obj, cluster: str | None) -> dict[str, str]:
        meta = infra["metadata"]
        tags = pool_owner_tags(namespace=str(meta["namespace"]), name=str(meta["name"]))
        if cluster:
            tags[CLUSTER_TAG] = cluster
        return tags

    def group_spec(self, *, infra: Obj, pool: Obj) -> GroupSpec:
        spec = infra.get("spec") or {}
        template = dict(spec.get("template") or {})
        pool_version = (
            ((pool.get("spec") or {}).get("template") or {}).get("spec", {}).get("version")
        )
        template["kubernetesVersion"] = pool_version or DEFAULT_KUBERNETES_VERSION
        version = (
            template.get("version")
            or hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        )
        low, high = self.size_bounds(infra=infra)
        owner = self.owner_tags(infra=infra, cluster=str(pool["spec"]["clusterName"]))
        return GroupSpec(
            name=self.group_name(infra=infra),
            cluster=f"{infra['metadata']['namespace']}/{pool['spec']['clusterName']}",
            template=template,
            template_version=str(version),
            min_size=low,
            max_size=high,
            zones=tuple(template.get("zones") or ()),
            tags=owner,
            owner_tags=owner,
        )

    def delete_policy(self, *, infra: Obj) -> str:
        return str((infra.get("spec") or {}).get("deletePolicy") or "Oldest")

    def rolling_update(self, *, infra: Obj) -> tuple[int | str | None, int | str | None] | None:
        strategy = (infra.get("spec") or {}).get("strategy") or {}
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return None
        return rolling.get("maxSurge"), rolling.get("maxUnavailable")

    def capacity(self, *, infra: Obj) -> NodeCapacity | None:
        """Scale-from-zero capacity of ``template.instanceType`` (None when not in the table)."""
        template = (infra.get("spec") or {}).get("template") or {}
        return INSTANCE_TYPES.get(str(template.get("instanceType") or ""))

    def size_bounds(self, *, infra: Obj) -> tuple[int, int | None]:
        spec = infra.get("spec") or {}
        high = spec.get("maxSize")
        return int(spec.get("minSize") or 0), (int(high) if high is not None else None)
