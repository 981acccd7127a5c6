"""The generic work queue: deduplication, delays, rate limits, priorities and metrics.

Modelled on client-go's ``util/workqueue`` and controller-runtime's priority queue, for asyncio,
one mechanism a module:

- :mod:`.queue` -- :class:`WorkQueue`: dirty/processing sets, FIFO, ``get``/``done``, shutdown;
- :mod:`.delaying` -- :class:`DelayingQueue`: ``add_after`` (a heap and one timer task);
- :mod:`.rate_limiters` -- per-key exponential backoff, token bucket, combinators;
- :mod:`.rate_limiting` -- :class:`RateLimitingQueue`: ``add_rate_limited``/``forget``;
- :mod:`.priority` -- :class:`PriorityQueue`: fresh changes ahead of the backlog;
- :mod:`.metrics` -- the ``workqueue_*`` Prometheus series;
- :mod:`.clock` -- the time source, and a fake one for tests.

A worker's loop::

    while True:
        try:
            key = await queue.get()
        except QueueShutDown:
            return
        try:
            await reconcile(key)
        except Exception:
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        finally:
            queue.done(key)

The queue knows nothing about what the keys mean.
"""

from controller.runtime.workqueue.clock import Clock, FakeClock, LoopClock
from controller.runtime.workqueue.delaying import DelayingQueue
from controller.runtime.workqueue.metrics import (
    NOOP_METRICS,
    MetricsProvider,
    NoopMetricsProvider,
    PrometheusMetricsProvider,
    QueueMetrics,
    prometheus_metrics,
)
from controller.runtime.workqueue.priority import HIGH_PRIORITY, LOW_PRIORITY, PriorityQueue
from controller.runtime.workqueue.queue import QueueShutDown, QueueStatistics, WorkQueue
from controller.runtime.workqueue.rate_limiters import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
    default_item_based_rate_limiter,
)
from controller.runtime.workqueue.rate_limiting import RateLimitingQueue

__all__ = [
    "HIGH_PRIORITY",
    "LOW_PRIORITY",
    "NOOP_METRICS",
    "BucketRateLimiter",
    "Clock",
    "DelayingQueue",
    "FakeClock",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "LoopClock",
    "MaxOfRateLimiter",
    "MetricsProvider",
    "NoopMetricsProvider",
    "PriorityQueue",
    "PrometheusMetricsProvider",
    "QueueMetrics",
    "QueueShutDown",
    "QueueStatistics",
    "RateLimiter",
    "RateLimitingQueue",
    "WithMaxWaitRateLimiter",
    "WorkQueue",
    "default_controller_rate_limiter",
    "default_item_based_rate_limiter",
    "prometheus_metrics",
]
