"""The clocks: the loop clock reads loop time; the fake one wakes sleepers in order."""

from __future__ import annotations

import asyncio

import pytest

from controller.runtime.workqueue import FakeClock, LoopClock


async def test_loop_clock_reads_the_running_loop() -> None:
    clock = LoopClock()
    loop = asyncio.get_running_loop()
    before = loop.time()
    now = clock.now()
    assert before <= now <= loop.time()
    await clock.sleep(0)


def test_loop_clock_outside_a_loop_is_monotonic() -> None:
    clock = LoopClock()
    assert clock.now() <= clock.now()


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(label: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((label, clock.now()))

    tasks = [
        asyncio.create_task(sleeper(label, delay))
        for label, delay in (("late", 3.0), ("early", 1.0), ("tie-1", 2.0), ("tie-2", 2.0))
    ]
    await clock.settle()
    assert clock.sleepers == 4
    assert clock.next_deadline == 101.0
    await clock.advance(2.5)
    assert woke == [("early", 101.0), ("tie-1", 102.0), ("tie-2", 102.0)]
    assert clock.now() == 102.5
    await clock.advance(10)
    assert woke[-1] == ("late", 103.0)
    await asyncio.gather(*tasks)
    assert clock.sleepers == 0
    assert clock.next_deadline is None


async def test_fake_clock_skips_cancelled_sleepers_and_never_goes_back() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5))
    await clock.settle()
    task.cancel()
    await clock.advance(10)
    assert task.cancelled()
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    await clock.sleep(0)
