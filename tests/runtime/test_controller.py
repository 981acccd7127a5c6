"""Controller semantics in virtual time (looptime): results, backoff, terminal errors,
timeouts, bugs turned into counted errors, one worker per key, and a bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import structlog
from prometheus_client import CollectorRegistry

from controller.runtime.controller import (
    Controller,
    ReconcileError,
    Result,
    TerminalError,
)
from controller.runtime.kube import ApiError

# A loop of their own: looptime patches the loop it runs on, and the session loop is
# shared with the real control plane.
pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]

Behaviour = Callable[[str, int], Awaitable[Result]]


class Scripted:
    """A reconciler whose behaviour per call is given by the test; records call times."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[tuple[str, float]] = []
        self.in_flight: set[str] = set()
        self.overlaps = 0
        self.called = asyncio.Condition()

    async def reconcile(self, key: str) -> Result:
        if key in self.in_flight:
            self.overlaps += 1
        self.in_flight.add(key)
        self.calls.append((key, asyncio.get_running_loop().time()))
        async with self.called:
            self.called.notify_all()
        try:
            return await self.behaviour(key, len(self.calls))
        finally:
            self.in_flight.discard(key)

    async def wait_calls(self, n: int) -> None:
        async with self.called:
            await self.called.wait_for(lambda: len(self.calls) >= n)


def _value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    value = registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def running(
    behaviour: Behaviour, **options: float
) -> AsyncIterator[tuple[Controller, Scripted, CollectorRegistry]]:
    registry = CollectorRegistry()
    reconciler = Scripted(behaviour)
    ctrl = Controller(
        name="test",
        reconciler=reconciler,
        registry=registry,
        concurrency=int(options.pop("concurrency", 2)),
        reconcile_timeout=options.pop("reconcile_timeout", 60.0),
    )
    task = asyncio.create_task(ctrl.run())
    try:
        yield ctrl, reconciler, registry
    finally:
        await ctrl.stop(grace=1)
        await task


async def test_success_is_counted_and_not_requeued() -> None:
    async def ok(key: str, n: int) -> Result:
        return Result()

    async with running(ok) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(1)
        await asyncio.sleep(3600)
        assert [k for k, _ in rec.calls] == ["a"]
    assert (
        _value(reg, "controller_runtime_reconcile_total", controller="test", result="success") == 1
    )


async def test_requeue_after_comes_back_after_the_delay() -> None:
    async def later(key: str, n: int) -> Result:
        return Result(requeue_after=30.0) if n == 1 else Result()

    async with running(later) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(2)
        (_, t1), (_, t2) = rec.calls
        assert t2 - t1 == pytest.approx(30.0, abs=0.1)
    assert (
        _value(reg, "controller_runtime_reconcile_total", controller="test", result="requeue_after")
        == 1
    )


async def test_errors_back_off_exponentially_then_success_resets() -> None:
    async def flaky(key: str, n: int) -> Result:
        if n <= 4:
            raise ReconcileError("provider said no")
        return Result()

    async with running(flaky) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(5)
        times = [t for _, t in rec.calls]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps == pytest.approx([0.005, 0.01, 0.02, 0.04], abs=0.002)
        assert ctrl.queue.num_requeues("a") == 0
    assert _value(reg, "controller_runtime_reconcile_errors_total", controller="test") == 4
    assert _value(reg, "workqueue_retries_total", name="test", controller="test") == 4


async def test_terminal_error_is_not_retried() -> None:
    async def broken(key: str, n: int) -> Result:
        raise TerminalError("spec can never work")

    async with running(broken) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(1)
        await asyncio.sleep(3600)
        assert len(rec.calls) == 1
    assert _value(reg, "controller_runtime_terminal_reconcile_errors_total", controller="test") == 1


async def test_a_bug_is_counted_as_a_panic_and_the_worker_survives() -> None:
    async def buggy(key: str, n: int) -> Result:
        if key == "bad":
            raise KeyError("spec")
        return Result()

    async with running(buggy, concurrency=1) as (ctrl, rec, reg):
        ctrl.enqueue("bad")
        ctrl.enqueue("good")
        await rec.wait_calls(3)
        assert "good" in [k for k, _ in rec.calls]
    assert _value(reg, "controller_runtime_reconcile_panics_total", controller="test") >= 1


async def test_a_hung_reconcile_is_timed_out_and_retried() -> None:
    async def hangs(key: str, n: int) -> Result:
        if n == 1:
            await asyncio.Event().wait()
        return Result()

    async with running(hangs, reconcile_timeout=10.0, concurrency=1) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(2)
        (_, t1), (_, t2) = rec.calls
        assert t2 - t1 == pytest.approx(10.0, abs=0.1)
    assert _value(reg, "controller_runtime_reconcile_timeouts_total", controller="test") == 1


async def test_a_key_is_never_reconciled_by_two_workers_at_once() -> None:
    async def slow(key: str, n: int) -> Result:
        await asyncio.sleep(1)
        return Result()

    async with running(slow, concurrency=10) as (ctrl, rec, _):
        for _ in range(5):
            for key in ("a", "b", "c"):
                ctrl.enqueue(key)
            await asyncio.sleep(0.3)
        await asyncio.sleep(10)
        assert rec.overlaps == 0
        # Re-adds while processing were remembered: each key ran again after its first run.
        assert all(sum(1 for k, _ in rec.calls if k == key) >= 2 for key in ("a", "b", "c"))


async def test_stop_lets_in_flight_work_finish_within_the_grace_period() -> None:
    finished: list[str] = []

    async def takes(key: str, n: int) -> Result:
        await asyncio.sleep(2 if key == "quick" else 1000)
        finished.append(key)
        return Result()

    registry = CollectorRegistry()
    rec = Scripted(takes)
    ctrl = Controller(name="test", reconciler=rec, registry=registry, concurrency=2)
    task = asyncio.create_task(ctrl.run())
    ctrl.enqueue("quick")
    ctrl.enqueue("stuck")
    await rec.wait_calls(2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    drained = await ctrl.stop(grace=5)
    await task
    assert not drained
    assert finished == ["quick"]
    assert loop.time() - started == pytest.approx(5, abs=0.1)


async def test_metric_names_and_labels_match_controller_runtime() -> None:
    async def ok(key: str, n: int) -> Result:
        return Result()

    async with running(ok) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(1)
        await asyncio.sleep(1)
        assert _value(reg, "controller_runtime_max_concurrent_reconciles", controller="test") == 2
        assert _value(reg, "controller_runtime_active_workers", controller="test") == 0
        assert (
            _value(reg, "controller_runtime_reconcile_time_seconds_count", controller="test") == 1
        )
        assert _value(reg, "workqueue_adds_total", name="test", controller="test") == 1


async def test_every_log_line_of_a_reconcile_carries_the_key_and_a_reconcile_id() -> None:
    log = structlog.get_logger("test")

    async def chatty(key: str, n: int) -> Result:
        log.info("inside the reconcile")
        raise ReconcileError("and it failed")

    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        async with running(chatty, concurrency=1) as (ctrl, rec, _):
            ctrl.enqueue("ns/pool-1")
            await rec.wait_calls(2)
    inside = [e for e in logs if e["event"] == "inside the reconcile"]
    failed = [e for e in logs if e["event"] == "reconcile failed"]
    assert inside
    assert failed
    for entry in inside + failed:
        assert entry["key"] == "ns/pool-1"
        assert entry["controller"] == "test"
        assert len(entry["reconcile_id"]) == 12
    assert inside[0]["reconcile_id"] != inside[1]["reconcile_id"]


async def test_an_api_error_is_an_explained_failure_not_a_panic() -> None:
    async def conflicts(key: str, n: int) -> Result:
        if n == 1:
            raise ApiError(status=409, reason="Conflict", message="the object has been modified")
        return Result()

    async with running(conflicts, concurrency=1) as (ctrl, rec, reg):
        ctrl.enqueue("a")
        await rec.wait_calls(2)
    assert _value(reg, "controller_runtime_reconcile_errors_total", controller="test") == 1
    assert _value(reg, "controller_runtime_reconcile_panics_total", controller="test") == 0
