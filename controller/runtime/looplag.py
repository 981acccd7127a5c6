"""Event loop lag: how late the process's one event loop runs what is due.

Everything here shares one asyncio loop: informers parsing watch events, reconciles, the
probe server, and the leader's Lease renewals. When the loop is saturated (a cold start over
a large fleet, a huge LIST being parsed), everything due waits its turn, renewals included;
a renewal that waits past ``--leader-elect-renew-deadline`` ends the leadership. This
module makes that visible: a task asks to wake every ``interval`` seconds and records how
late it woke in ``machinepool_event_loop_lag_seconds`` (a histogram), so an operator can
tell a starved loop from a slow API server.

Invariant: one monitor per manager; it only reads the clock and sleeps. Failure: none to
handle; it runs until cancelled with the manager.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from controller.runtime.metrics import per_registry

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@per_registry
def lag_histogram(registry: CollectorRegistry) -> Histogram:
    """The one ``machinepool_event_loop_lag_seconds`` of ``registry``."""
    return Histogram(
        "machinepool_event_loop_lag_seconds",
        "How late the event loop woke a task that asked to run at a given time",
        buckets=LAG_BUCKETS,
        registry=registry,
    )


async def monitor_loop_lag(
    *,
    registry: CollectorRegistry,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Observe the loop's lag every ``interval`` seconds until cancelled."""
    if interval <= 0:
        raise ValueError(f"loop lag interval must be positive, got {interval}")
    histogram = lag_histogram(registry)
    while True:
        due = clock() + interval
        await asyncio.sleep(interval)
        histogram.observe(max(clock() - due, 0.0))
