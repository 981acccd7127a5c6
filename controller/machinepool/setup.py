"""Wire the MachinePool reconciler into a manager: informers, indexes and event mapping.

Event sources, each mapped to the MachinePool keys it concerns:

- MachinePools themselves;
- Clusters → the pools in that namespace whose ``spec.clusterName`` is the Cluster (pause
  and un-pause, a Cluster that appears after its pools);
- infrastructure pools of the kinds this process knows → their controller owner, and the
  pools whose ``infrastructureRef`` names them (before they are adopted);
- Secrets labelled ``cluster.x-k8s.io/cluster-name``: kubeconfig Secrets (of an existing
  Cluster, which the Cluster informer tells the workload connections too) start/stop the
  workload cluster connection (:mod:`controller.workload.clusters`); bootstrap data Secrets
  map to the pools that name them in ``dataSecretName``;
- Machines → their controller owner; infra machines (of the kinds given) → the pool whose
  infra pool owns them;
- workload Nodes → the pools whose ``spec.providerIDList`` holds the Node's provider ID
  (an index on the pool cache, so a Node event costs a dict lookup), or that the Node's
  owner annotations name (for a Node whose provider ID has already left the list).

The informers and their indexes are the shared ones (:mod:`controller.shared`); the workload
cluster connections are the caller's (``app.py`` owns and runs them), this controller only
listens to their Node events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.api.kinds import MACHINE_POOL, Kind
from controller.machinepool.contract import ContractKinds
from controller.machinepool.external import ExternalObjects
from controller.machinepool.machines import PoolMachines
from controller.machinepool.reconciler import MachinePoolReconciler
from controller.runtime.controller import Controller
from controller.runtime.crds import CrdCatalog
from controller.runtime.discovery import RestMapper, ServedResource
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.store import Obj
from controller.shared import (
    BOOTSTRAP_SECRET_INDEX,
    CLUSTER_INDEX,
    INFRA_REF_INDEX,
    POOL_PROVIDER_IDS_INDEX,
    ControllerOptions,
    infra_ref_key,
)
from controller.shared import object_key as _key
from controller.workload.clusters import ClusterKey, WorkloadClusters


@dataclass
class MachinePoolController:
    controller: Controller
    reconciler: MachinePoolReconciler


def setup_machinepool_controller(
    *,
    options: ControllerOptions,
    workloads: WorkloadClusters,
    infra_kinds: Sequence[Kind],
    infra_machine_kinds: Sequence[Kind] = (),
) -> MachinePoolController:
    """The MachinePool controller for pools whose infrastructure is of ``infra_kinds``
    (Machines for the infra machines of ``infra_machine_kinds``), on the connections of
    ``workloads`` (owned by the caller, which runs it)."""
    manager = options.manager
    kube = manager.kube
    shared = options.informers
    pools = shared.pools
    clusters = shared.clusters
    secrets = shared.secrets
    mapper = RestMapper(kube=kube)
    infra_informers: dict[tuple[str, str], Informer] = {}
    for kind in infra_kinds:
        mapper.known(
            ServedResource(
                group=kind.group,
                version=kind.version,
                plural=kind.plural,
                kind=kind.kind,
                namespaced=kind.namespaced,
            )
        )
        infra_informers[(kind.group, kind.kind)] = shared.infra_pools(kind)

    machines = shared.machines
    infra_machine_informers: dict[tuple[str, str], Informer] = {
        (kind.group, kind.kind): shared.infra_machines(kind) for kind in infra_machine_kinds
    }
    pool_machines = PoolMachines(
        kube=kube, machines=machines, infra_machines=infra_machine_informers
    )

    controller_box: list[Controller] = []

    def on_node(cluster: ClusterKey, event: InformerEvent) -> None:
        if controller_box:
            for key in _pools_for_node(pools, cluster, event.obj):
                controller_box[0].enqueue(key, event=event, kind="Node")

    workloads.add_node_handler(on_node)
    contract = ContractKinds(mapper=mapper, crds=CrdCatalog(kube=kube))
    external = ExternalObjects(kube=kube, contract=contract, informers=infra_informers)
    reconciler = MachinePoolReconciler(
        kube=kube,
        pools=pools,
        clusters=clusters,
        external=external,
        workloads=workloads,
        secrets=secrets,
        recorder=options.recorder,
        machines=pool_machines if infra_machine_kinds else None,
    )
    controller = Controller(
        name="machinepool",
        reconciler=reconciler,
        concurrency=options.concurrency,
        reconcile_timeout=options.reconcile_timeout,
        registry=options.registry,
        urgency=manager.urgency,
    )
    controller_box.append(controller)
    controller.watch(pools, lambda e: [e.key])
    controller.watch(
        clusters,
        lambda e: [_key(p) for p in pools.store.by_index(name=CLUSTER_INDEX, value=e.key)],
    )
    controller.watch(
        secrets,
        lambda e: [_key(p) for p in pools.store.by_index(name=BOOTSTRAP_SECRET_INDEX, value=e.key)],
    )

    def infra_to_pools(event: InformerEvent) -> list[str]:
        # By owner, and by reference: an infra object created after its MachinePool is not
        # owned yet, and the pool must learn that it now exists.
        meta = event.obj.get("metadata", {})
        api_version = str(event.obj.get("apiVersion", ""))
        ref = infra_ref_key(namespace=meta.get("namespace"), group=api_version.split("/")[0],
                            kind=event.obj.get("kind"), name=meta.get("name"))  # fmt: skip
        keys = set(_owner_pool_keys(event))
        keys.update(_key(p) for p in pools.store.by_index(name=INFRA_REF_INDEX, value=ref))
        return sorted(keys)

    for informer in infra_informers.values():
        controller.watch(informer, infra_to_pools)

    def infra_machine_to_pools(event: InformerEvent) -> list[str]:
        # infra machine -> its infra pool (controller owner) -> the pool referencing it
        meta = event.obj.get("metadata", {})
        keys: set[str] = set()
        for ref in meta.get("ownerReferences") or []:
            if not ref.get("controller"):
                continue
            group = str(ref.get("apiVersion", "")).split("/")[0]
            infra_ref = infra_ref_key(namespace=meta.get("namespace"), group=group,
                                      kind=ref.get("kind"), name=ref.get("name"))  # fmt: skip
            keys.update(
                _key(p) for p in pools.store.by_index(name=INFRA_REF_INDEX, value=infra_ref)
            )
        return sorted(keys)

    if infra_machine_kinds:
        controller.watch(machines, _owner_pool_keys)
        for informer in infra_machine_informers.values():
            controller.watch(informer, infra_machine_to_pools)
    manager.add_controller(controller)
    return MachinePoolController(controller=controller, reconciler=reconciler)


def _owner_pool_keys(event: InformerEvent) -> list[str]:
    meta = event.obj.get("metadata", {})
    return [
        f"{meta.get('namespace')}/{ref['name']}"
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == MACHINE_POOL.kind and ref.get("controller")
    ]


def _pools_for_node(pools: Informer, cluster: ClusterKey, node: Obj) -> list[str]:
    keys: set[str] = set()
    provider_id = (node.get("spec") or {}).get("providerID")
    if provider_id:
        for pool in pools.store.by_index(name=POOL_PROVIDER_IDS_INDEX, value=provider_id):
            if pool["metadata"].get("namespace") == cluster.namespace:
                keys.add(_key(pool))
    annotations = node.get("metadata", {}).get("annotations") or {}
    if (
        annotations.get("cluster.x-k8s.io/owner-kind") == MACHINE_POOL.kind
        and annotations.get("cluster.x-k8s.io/cluster-namespace") == cluster.namespace
        and annotations.get("cluster.x-k8s.io/owner-name")
    ):
        keys.add(f"{cluster.namespace}/{annotations['cluster.x-k8s.io/owner-name']}")
    return sorted(keys)
