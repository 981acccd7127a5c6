"""Work queue metrics under the names controller-runtime and client-go export.

The series, so that existing controller-runtime dashboards and alerts work unchanged:

=================================================  =========  ================================
``workqueue_depth``                                gauge      ``name``, ``controller``,
                                                              ``priority``
``workqueue_adds_total``                           counter    ``name``, ``controller``
``workqueue_queue_duration_seconds``               histogram  ``name``, ``controller``
``workqueue_work_duration_seconds``                histogram  ``name``, ``controller``
``workqueue_unfinished_work_seconds``              gauge      ``name``, ``controller``
``workqueue_longest_running_processor_seconds``    gauge      ``name``, ``controller``
``workqueue_retries_total``                        counter    ``name``, ``controller``
=================================================  =========  ================================

``name`` and ``controller`` both carry the queue's name (as controller-runtime does). Both
histograms use the buckets 1e-8 s .. 1e3 s (twelve powers of ten).

What moves when:

- ``adds`` and ``depth`` go up for an add that is not deduplicated (the key was not already
  waiting to be processed), including one deferred because the key is being processed;
  ``depth`` goes down when ``get`` hands the key out. So depth counts keys that need
  processing, whether or not they can be handed out yet.
- ``queue_duration`` is the time from the first such add to the ``get``; ``work_duration`` the
  time from ``get`` to ``done``.
- ``retries`` counts every ``add_after`` call (rate-limited requeues included), as client-go.
- ``priority`` is ``""`` for queues without priorities; a priority queue labels depth by the
  key's priority, moving it between labels when a key's priority is raised. After 25 distinct
  priorities in one queue further ones share the label ``exceeded_cardinality_limit``.
- ``unfinished_work_seconds`` (sum of the ages of keys being processed) and
  ``longest_running_processor_seconds`` (the oldest of them) are computed when scraped rather
  than by a 500 ms ticker, so they are exact and cost nothing between scrapes. Queues sharing
  a name add up (sum, and max). A queue that has been garbage-collected stops reporting.

One :class:`PrometheusMetricsProvider` exists per registry (:func:`prometheus_metrics`
returns it, registering it as a collector on first use), so any number of queues, in one
process or across tests, can be created against the same registry; give them distinct names.
Queues sharing a name share their series, and a name's counters and histograms live as long
as the provider (they never go backwards when a queue is dropped).

The values are plain Python numbers updated by the queue on the event loop, without locks,
and turned into metric families when scraped: recording costs a few attribute updates per
key rather than several lock round-trips. A scrape from another thread reads them as they
are; it may see a histogram's count and sum one observation apart, never anything that
raises.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Hashable, Iterable
from typing import Final, Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from controller.runtime.workqueue.clock import Clock

__all__ = [
    "ADDS",
    "DEPTH",
    "LONGEST_RUNNING_PROCESSOR",
    "NOOP_METRICS",
    "QUEUE_DURATION",
    "RETRIES",
    "UNFINISHED_WORK",
    "WORK_DURATION",
    "MetricsProvider",
    "NoopMetricsProvider",
    "PrometheusMetricsProvider",
    "QueueMetrics",
    "prometheus_metrics",
]

DEPTH: Final = "workqueue_depth"
ADDS: Final = "workqueue_adds_total"
QUEUE_DURATION: Final = "workqueue_queue_duration_seconds"
WORK_DURATION: Final = "workqueue_work_duration_seconds"
UNFINISHED_WORK: Final = "workqueue_unfinished_work_seconds"
LONGEST_RUNNING_PROCESSOR: Final = "workqueue_longest_running_processor_seconds"
RETRIES: Final = "workqueue_retries_total"

_LABELS: Final = ("name", "controller")
_DEPTH_LABELS: Final = ("name", "controller", "priority")
_BOUNDS: Final = tuple(10.0**exponent for exponent in range(-8, 4))
_BOUND_LABELS: Final = (*(str(bound) for bound in _BOUNDS), "+Inf")  # as Go formats them
_MAX_PRIORITY_LABELS: Final = 25
_PRIORITY_OVERFLOW: Final = "exceeded_cardinality_limit"

_HELP: Final = {
    DEPTH: "Current depth of workqueue",
    ADDS: "Total number of adds handled by workqueue",
    QUEUE_DURATION: "How long in seconds an item stays in workqueue before being requested",
    WORK_DURATION: "How long in seconds processing an item from workqueue takes.",
    UNFINISHED_WORK: (
        "How many seconds of work has been done that is in progress and has not been "
        "observed by work_duration. Large values indicate stuck workers."
    ),
    LONGEST_RUNNING_PROCESSOR: (
        "How many seconds the longest running worker of the workqueue has been running."
    ),
    RETRIES: "Total number of retries handled by workqueue",
}


class QueueMetrics(Protocol):
    """The events one queue reports; ``priority`` is None for queues without priorities."""

    def added(self, key: Hashable, priority: int | None) -> None:
        """A key started needing processing (not a deduplicated add)."""
        ...

    def got(self, key: Hashable, priority: int | None) -> None:
        """A key was handed to a worker."""
        ...

    def reprioritised(self, old: int, new: int) -> None:
        """A key waiting for a worker had its priority raised."""
        ...

    def done(self, key: Hashable) -> None:
        """A worker finished with a key."""
        ...

    def retried(self) -> None:
        """``add_after`` was called."""
        ...


class MetricsProvider(Protocol):
    """Makes the :class:`QueueMetrics` of one named queue.

    ``prioritised`` says the queue reports priorities (its depth is labelled by them).
    """

    def queue_metrics(self, *, name: str, clock: Clock, prioritised: bool) -> QueueMetrics: ...


class _NoopQueueMetrics:
    __slots__ = ()

    def added(self, key: Hashable, priority: int | None) -> None:
        pass

    def got(self, key: Hashable, priority: int | None) -> None:
        pass

    def reprioritised(self, old: int, new: int) -> None:
        pass

    def done(self, key: Hashable) -> None:
        pass

    def retried(self) -> None:
        pass


class NoopMetricsProvider:
    """Records nothing: for unnamed queues and benchmarks."""

    __slots__ = ()

    def queue_metrics(self, *, name: str, clock: Clock, prioritised: bool) -> QueueMetrics:
        return _NoopQueueMetrics()


NOOP_METRICS: Final = NoopMetricsProvider()


class _Histogram:
    """Observations counted per bucket (not cumulative), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_BOUNDS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        buckets = []
        for label, count in zip(_BOUND_LABELS, list(self.counts), strict=True):
            running += count
            buckets.append((label, float(running)))
        return buckets


class _Series:
    """The series of one queue name, shared by the queues of that name."""

    __slots__ = ("adds", "depth", "priority_labels", "queue_duration", "retries", "work_duration")

    def __init__(self) -> None:
        self.adds = 0
        self.retries = 0
        self.depth: dict[str, int] = {}
        self.priority_labels: dict[int, str] = {}
        self.queue_duration = _Histogram()
        self.work_duration = _Histogram()

    def priority_label(self, priority: int | None) -> str:
        if priority is None:
            return ""
        label = self.priority_labels.get(priority)
        if label is None:
            if len(self.priority_labels) < _MAX_PRIORITY_LABELS:
                label = str(priority)
                self.priority_labels[priority] = label
            else:
                label = _PRIORITY_OVERFLOW
        return label


class _PrometheusQueueMetrics:
    """One queue's timing bookkeeping, recording into its name's series."""

    __slots__ = ("__weakref__", "_added_at", "_clock", "_series", "_started_at", "name")

    def __init__(self, *, series: _Series, name: str, clock: Clock) -> None:
        self.name = name
        self._series = series
        self._clock = clock
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}

    def added(self, key: Hashable, priority: int | None) -> None:
        series = self._series
        series.adds += 1
        label = "" if priority is None else series.priority_label(priority)
        series.depth[label] = series.depth.get(label, 0) + 1
        if key not in self._added_at:
            self._added_at[key] = self._clock.now()

    def got(self, key: Hashable, priority: int | None) -> None:
        series = self._series
        label = "" if priority is None else series.priority_label(priority)
        series.depth[label] -= 1
        now = self._clock.now()
        self._started_at[key] = now
        added_at = self._added_at.pop(key, None)
        if added_at is not None:
            series.queue_duration.observe(now - added_at)

    def reprioritised(self, old: int, new: int) -> None:
        series = self._series
        old_label = series.priority_label(old)
        new_label = series.priority_label(new)
        series.depth[old_label] -= 1
        series.depth[new_label] = series.depth.get(new_label, 0) + 1

    def done(self, key: Hashable) -> None:
        started_at = self._started_at.pop(key, None)
        if started_at is not None:
            self._series.work_duration.observe(self._clock.now() - started_at)

    def retried(self) -> None:
        self._series.retries += 1

    def in_flight(self) -> tuple[float, float]:
        """(sum, max) of the ages of the keys being processed, in seconds."""
        now = self._clock.now()
        ages = [now - started for started in tuple(self._started_at.values())]
        return sum(ages), max(ages, default=0.0)


class PrometheusMetricsProvider:
    """The workqueue series of every queue recording into one registry (a collector).

    Use :func:`prometheus_metrics` rather than the constructor: registering two providers on
    one registry is an error (duplicate series names).
    """

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._series: dict[str, _Series] = {}
        self._queues: weakref.WeakSet[_PrometheusQueueMetrics] = weakref.WeakSet()
        registry.register(self)

    def queue_metrics(self, *, name: str, clock: Clock, prioritised: bool) -> QueueMetrics:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _Series()
        series.depth.setdefault(series.priority_label(0 if prioritised else None), 0)
        metrics = _PrometheusQueueMetrics(series=series, name=name, clock=clock)
        self._queues.add(metrics)
        return metrics

    # -- the collector protocol --------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        depth, adds, queue_duration, work_duration, unfinished, longest, retries = self._families()
        for name, series in sorted(self._series.items()):
            labels = (name, name)
            for priority, value in sorted(series.depth.items()):
                depth.add_metric((*labels, priority), float(value))
            adds.add_metric(labels, float(series.adds))
            retries.add_metric(labels, float(series.retries))
            for family, histogram in (
                (queue_duration, series.queue_duration),
                (work_duration, series.work_duration),
            ):
                family.add_metric(labels, histogram.cumulative(), histogram.total)
        in_flight: dict[str, tuple[float, float]] = {}
        for queue in list(self._queues):
            total, oldest = queue.in_flight()
            previous_total, previous_oldest = in_flight.get(queue.name, (0.0, 0.0))
            in_flight[queue.name] = (previous_total + total, max(previous_oldest, oldest))
        for name, (total, oldest) in sorted(in_flight.items()):
            unfinished.add_metric((name, name), total)
            longest.add_metric((name, name), oldest)
        return (depth, adds, queue_duration, work_duration, unfinished, longest, retries)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        CounterMetricFamily,
        HistogramMetricFamily,
        HistogramMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            GaugeMetricFamily(DEPTH, _HELP[DEPTH], labels=_DEPTH_LABELS),
            CounterMetricFamily(ADDS, _HELP[ADDS], labels=_LABELS),
            HistogramMetricFamily(QUEUE_DURATION, _HELP[QUEUE_DURATION], labels=_LABELS),
            HistogramMetricFamily(WORK_DURATION, _HELP[WORK_DURATION], labels=_LABELS),
            GaugeMetricFamily(UNFINISHED_WORK, _HELP[UNFINISHED_WORK], labels=_LABELS),
            GaugeMetricFamily(
                LONGEST_RUNNING_PROCESSOR, _HELP[LONGEST_RUNNING_PROCESSOR], labels=_LABELS
            ),
            CounterMetricFamily(RETRIES, _HELP[RETRIES], labels=_LABELS),
        )


_providers: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusMetricsProvider] = (
    weakref.WeakKeyDictionary()
)


def prometheus_metrics(registry: CollectorRegistry | None = None) -> PrometheusMetricsProvider:
    """The provider for ``registry`` (default: the global one), created on first use."""
    registry = REGISTRY if registry is None else registry
    provider = _providers.get(registry)
    if provider is None:
        provider = PrometheusMetricsProvider(registry=registry)
        _providers[registry] = provider
    return provider
