"""The simulator's time source: wall-clock seconds that event-loop time patchers control.

The simulator stores absolute times (launch, boot, ready deadlines) so that its state file
means the same thing after a restart: :meth:`SimClock.now` is seconds since the Unix epoch.
``sleep(delay)`` returns once ``now()`` has moved on by at least ``delay``.

:class:`LoopWallClock` (the default) anchors the running loop's monotonic ``loop.time()`` to
the wall clock once, at first use: it does not jump when the system clock is stepped, and it
is virtual under event-loop time patchers such as ``looptime``, so unit tests of boot and
ready delays take no real time. Two simulators that must share a timeline in one process
(a simulated restart in a test) share one clock object.

Any object with these two methods works, e.g. :class:`controller.runtime.workqueue.clock.FakeClock`
started at a plausible epoch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["LoopWallClock", "SimClock"]


class SimClock(Protocol):
    """Wall-clock seconds (Unix epoch) with an awaitable sleep."""

    def now(self) -> float: ...

    async def sleep(self, delay: float) -> None: ...


class LoopWallClock:
    """The running loop's clock, offset to read as Unix time; see the module docstring."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset: float | None = None

    def now(self) -> float:
        try:
            loop_now = asyncio.get_running_loop().time()
        except RuntimeError:
            loop_now = time.monotonic()
        if self._offset is None:
            self._offset = time.time() - loop_now
        return self._offset + loop_now

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
