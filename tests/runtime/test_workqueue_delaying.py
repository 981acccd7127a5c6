"""add_after: ordering by ready time, ready times only move earlier, one timer, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller.runtime.workqueue import DelayingQueue, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[DelayingQueue[str]]:
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    yield q
    q.shutdown()
    await clock.settle()


async def drain(queue: DelayingQueue[str]) -> list[str]:
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys


async def test_a_key_arrives_when_its_delay_has_passed_and_not_before(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10)
    assert queue.statistics().waiting == 1
    await clock.advance(9.999)
    assert len(queue) == 0
    await clock.advance(0.001)
    assert len(queue) == 1
    assert queue.statistics().waiting == 0


async def test_keys_arrive_in_ready_time_order(queue: DelayingQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 3)
    queue.add_after("b", 1)
    queue.add_after("c", 2)
    queue.add_after("d", 2)  # same ready time as c: scheduling order
    await clock.advance(5)
    assert await drain(queue) == ["b", "c", "d", "a"]


async def test_a_waiting_getter_is_woken_by_a_due_key(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    getter = asyncio.create_task(queue.get())
    queue.add_after("a", 60)
    await clock.advance(59)
    assert not getter.done()
    await clock.advance(1)
    assert getter.result() == "a"


async def test_a_later_ready_time_is_absorbed_by_an_earlier_one(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10)
    queue.add_after("a", 20)
    assert queue.next_ready_at() == 10
    await clock.advance(10)
    assert await drain(queue) == ["a"]
    await clock.advance(100)
    assert len(queue) == 0, "the later request was absorbed, not kept"


async def test_an_earlier_ready_time_moves_the_key_forward(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10)
    queue.add_after("a", 5)
    assert queue.next_ready_at() == 5
    assert queue.statistics().waiting == 1
    await clock.advance(5)
    assert await drain(queue) == ["a"]
    await clock.advance(100)
    assert len(queue) == 0, "the superseded entry does not fire"


@pytest.mark.parametrize("delay", [0, -1.5], ids=["zero", "negative"])
async def test_no_delay_means_add_now(
    queue: DelayingQueue[str], clock: FakeClock, delay: float
) -> None:
    queue.add_after("a", delay)
    assert len(queue) == 1
    await clock.settle()
    assert clock.sleepers == 0, "no timer for an immediate add"


async def test_a_waiting_key_is_not_dirty(queue: DelayingQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 10)
    queue.add("a")
    assert len(queue) == 1, "a plain add queues it at once"
    assert await drain(queue) == ["a"]
    await clock.advance(10)
    assert await drain(queue) == ["a"], "and the delayed add still happens"


async def test_a_due_key_that_is_still_queued_is_deduplicated(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10)
    queue.add("a")
    await clock.advance(10)
    assert len(queue) == 1
    assert queue.statistics().dirty == 1


async def test_a_due_key_being_processed_is_deferred_until_done(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    key = await queue.get()
    queue.add_after("a", 1)
    await clock.advance(1)
    assert len(queue) == 0
    queue.done(key)
    assert len(queue) == 1


async def test_one_timer_task_follows_the_earliest_key(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    for index in range(50):
        queue.add_after(f"k{index}", 100 + index)
    await clock.settle()
    assert clock.sleepers == 1
    assert clock.next_deadline == 100
    queue.add_after("urgent", 1)
    await clock.settle()
    assert clock.sleepers == 1, "the earlier key replaced the timer"
    assert clock.next_deadline == 1
    await clock.advance(1)
    assert await drain(queue) == ["urgent"]
    assert clock.next_deadline == 100
    await clock.advance(200)
    assert len(await drain(queue)) == 50
    assert clock.sleepers == 0
    assert queue.next_ready_at() is None


async def test_shutdown_cancels_the_timer_and_drops_waiting_keys(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10)
    queue.shutdown()
    queue.add_after("b", 1)
    await clock.settle()
    assert clock.sleepers == 0
    assert queue.statistics().waiting == 0
    await clock.advance(20)
    assert len(queue) == 0


async def test_a_long_delay_takes_no_real_time(queue: DelayingQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 1000.0 * 3600)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await clock.advance(1000.0 * 3600)
    assert await drain(queue) == ["a"]
    assert loop.time() - started < 5


class _ClockThatWakesAHairEarly:
    """A clock whose sleeps end a hair before their deadline, as float rounding in a
    virtual or coarse clock can make them; a timer judged by ``now()`` alone would re-arm a
    zero-length sleep forever."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(0)
        self.t += max(delay - 1e-9, 0.0)


async def test_a_timer_that_wakes_a_hair_early_still_delivers() -> None:
    clock = _ClockThatWakesAHairEarly()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    try:
        queue.add_after("a", 0.04)
        async with asyncio.timeout(1):
            assert await queue.get() == "a"
    finally:
        queue.shutdown()
