"""A work queue whose keys carry a priority: fresh changes first, backlog after.

After a restart a controller queues every object it lists; a resync queues them all again.
With a plain FIFO, a person's edit made then waits behind that whole backlog. Here each add
carries an integer priority, higher first: give events from real changes
:data:`HIGH_PRIORITY` (0, the default) and the initial list, unchanged resyncs and other
bulk work :data:`LOW_PRIORITY` (-100), and a change is handed out next, ahead of a thousand
listed keys. (This is controller-runtime's priority queue idea; its event handlers use the
same two values.)

Rules, on top of every rule of the rate-limiting queue it extends:

- ``get`` hands out the ready key with the highest priority; keys of equal priority come out
  in the order they started needing processing (FIFO within a priority).
- A key that is already queued, or is waiting to be queued again after its current processing,
  keeps one place: adding it again with a higher priority raises its priority (it keeps its
  place in the order of that priority); adding it with a lower one changes nothing.
- ``add_after`` and ``add_rate_limited`` carry a priority too; a waiting key keeps the highest
  priority it was given, and is added with it when due.
- :meth:`PriorityQueue.get_with_priority` returns the priority the key was handed out with, so
  a worker can requeue a key at the priority it came with.
- ``workqueue_depth`` is labelled with the priority (``"0"``, ``"-100"``, ...).
"""

from __future__ import annotations

import heapq
import itertools
from typing import ClassVar, Final

from controller.runtime.workqueue.clock import Clock
from controller.runtime.workqueue.metrics import MetricsProvider
from controller.runtime.workqueue.queue import K
from controller.runtime.workqueue.rate_limiters import RateLimiter
from controller.runtime.workqueue.rate_limiting import RateLimitingQueue

__all__ = ["HIGH_PRIORITY", "LOW_PRIORITY", "PriorityQueue"]

HIGH_PRIORITY: Final = 0
"""For keys whose object really changed (the default)."""
LOW_PRIORITY: Final = -100
"""For keys from the initial list, resyncs and other bulk work."""


class PriorityQueue(RateLimitingQueue[K]):
    """A :class:`~controller.runtime.workqueue.rate_limiting.RateLimitingQueue` with priorities."""

    _prioritised: ClassVar[bool] = True

    def __init__(
        self,
        *,
        name: str | None = None,
        rate_limiter: RateLimiter[K] | None = None,
        clock: Clock | None = None,
        metrics: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name=name, rate_limiter=rate_limiter, clock=clock, metrics=metrics)
        # (-priority, order, key); an entry counts only if it matches _wanted[key].
        self._ready: list[tuple[int, int, K]] = []
        self._ready_count = 0
        # priority and FIFO order of every dirty key, fixed when it became dirty
        self._wanted: dict[K, tuple[int, int]] = {}
        # the priority each key being processed was handed out with
        self._handed_out: dict[K, int] = {}
        self._order = itertools.count()

    def add(self, key: K, *, priority: int = HIGH_PRIORITY) -> None:
        """Mark ``key`` as needing processing at ``priority`` (or raise it to ``priority``)."""
        self._add(key, priority)

    def add_after(self, key: K, delay: float, *, priority: int = HIGH_PRIORITY) -> None:
        """Add ``key`` at ``priority`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        self._add_after(key, delay, priority)

    def add_rate_limited(self, key: K, *, priority: int = HIGH_PRIORITY) -> None:
        """Record a failure of ``key`` and add it at ``priority`` after the limiter's delay."""
        self._add_after(key, self._rate_limiter.when(key), priority)

    async def get_with_priority(self) -> tuple[K, int]:
        """Like ``get``, also returning the priority the key was handed out with."""
        key = await self.get()
        return key, self._handed_out[key]

    def done(self, key: K) -> None:
        self._handed_out.pop(key, None)
        super().done(key)

    def __len__(self) -> int:
        return self._ready_count

    # -- ordering hooks ----------------------------------------------------------------------

    def _track_new(self, key: K, priority: int) -> None:
        self._wanted[key] = (priority, next(self._order))
        self._metrics.added(key, priority)

    def _merge_priority(self, key: K, priority: int) -> None:
        current, order = self._wanted[key]
        if priority <= current:
            return
        self._wanted[key] = (priority, order)
        self._metrics.reprioritised(current, priority)
        if key not in self._processing:  # queued: its old entry is now superseded
            heapq.heappush(self._ready, (-priority, order, key))

    def _enqueue(self, key: K) -> None:
        priority, order = self._wanted[key]
        heapq.heappush(self._ready, (-priority, order, key))
        self._ready_count += 1

    def _dequeue(self) -> K:
        while True:
            negated, order, key = heapq.heappop(self._ready)
            if self._wanted.get(key) == (-negated, order) and key not in self._processing:
                break
        del self._wanted[key]
        self._handed_out[key] = -negated
        self._ready_count -= 1
        if not self._ready_count:
            self._ready.clear()  # only superseded entries can be left
        return key

    def _track_got(self, key: K) -> None:
        self._metrics.got(key, self._handed_out[key])
