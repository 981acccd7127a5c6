"""Wire the Machine controller into a manager.

Event sources, each mapped to Machine keys: Machines themselves; infra machines (the
Machine of the same name: its ``infrastructureRef``); workload Nodes (the Machine whose
``spec.providerID`` is the Node's, through an index); Clusters (pause, un-pause: the
Machines of that cluster, through an index); MachinePools (the Machines whose controller
owner they are by name: a pool that appears or is recreated decides which Machines are live).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_POOL, Kind
from controller.machines.reconciler import MachineReconciler
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer, InformerEvent, Namespaces
from controller.runtime.manager import Manager
from controller.runtime.store import CONTROLLER_OWNER_INDEX, Obj, controller_owner_keys
from controller.workload.clusters import ClusterKey, WorkloadClusters

PROVIDER_ID_INDEX = "providerID"
CLUSTER_INDEX = "cluster"


def _machine_provider_id(obj: Obj) -> Iterable[str]:
    provider_id = (obj.get("spec") or {}).get("providerID")
    namespace = obj.get("metadata", {}).get("namespace")
    return [f"{namespace}/{provider_id}"] if provider_id else []


def _machine_cluster(obj: Obj) -> Iterable[str]:
    name = (obj.get("spec") or {}).get("clusterName")
    namespace = obj.get("metadata", {}).get("namespace")
    return [f"{namespace}/{name}"] if name else []


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def setup_machine_controller(
    *,
    manager: Manager,
    namespace: Namespaces,
    workloads: WorkloadClusters,
    infra_machine_kinds: Sequence[Kind],
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    watch_filter: str | None = None,
) -> Controller:
    machines = manager.informer(MACHINE, namespace=namespace, label_selector=watch_filter)
    machines.store.ensure_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
    machines.store.ensure_index(name=PROVIDER_ID_INDEX, func=_machine_provider_id)
    machines.store.ensure_index(name=CLUSTER_INDEX, func=_machine_cluster)
    clusters = manager.informer(CLUSTER, namespace=namespace)
    pools = manager.informer(MACHINE_POOL, namespace=namespace, label_selector=watch_filter)
    infra: dict[tuple[str, str], Informer] = {
        (kind.group, kind.kind): manager.informer(
            kind, namespace=namespace, label_selector=watch_filter
        )
        for kind in infra_machine_kinds
    }
    reconciler = MachineReconciler(
        kube=manager.kube,
        machines=machines,
        pools=pools,
        clusters=clusters,
        workloads=workloads,
        infra_machines=infra,
        recorder=recorder,
    )
    controller = Controller(
        name="machine",
        reconciler=reconciler,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
        urgency=manager.urgency,
    )
    controller.watch(machines, lambda e: [e.key])
    controller.watch(
        clusters,
        lambda e: [_key(m) for m in machines.store.by_index(name=CLUSTER_INDEX, value=e.key)],
    )
    controller.watch(
        pools,
        lambda e: [
            _key(m) for m in machines.store.by_index(name=CONTROLLER_OWNER_INDEX, value=e.key)
        ],
    )
    for informer in infra.values():
        # Infra machines and their Machines share names.
        controller.watch(informer, lambda e: [e.key] if e.key in machines.store else [])

    def on_node(cluster: ClusterKey, event: InformerEvent) -> None:
        provider_id = (event.obj.get("spec") or {}).get("providerID")
        if not provider_id:
            return
        for machine in machines.store.by_index(
            name=PROVIDER_ID_INDEX, value=f"{cluster.namespace}/{provider_id}"
        ):
            controller.enqueue(_key(machine), event=event, kind="Node")

    workloads.add_node_handler(on_node)
    manager.add_controller(controller)
    return controller


__all__ = ["setup_machine_controller"]
