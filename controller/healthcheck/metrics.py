"""Prometheus metrics of the health checks, one set per registry.

- ``machinehealthcheck_machines{namespace,name,health}``: the Machines a health check selects,
  by ``healthy`` / ``unhealthy``;
- ``machinehealthcheck_short_circuited{namespace,name}``: 1 while too many Machines are
  unhealthy for remediation, else 0;
- ``machinehealthcheck_remediations_total{namespace,name}``: Machines marked for remediation
  (``OwnerRemediated=False``), counted once per Machine.

Invariants: a health check's series are removed when it is deleted (:meth:`forget`), so
cardinality follows the live health checks.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.runtime.metrics import per_registry

__all__ = ["HealthCheckMetrics", "healthcheck_metrics"]


class HealthCheckMetrics:
    """The health check series on one registry."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.machines = Gauge(
            "machinehealthcheck_machines",
            "Machines selected by a MachineHealthCheck, by health",
            ["namespace", "name", "health"],
            registry=registry,
        )
        self.short_circuited = Gauge(
            "machinehealthcheck_short_circuited",
            "1 while a MachineHealthCheck withholds remediation (too many unhealthy Machines)",
            ["namespace", "name"],
            registry=registry,
        )
        self.remediations = Counter(
            "machinehealthcheck_remediations_total",
            "Machines a MachineHealthCheck marked for remediation by their owner",
            ["namespace", "name"],
            registry=registry,
        )

    def observe(
        self, *, namespace: str, name: str, healthy: int, unhealthy: int, short_circuited: bool
    ) -> None:
        self.machines.labels(namespace, name, "healthy").set(healthy)
        self.machines.labels(namespace, name, "unhealthy").set(unhealthy)
        self.short_circuited.labels(namespace, name).set(1 if short_circuited else 0)

    def remediated(self, *, namespace: str, name: str) -> None:
        self.remediations.labels(namespace, name).inc()

    def forget(self, *, namespace: str, name: str) -> None:
        for health in ("healthy", "unhealthy"):
            with contextlib.suppress(KeyError):
                self.machines.remove(namespace, name, health)
        for metric in (self.short_circuited, self.remediations):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, name)


@per_registry
def healthcheck_metrics(registry: CollectorRegistry) -> HealthCheckMetrics:
    """The one :class:`HealthCheckMetrics` of ``registry``."""
    return HealthCheckMetrics(registry=registry)
