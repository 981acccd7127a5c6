"""The base queue: dedupe, never two workers on one key, waiting getters, shutdown and drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller.runtime.workqueue import FakeClock, QueueShutDown, QueueStatistics, WorkQueue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[WorkQueue[str]]:
    q: WorkQueue[str] = WorkQueue(clock=clock)
    yield q
    q.shutdown()
    await clock.settle()


async def test_keys_come_out_in_the_order_they_went_in(queue: WorkQueue[str]) -> None:
    for key in ("a", "b", "c"):
        queue.add(key)
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_adding_a_queued_key_again_does_nothing(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_a_key_added_while_processing_is_requeued_once_on_done(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "deferred until done, not handed to a second worker"
    assert queue.statistics().dirty == 1

    second = asyncio.create_task(queue.get())
    await clock.settle()
    assert not second.done()

    queue.done(key)
    await clock.settle()
    assert second.result() == "a"
    queue.done("a")
    assert queue.statistics() == QueueStatistics(
        queued=0, processing=0, dirty=0, waiting=0, getters=0, shutting_down=False
    )


async def test_a_deferred_key_goes_to_the_back(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("b")
    queue.done("a")
    assert [await queue.get(), await queue.get()] == ["b", "a"]


async def test_two_waiting_workers_never_share_a_key(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await clock.settle()
    queue.add("a")
    await clock.settle()
    assert first.done() != second.done()
    holder, idle = (first, second) if first.done() else (second, first)
    queue.add("a")
    await clock.settle()
    assert not idle.done()
    queue.done(holder.result())
    await clock.settle()
    assert idle.result() == "a"


async def test_get_waits_for_an_add(queue: WorkQueue[str], clock: FakeClock) -> None:
    getter = asyncio.create_task(queue.get())
    await clock.settle()
    assert not getter.done()
    assert queue.statistics().getters == 1
    queue.add("a")
    await clock.settle()
    assert getter.result() == "a"


async def test_done_for_a_key_not_being_processed_does_nothing(queue: WorkQueue[str]) -> None:
    queue.done("never-seen")
    queue.add("a")
    queue.done("a")  # queued, not processing
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_shutdown_wakes_waiting_getters_with_queue_shut_down(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await clock.settle()
    queue.shutdown()
    await clock.settle()
    for getter in getters:
        with pytest.raises(QueueShutDown):
            getter.result()
    assert queue.shutting_down


async def test_after_shutdown_adds_are_ignored_and_queued_keys_still_drain(
    queue: WorkQueue[str],
) -> None:
    queue.add("a")
    queue.add("b")
    queue.shutdown()
    queue.shutdown()  # idempotent
    queue.add("c")
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_a_key_dirty_at_shutdown_is_still_requeued_on_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    await queue.get()
    queue.add("a")
    queue.shutdown()
    queue.done("a")
    assert await queue.get() == "a"


async def test_shutdown_with_drain_waits_for_work_in_flight(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    key = await queue.get()
    drain = asyncio.create_task(queue.shutdown_with_drain(timeout=30))
    await clock.advance(10)
    assert not drain.done()
    queue.add("b")  # shutting down: ignored
    queue.done(key)
    await clock.settle()
    assert drain.result() is True
    assert clock.sleepers == 0, "the timeout sleeper was cancelled"


async def test_shutdown_with_drain_gives_up_after_the_timeout(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    await queue.get()
    drain = asyncio.create_task(queue.shutdown_with_drain(timeout=30))
    await clock.advance(29.9)
    assert not drain.done()
    await clock.advance(0.1)
    assert drain.result() is False
    assert queue.statistics().processing == 1


async def test_shutdown_with_drain_without_timeout(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add("a")
    queue.add("b")
    first = await queue.get()
    second = await queue.get()
    drain = asyncio.create_task(queue.shutdown_with_drain())
    await clock.settle()
    queue.done(first)
    await clock.settle()
    assert not drain.done()
    queue.done(second)
    await clock.settle()
    assert drain.result() is True


async def test_shutdown_with_drain_returns_at_once_when_idle(queue: WorkQueue[str]) -> None:
    assert await queue.shutdown_with_drain(timeout=1) is True


async def test_a_getter_cancelled_after_its_wake_up_passes_it_on(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    first = asyncio.create_task(queue.get())
    await clock.settle()
    second = asyncio.create_task(queue.get())
    await clock.settle()
    queue.add("a")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    await clock.settle()
    assert first.cancelled()
    assert second.result() == "a"


async def test_a_getter_cancelled_while_waiting_takes_nothing(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    getter = asyncio.create_task(queue.get())
    await clock.settle()
    getter.cancel()
    await clock.settle()
    assert queue.statistics().getters == 0
    queue.add("a")
    assert await queue.get() == "a"


async def test_keys_can_be_any_hashable(clock: FakeClock) -> None:
    queue: WorkQueue[tuple[str, str]] = WorkQueue(clock=clock)
    queue.add(("default", "pool-a"))
    queue.add(("default", "pool-a"))
    assert await queue.get() == ("default", "pool-a")
    assert len(queue) == 0


def test_repr_names_the_queue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert repr(queue) == "<WorkQueue name=None queued=1 processing=0>"
    queue.shutdown()
    assert repr(queue).endswith(" shutting down>")
