"""Wire the Machine controller into a manager.

Event sources, each mapped to Machine keys: Machines themselves; infra machines (the
Machine of the same name: its ``infrastructureRef``); workload Nodes (the Machine whose
``spec.providerID`` is the Node's, through an index); Clusters (pause, un-pause: the
Machines of that cluster, through an index); MachinePools (the Machines whose controller
owner they are by name: a pool that appears or is recreated decides which Machines are live).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.api.kinds import Kind
from controller.machines.reconciler import MachineReconciler
from controller.runtime.controller import Controller
from controller.runtime.informer import Informer, InformerEvent
from controller.shared import (
    CLUSTER_INDEX,
    CONTROLLER_OWNER_INDEX,
    MACHINE_PROVIDER_ID_INDEX,
    ControllerOptions,
)
from controller.shared import object_key as _key
from controller.workload.clusters import ClusterKey, WorkloadClusters


def setup_machine_controller(
    *,
    options: ControllerOptions,
    workloads: WorkloadClusters,
    infra_machine_kinds: Sequence[Kind],
) -> Controller:
    """The Machine controller for the Machines of MachinePools whose infra machines are of
    ``infra_machine_kinds``, on the connections of ``workloads`` (owned by the caller)."""
    manager = options.manager
    shared = options.informers
    machines = shared.machines
    clusters = shared.clusters
    pools = shared.pools
    infra: dict[tuple[str, str], Informer] = {
        (kind.group, kind.kind): shared.infra_machines(kind) for kind in infra_machine_kinds
    }
    reconciler = MachineReconciler(
        kube=manager.kube,
        machines=machines,
        pools=pools,
        clusters=clusters,
        workloads=workloads,
        infra_machines=infra,
        recorder=options.recorder,
    )
    controller = Controller(
        name="machine",
        reconciler=reconciler,
        concurrency=options.concurrency,
        reconcile_timeout=options.reconcile_timeout,
        registry=options.registry,
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
            name=MACHINE_PROVIDER_ID_INDEX, value=f"{cluster.namespace}/{provider_id}"
        ):
            controller.enqueue(_key(machine), event=event, kind="Node")

    workloads.add_node_handler(on_node)
    manager.add_controller(controller)
    return controller


__all__ = ["setup_machine_controller"]
