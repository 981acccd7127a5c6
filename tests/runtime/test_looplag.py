"""The event loop lag monitor records how late a blocked loop ran what was due."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from controller.runtime.looplag import monitor_loop_lag
from controller.testing.waiting import until

LAG = "machinepool_event_loop_lag_seconds"


def _count(registry: CollectorRegistry, le: str = "+Inf") -> float:
    return registry.get_sample_value(f"{LAG}_bucket", {"le": le}) or 0.0


async def test_a_blocked_loop_shows_up_as_lag() -> None:
    registry = CollectorRegistry()
    task = asyncio.create_task(monitor_loop_lag(registry=registry, interval=0.05))
    try:
        await until(lambda: _count(registry) >= 1, timeout=10, interval=0.01, what="a sample")
        assert _count(registry, "1.0") == _count(registry)  # an idle loop is not (very) late
        before = _count(registry)
        time.sleep(0.4)  # noqa: ASYNC251 - the point: block the loop as a CPU-bound step would
        await until(lambda: _count(registry) > before, timeout=10, interval=0.01, what="a sample")
        late = _count(registry) - _count(registry, "0.25")
        assert late >= 1, "the blocked wake-up was not recorded as at least 0.25 s late"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_nonsense_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        await monitor_loop_lag(registry=CollectorRegistry(), interval=0)
