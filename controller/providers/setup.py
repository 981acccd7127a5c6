"""Wire an infrastructure-pool reconciler (one per infra kind) into a manager.

Event sources mapped to infra pool keys: the infra pool itself, and its MachinePool (a
change of ``spec.replicas``, of the pause annotation, or the adoption that makes the pool
its owner) through ``spec.template.spec.infrastructureRef``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE_POOL
from controller.providers.base import InstanceGroupProvider
from controller.providers.reconciler import InfraPoolReconciler, PoolAdapter
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import InformerEvent
from controller.runtime.manager import Manager


def setup_infrastructure_controller(
    *,
    manager: Manager,
    namespace: str | None,
    adapter: PoolAdapter,
    provider: InstanceGroupProvider,
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    busy_poll: float = 2.0,
    steady_poll: float = 60.0,
    watch_filter: str | None = None,
) -> Controller:
    # --watch-filter (a label selector) applies to the infra pools we own and to the
    # MachinePools that drive them (the same pool informer the core half uses).
    infra = manager.informer(adapter.kind, namespace=namespace, label_selector=watch_filter)
    pools = manager.informer(MACHINE_POOL, namespace=namespace, label_selector=watch_filter)
    clusters = manager.informer(CLUSTER, namespace=namespace)
    reconciler = InfraPoolReconciler(
        kube=manager.kube,
        adapter=adapter,
        provider=provider,
        infra=infra,
        pools=pools,
        clusters=clusters,
        recorder=recorder,
        busy_poll=busy_poll,
        steady_poll=steady_poll,
    )
    controller = Controller(
        name=adapter.kind.kind.lower(),
        reconciler=reconciler,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
    )

    def from_pool(event: InformerEvent) -> list[str]:
        spec = (event.obj.get("spec") or {}).get("template", {}).get("spec", {})
        ref = spec.get("infrastructureRef") or {}
        if ref.get("kind") != adapter.kind.kind or ref.get("apiGroup") != adapter.kind.group:
            return []
        return [f"{event.obj['metadata']['namespace']}/{ref['name']}"]

    controller.watch(infra, lambda e: [e.key])
    controller.watch(pools, from_pool)
    manager.add_controller(controller)
    return controller
