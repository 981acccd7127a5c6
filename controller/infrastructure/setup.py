"""Wire an infrastructure-pool reconciler (one per infra kind this process reconciles) into
a manager.

Event sources mapped to infra pool keys: the infra pool itself, and its MachinePool (a
change of ``spec.replicas``, of the pause annotation, or the adoption that makes the pool
its owner) through ``spec.template.spec.infrastructureRef``; when the adapter has a machine
kind, its infra machines (to their owning pool) and the Machines of the same names; when the
adapter reads bootstrap data (``watches_bootstrap_data``: AWS), a bootstrap data Secret
(from the shared cache of Secrets labelled ``cluster.x-k8s.io/cluster-name``) re-queues the
pools whose MachinePool names it, so a pool waiting for its user data starts as soon as it
exists, and a changed Secret (a rotated bootstrap token) becomes a new launch template
version.

The kind's adapter and provider come from the one registry of kinds ``app.py`` builds
(:class:`~controller.providers.registry.CloudKind`), with the cloud's poll intervals.
"""

from __future__ import annotations

from controller.infrastructure.infra_machines import InfraMachines
from controller.infrastructure.reconciler import DEFAULT_MAX_REPLICAS, InfraPoolReconciler
from controller.providers.registry import CloudKind
from controller.runtime.controller import Controller
from controller.runtime.informer import InformerEvent
from controller.runtime.store import Obj, controller_owner_keys
from controller.shared import BOOTSTRAP_SECRET_INDEX, ControllerOptions

__all__ = ["setup_infrastructure_controller"]


def setup_infrastructure_controller(
    *, options: ControllerOptions, cloud: CloudKind, max_replicas: int = DEFAULT_MAX_REPLICAS
) -> Controller:
    """The infrastructure controller of ``cloud`` (which must have a provider);
    ``max_replicas`` is ``--max-replicas-per-pool``."""
    adapter, provider = cloud.adapter, cloud.provider
    if provider is None:
        raise ValueError(f"{adapter.kind.kind} has no provider in this process")
    manager = options.manager
    shared = options.informers
    # --watch-filter (a label selector) applies to the infra pools we own and to the
    # MachinePools that drive them (the same pool informer the core half uses).
    infra = manager.informer(
        adapter.kind, namespace=options.namespace, label_selector=options.watch_filter
    )
    pools = shared.pools
    infra_machines: InfraMachines | None = None
    if adapter.machine_kind is not None:
        infra_machines = InfraMachines(
            kube=manager.kube,
            kind=adapter.machine_kind,
            informer=shared.infra_machines(adapter.machine_kind),
            machines=shared.machines,
        )
    reconciler = InfraPoolReconciler(
        kube=manager.kube,
        adapter=adapter,
        provider=provider,
        infra=infra,
        pools=pools,
        clusters=shared.clusters,
        recorder=options.recorder,
        infra_machines=infra_machines,
        busy_poll=cloud.busy_poll,
        steady_poll=cloud.steady_poll,
        max_replicas=max_replicas,
    )
    controller = Controller(
        name=adapter.kind.kind.lower(),
        reconciler=reconciler,
        concurrency=options.concurrency,
        reconcile_timeout=options.reconcile_timeout,
        registry=options.registry,
        urgency=manager.urgency,
    )

    def ours(pool: Obj) -> list[str]:
        spec = (pool.get("spec") or {}).get("template", {}).get("spec", {})
        ref = spec.get("infrastructureRef") or {}
        if ref.get("kind") != adapter.kind.kind or ref.get("apiGroup") != adapter.kind.group:
            return []
        return [f"{pool['metadata']['namespace']}/{ref['name']}"]

    controller.watch(infra, lambda e: [e.key])
    controller.watch(pools, lambda e: ours(e.obj))
    if infra_machines is not None:
        # An infra machine (deleted by a Machine's deletion path) and a Machine (deleted,
        # marked for deletion, turning Ready during a rollout) both concern the infra pool
        # that owns the infra machine of the same name.
        informer = infra_machines.informer

        def from_machine(event: InformerEvent) -> list[str]:
            meta = event.obj.get("metadata", {})
            same = informer.store.get(f"{meta.get('namespace')}/{meta.get('name')}")
            return controller_owner_keys(same) if same is not None else []

        controller.watch(informer, lambda e: controller_owner_keys(e.obj))
        controller.watch(infra_machines.machines, from_machine)
    if adapter.watches_bootstrap_data:

        def from_secret(event: InformerEvent) -> list[str]:
            keys: list[str] = []
            for pool in pools.store.by_index(name=BOOTSTRAP_SECRET_INDEX, value=event.key):
                keys.extend(ours(pool))
            return keys

        controller.watch(shared.secrets, from_secret)
    manager.add_controller(controller)
    return controller
