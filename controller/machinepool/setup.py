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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_POOL, Kind
from controller.machinepool.contract import ContractKinds
from controller.machinepool.external import ExternalObjects
from controller.machinepool.machines import PoolMachines
from controller.machinepool.reconciler import MachinePoolReconciler
from controller.runtime.controller import Controller
from controller.runtime.crds import CrdCatalog
from controller.runtime.discovery import RestMapper, ServedResource
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer, InformerEvent, Namespaces
from controller.runtime.kube import rest_metrics_for
from controller.runtime.manager import Manager
from controller.runtime.store import CONTROLLER_OWNER_INDEX, Obj, controller_owner_keys
from controller.workload.clusters import ClusterKey, WorkloadClusters

PROVIDER_ID_INDEX = "providerID"
CLUSTER_INDEX = "cluster"
BOOTSTRAP_SECRET_INDEX = "bootstrapSecret"
INFRA_REF_INDEX = "infrastructureRef"


def _pool_provider_ids(obj: Obj) -> Iterable[str]:
    return list((obj.get("spec") or {}).get("providerIDList") or [])


def _pool_bootstrap_secret(obj: Obj) -> Iterable[str]:
    meta = obj.get("metadata", {})
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = (spec.get("bootstrap") or {}).get("dataSecretName")
    return [f"{meta.get('namespace')}/{name}"] if name else []


def _ref_key(*, namespace: object, group: object, kind: object, name: object) -> str:
    return f"{namespace}/{group}/{kind}/{name}"


def _pool_infra_ref(obj: Obj) -> Iterable[str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    ref = spec.get("infrastructureRef") or {}
    if not ref.get("name"):
        return []
    namespace = obj.get("metadata", {}).get("namespace")
    return [
        _ref_key(namespace=namespace, group=ref.get("apiGroup"), kind=ref.get("kind"),
                 name=ref.get("name"))
    ]  # fmt: skip


def _pool_cluster(obj: Obj) -> Iterable[str]:
    meta = obj.get("metadata", {})
    name = (obj.get("spec") or {}).get("clusterName")
    return [f"{meta.get('namespace')}/{name}"] if name else []


@dataclass
class MachinePoolController:
    controller: Controller
    reconciler: MachinePoolReconciler
    workloads: WorkloadClusters


def setup_machinepool_controller(
    *,
    manager: Manager,
    namespace: Namespaces,
    infra_kinds: Sequence[Kind],
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    infra_machine_kinds: Sequence[Kind] = (),
    watch_filter: str | None = None,
    allow_insecure_kubeconfigs: bool = False,
) -> MachinePoolController:
    kube = manager.kube
    # --watch-filter selects the pools we own; Clusters, Secrets and infra objects stay
    # unfiltered, since they are only looked up or mapped to (already filtered) pools.
    pools = manager.informer(MACHINE_POOL, namespace=namespace, label_selector=watch_filter)
    pools.store.add_index(name=PROVIDER_ID_INDEX, func=_pool_provider_ids)
    pools.store.add_index(name=CLUSTER_INDEX, func=_pool_cluster)
    pools.store.add_index(name=BOOTSTRAP_SECRET_INDEX, func=_pool_bootstrap_secret)
    pools.store.add_index(name=INFRA_REF_INDEX, func=_pool_infra_ref)
    clusters = manager.informer(CLUSTER, namespace=namespace)
    secrets = manager.informer(
        WorkloadClusters.secrets_resource(),
        namespace=namespace,
        label_selector=WorkloadClusters.secret_label_selector(),
    )
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
        infra_informers[(kind.group, kind.kind)] = manager.informer(kind, namespace=namespace)

    machines = manager.informer(MACHINE, namespace=namespace, label_selector=watch_filter)
    machines.store.ensure_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
    infra_machine_informers: dict[tuple[str, str], Informer] = {}
    for kind in infra_machine_kinds:
        informer = manager.informer(kind, namespace=namespace, label_selector=watch_filter)
        informer.store.ensure_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
        infra_machine_informers[(kind.group, kind.kind)] = informer
    pool_machines = PoolMachines(
        kube=kube, machines=machines, infra_machines=infra_machine_informers
    )

    controller_box: list[Controller] = []

    def on_node(cluster: ClusterKey, event: InformerEvent) -> None:
        if controller_box:
            for key in _pools_for_node(pools, cluster, event.obj):
                controller_box[0].enqueue(key, event=event, kind="Node")

    workloads = WorkloadClusters(
        on_node_event=on_node,
        rest_metrics=rest_metrics_for(registry),
        allow_insecure=allow_insecure_kubeconfigs,
        on_write=kube.on_write,
    )
    secrets.add_handler(workloads.handle_secret_event)
    clusters.add_handler(workloads.handle_cluster_event)  # only an existing Cluster's Secret
    contract = ContractKinds(mapper=mapper, crds=CrdCatalog(kube=kube))
    external = ExternalObjects(kube=kube, contract=contract, informers=infra_informers)
    reconciler = MachinePoolReconciler(
        kube=kube,
        pools=pools,
        clusters=clusters,
        external=external,
        workloads=workloads,
        secrets=secrets,
        recorder=recorder,
        machines=pool_machines if infra_machine_kinds else None,
    )
    controller = Controller(
        name="machinepool",
        reconciler=reconciler,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
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
        ref = _ref_key(namespace=meta.get("namespace"), group=api_version.split("/")[0],
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
            infra_ref = _ref_key(namespace=meta.get("namespace"), group=group,
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
    manager.add_runnable(name="workload clusters", run=workloads.run)
    return MachinePoolController(controller=controller, reconciler=reconciler, workloads=workloads)


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


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
        for pool in pools.store.by_index(name=PROVIDER_ID_INDEX, value=provider_id):
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
