"""Wire the MachineHealthCheck controller into a manager.

Event sources, each mapped to health check keys through an index of health checks by
``<namespace>/<spec.clusterName>``: health checks themselves; Machines (every health check of
the Machine's cluster: a label change may select or drop it); Clusters (pause, un-pause);
workload Nodes (every health check of that cluster). A burst of events for one health check
collapses into one queued key.

The workload cluster connections (one Node informer per workload cluster) are ``app.py``'s,
shared with the MachinePool and Machine controllers; this controller only listens to them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from controller.healthcheck.metrics import healthcheck_metrics
from controller.healthcheck.reconciler import HealthCheckReconciler
from controller.runtime.controller import Controller
from controller.runtime.informer import InformerEvent
from controller.shared import CLUSTER_INDEX, ControllerOptions, by_cluster
from controller.shared import object_key as _key
from controller.workload.clusters import ClusterKey, WorkloadClusters

__all__ = ["setup_healthcheck_controller"]


def setup_healthcheck_controller(
    *,
    options: ControllerOptions,
    workloads: WorkloadClusters,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Controller:
    """The MachineHealthCheck controller, on the connections of ``workloads`` (owned by the
    caller); ``now`` is its clock."""
    manager = options.manager
    registry = options.registry
    shared = options.informers
    # --watch-filter selects the health checks and Machines we own (the Machine informer is
    # the one the MachinePool and Machine controllers share); Clusters stay unfiltered.
    health_checks = shared.health_checks
    machines = shared.machines
    clusters = shared.clusters
    reconciler = HealthCheckReconciler(
        kube=manager.kube,
        health_checks=health_checks,
        machines=machines,
        clusters=clusters,
        workloads=workloads,
        metrics=healthcheck_metrics(registry),
        recorder=options.recorder,
        now=now,
    )
    controller = Controller(
        name="machinehealthcheck",
        reconciler=reconciler,
        concurrency=options.concurrency,
        reconcile_timeout=options.reconcile_timeout,
        registry=registry,
        urgency=manager.urgency,
    )

    def of_cluster(cluster_key: str) -> list[str]:
        return [
            _key(h) for h in health_checks.store.by_index(name=CLUSTER_INDEX, value=cluster_key)
        ]

    def machine_to_checks(event: InformerEvent) -> list[str]:
        keys: set[str] = set()
        for obj in (event.obj, event.old):
            for cluster_key in by_cluster(obj or {}):
                keys.update(of_cluster(cluster_key))
        return sorted(keys)

    controller.watch(health_checks, lambda e: [e.key])
    controller.watch(machines, machine_to_checks)
    controller.watch(clusters, lambda e: of_cluster(e.key))

    def on_node(cluster: ClusterKey, _: InformerEvent) -> None:
        for key in of_cluster(str(cluster)):
            controller.enqueue(key)

    workloads.add_node_handler(on_node)
    manager.add_controller(controller)
    return controller
