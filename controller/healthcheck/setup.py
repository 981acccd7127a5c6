"""Wire the MachineHealthCheck controller into a manager.

Event sources, each mapped to health check keys through an index of health checks by
``<namespace>/<spec.clusterName>``: health checks themselves; Machines (every health check of
the Machine's cluster: a label change may select or drop it); Clusters (pause, un-pause);
workload Nodes (every health check of that cluster). A burst of events for one health check
collapses into one queued key.

The workload cluster connections are shared with the MachinePool controller (one Node
informer per workload cluster), so this controller needs ``workloads`` from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_HEALTH_CHECK
from controller.healthcheck.metrics import healthcheck_metrics
from controller.healthcheck.reconciler import HealthCheckReconciler
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import InformerEvent, Namespaces
from controller.runtime.manager import Manager
from controller.runtime.store import Obj
from controller.workload.clusters import ClusterKey, WorkloadClusters

__all__ = ["setup_healthcheck_controller"]

HEALTH_CHECK_CLUSTER_INDEX = "cluster"


def _health_check_cluster(obj: Obj) -> Iterable[str]:
    name = (obj.get("spec") or {}).get("clusterName")
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [f"{namespace}/{name}"] if name else []


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def setup_healthcheck_controller(
    *,
    manager: Manager,
    namespace: Namespaces,
    workloads: WorkloadClusters,
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    watch_filter: str | None = None,
) -> Controller:
    # --watch-filter selects the health checks and Machines we own (the Machine informer is
    # the one the MachinePool and Machine controllers share); Clusters stay unfiltered.
    health_checks = manager.informer(
        MACHINE_HEALTH_CHECK, namespace=namespace, label_selector=watch_filter
    )
    health_checks.store.ensure_index(name=HEALTH_CHECK_CLUSTER_INDEX, func=_health_check_cluster)
    machines = manager.informer(MACHINE, namespace=namespace, label_selector=watch_filter)
    clusters = manager.informer(CLUSTER, namespace=namespace)
    reconciler = HealthCheckReconciler(
        kube=manager.kube,
        health_checks=health_checks,
        machines=machines,
        clusters=clusters,
        workloads=workloads,
        metrics=healthcheck_metrics(registry),
        recorder=recorder,
        now=now,
    )
    controller = Controller(
        name="machinehealthcheck",
        reconciler=reconciler,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
        urgency=manager.urgency,
    )

    def of_cluster(cluster_key: str) -> list[str]:
        return [
            _key(h)
            for h in health_checks.store.by_index(
                name=HEALTH_CHECK_CLUSTER_INDEX, value=cluster_key
            )
        ]

    def machine_to_checks(event: InformerEvent) -> list[str]:
        keys: set[str] = set()
        for obj in (event.obj, event.old):
            for cluster_key in _health_check_cluster(obj or {}):
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
