"""Wire an infrastructure-pool reconciler (one per infra kind) into a manager.

Event sources mapped to infra pool keys: the infra pool itself, and its MachinePool (a
change of ``spec.replicas``, of the pause annotation, or the adoption that makes the pool
its owner) through ``spec.template.spec.infrastructureRef``; when the adapter has a machine
kind, its infra machines (to their owning pool) and the Machines of the same names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_POOL
from controller.providers.base import InstanceGroupProvider
from controller.providers.machines import InfraMachines
from controller.providers.reconciler import (
    DEFAULT_MAX_REPLICAS,
    InfraPoolReconciler,
    PoolAdapter,
)
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import InformerEvent, Namespaces
from controller.runtime.manager import Manager
from controller.runtime.store import CONTROLLER_OWNER_INDEX, controller_owner_keys


def setup_infrastructure_controller(
    *,
    manager: Manager,
    namespace: Namespaces,
    adapter: PoolAdapter,
    provider: InstanceGroupProvider,
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    busy_poll: float = 2.0,
    steady_poll: float = 60.0,
    watch_filter: str | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> Controller:
    # --watch-filter (a label selector) applies to the infra pools we own and to the
    # MachinePools that drive them (the same pool informer the core half uses).
    infra = manager.informer(adapter.kind, namespace=namespace, label_selector=watch_filter)
    pools = manager.informer(MACHINE_POOL, namespace=namespace, label_selector=watch_filter)
    clusters = manager.informer(CLUSTER, namespace=namespace)
    machines: InfraMachines | None = None
    machine_informer = None
    if adapter.machine_kind is not None:
        machine_informer = manager.informer(
            adapter.machine_kind, namespace=namespace, label_selector=watch_filter
        )
        machine_informer.store.ensure_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
        core_machines = manager.informer(MACHINE, namespace=namespace, label_selector=watch_filter)
        machines = InfraMachines(
            kube=manager.kube,
            kind=adapter.machine_kind,
            informer=machine_informer,
            machines=core_machines,
        )
    reconciler = InfraPoolReconciler(
        kube=manager.kube,
        adapter=adapter,
        provider=provider,
        infra=infra,
        pools=pools,
        clusters=clusters,
        recorder=recorder,
        machines=machines,
        busy_poll=busy_poll,
        steady_poll=steady_poll,
        max_replicas=max_replicas,
    )
    controller = Controller(
        name=adapter.kind.kind.lower(),
        reconciler=reconciler,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
        urgency=manager.urgency,
    )

    def from_pool(event: InformerEvent) -> list[str]:
        spec = (event.obj.get("spec") or {}).get("template", {}).get("spec", {})
        ref = spec.get("infrastructureRef") or {}
        if ref.get("kind") != adapter.kind.kind or ref.get("apiGroup") != adapter.kind.group:
            return []
        return [f"{event.obj['metadata']['namespace']}/{ref['name']}"]

    controller.watch(infra, lambda e: [e.key])
    controller.watch(pools, from_pool)
    if machines is not None and machine_informer is not None:
        # An infra machine (deleted by a Machine's deletion path) and a Machine (deleted,
        # marked for deletion, turning Ready during a rollout) both concern the infra pool
        # that owns the infra machine of the same name.
        infra_machines = machine_informer

        def from_machine(event: InformerEvent) -> list[str]:
            meta = event.obj.get("metadata", {})
            same = infra_machines.store.get(f"{meta.get('namespace')}/{meta.get('name')}")
            return controller_owner_keys(same) if same is not None else []

        controller.watch(machine_informer, lambda e: controller_owner_keys(e.obj))
        controller.watch(machines.machines, from_machine)
    manager.add_controller(controller)
    return controller
