"""The priority queue: fresh changes overtake the backlog; FIFO within a priority."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.workqueue import (
    HIGH_PRIORITY,
    LOW_PRIORITY,
    FakeClock,
    ItemExponentialFailureRateLimiter,
    PriorityQueue,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[PriorityQueue[str]]:
    q: PriorityQueue[str] = PriorityQueue(
        clock=clock,
        rate_limiter=ItemExponentialFailureRateLimiter(base_delay=1, max_delay=1000),
    )
    yield q
    q.shutdown()
    await clock.settle()


async def drain(queue: PriorityQueue[str]) -> list[str]:
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys


async def test_an_edit_overtakes_a_cold_start_backlog(queue: PriorityQueue[str]) -> None:
    for index in range(1000):
        queue.add(f"listed-{index}", priority=LOW_PRIORITY)
    queue.add("edited")
    assert len(queue) == 1001
    assert await queue.get_with_priority() == ("edited", HIGH_PRIORITY)
    assert await queue.get_with_priority() == ("listed-0", LOW_PRIORITY)
    queue.done("edited")
    queue.done("listed-0")
    assert await drain(queue) == [f"listed-{index}" for index in range(1, 1000)]


async def test_fifo_within_a_priority(queue: PriorityQueue[str]) -> None:
    for key, priority in (("a", 0), ("x", -5), ("b", 0), ("y", -5), ("c", 0), ("top", 7)):
        queue.add(key, priority=priority)
    assert await drain(queue) == ["top", "a", "b", "c", "x", "y"]


async def test_re_adding_with_a_higher_priority_raises_a_queued_key(
    queue: PriorityQueue[str],
) -> None:
    for key in ("a", "b", "c"):
        queue.add(key, priority=LOW_PRIORITY)
    queue.add("d")
    queue.add("c", priority=HIGH_PRIORITY)
    assert len(queue) == 4, "raised, not duplicated"
    assert await drain(queue) == ["c", "d", "a", "b"], "c keeps its place among priority 0"


async def test_re_adding_with_a_lower_priority_changes_nothing(queue: PriorityQueue[str]) -> None:
    queue.add("a")
    queue.add("b", priority=LOW_PRIORITY)
    queue.add("a", priority=LOW_PRIORITY)
    assert await queue.get_with_priority() == ("a", HIGH_PRIORITY)
    queue.done("a")
    assert await drain(queue) == ["b"]


async def test_a_key_re_added_while_processing_keeps_the_highest_priority(
    queue: PriorityQueue[str],
) -> None:
    queue.add("a", priority=LOW_PRIORITY)
    assert await queue.get_with_priority() == ("a", LOW_PRIORITY)
    queue.add("a", priority=LOW_PRIORITY)
    queue.add("a", priority=HIGH_PRIORITY)
    queue.add("b")
    assert len(queue) == 1, "a is deferred until done"
    queue.done("a")
    # both priority 0; a started needing processing before b
    assert await queue.get_with_priority() == ("a", HIGH_PRIORITY)
    assert await queue.get_with_priority() == ("b", HIGH_PRIORITY)


async def test_a_delayed_key_arrives_with_its_priority(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("listed", priority=LOW_PRIORITY)
    queue.add_after("requeued", 5, priority=HIGH_PRIORITY)
    await clock.advance(5)
    assert await drain(queue) == ["requeued", "listed"]


async def test_a_waiting_key_keeps_the_earliest_time_and_the_highest_priority(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 5, priority=LOW_PRIORITY)
    queue.add_after("a", 10, priority=HIGH_PRIORITY)
    queue.add("b", priority=-1)
    await clock.advance(5)
    assert await queue.get_with_priority() == ("a", HIGH_PRIORITY)


async def test_no_delay_adds_at_once_with_the_priority(queue: PriorityQueue[str]) -> None:
    queue.add("b", priority=LOW_PRIORITY)
    queue.add_after("a", 0, priority=HIGH_PRIORITY)
    assert await drain(queue) == ["a", "b"]


async def test_rate_limited_requeue_with_priority(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    key, priority = await queue.get_with_priority()
    queue.add_rate_limited(key, priority=priority)
    queue.done(key)
    queue.add("backlog", priority=LOW_PRIORITY)
    await clock.advance(1)
    assert await drain(queue) == ["a", "backlog"]
    assert queue.num_requeues("a") == 1
    queue.forget("a")
    assert queue.num_requeues("a") == 0


async def test_a_woken_worker_takes_the_best_key_when_it_runs(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    getter = asyncio.create_task(queue.get())
    await clock.settle()
    queue.add("low", priority=LOW_PRIORITY)  # wakes the worker...
    queue.add("high")  # ...which picks when it runs, not when it was woken
    await clock.settle()
    assert getter.result() == "high"
    queue.done("high")
    assert await drain(queue) == ["low"]


@given(
    adds=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(min_value=-3, max_value=3)),
        max_size=40,
    )
)
def test_order_is_highest_priority_then_first_added(adds: list[tuple[str, int]]) -> None:
    """Against a model: each key once, at its highest priority, ties by first add."""
    best: dict[str, int] = {}
    first: dict[str, int] = {}
    for index, (key, priority) in enumerate(adds):
        best[key] = max(best.get(key, priority), priority)
        first.setdefault(key, index)
    expected = sorted(best, key=lambda key: (-best[key], first[key]))

    async def scenario() -> list[tuple[str, int]]:
        queue: PriorityQueue[str] = PriorityQueue(clock=FakeClock())
        for key, priority in adds:
            queue.add(key, priority=priority)
        out = []
        while len(queue):
            out.append(await queue.get_with_priority())
        return out

    with asyncio.Runner() as runner:
        got = runner.run(scenario())
    assert got == [(key, best[key]) for key in expected]
