"""Time sources for the work queue: the event loop's clock, and a fake one for tests.

Everything in :mod:`controller.runtime.workqueue` that reads or waits on time goes through a
:class:`Clock`: ``now()`` is a monotonic reading in seconds and ``sleep(delay)`` waits until
``now()`` has moved on by at least ``delay``. Nothing else is assumed (no wall-clock meaning,
no particular epoch).

:class:`LoopClock` is the default: the running loop's ``loop.time()`` (monotonic; virtual
under event-loop time patchers) and ``asyncio.sleep``. Read outside a running loop (for
example by a metrics scrape on another thread) it falls back to ``time.monotonic()``, which
is what the default asyncio loop uses.

:class:`FakeClock` never moves on its own: a test calls :meth:`FakeClock.advance`, which wakes
every sleeper whose deadline has come, in deadline order, letting the loop run between them,
so delays of hours take no real time and the order of events is deterministic.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "LoopClock"]


class Clock(Protocol):
    """A monotonic time source with an awaitable sleep."""

    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...

    async def sleep(self, delay: float) -> None:
        """Return once ``now()`` has advanced by at least ``delay`` seconds."""
        ...


class LoopClock:
    """The running event loop's clock (the default)."""

    __slots__ = ()

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class FakeClock:
    """A clock that only moves when told to; for deterministic tests of delays.

    ``sleep`` parks the caller on a future; :meth:`advance` releases sleepers in deadline order
    (ties in the order they went to sleep) and gives the loop a few turns after each release so
    that whatever the sleeper triggers (a timer firing, a getter waking) has happened before the
    next deadline is considered and before ``advance`` returns.
    """

    __slots__ = ("_counter", "_now", "_settle_turns", "_sleepers")

    def __init__(self, *, start: float = 0.0, settle_turns: int = 32) -> None:
        self._now = start
        self._settle_turns = settle_turns
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + delay, next(self._counter), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleeps are still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a waiting sleep, if any."""
        live = [when for when, _, future in self._sleepers if not future.done()]
        return min(live, default=None)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking due sleepers in order along the way."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backwards (asked for {seconds})")
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            if future.done():  # the sleeper was cancelled
                continue
            self._now = max(self._now, when)
            future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Give the loop some turns so that woken tasks run up to their next wait."""
        for _ in range(self._settle_turns):
            await asyncio.sleep(0)
