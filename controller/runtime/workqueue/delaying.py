"""Delayed adds: ``add_after(key, delay)`` adds ``key`` once ``delay`` seconds have passed.

Waiting keys live in a min-heap ordered by ready time, with one entry per key that counts
(moving a key earlier pushes a new entry; the superseded one is skipped when it surfaces). One
timer task at a time sleeps on the queue's clock until the earliest ready time, adds every key
that is due, and re-arms for the next one; a new key due sooner than the timer replaces it.

Invariants and behaviour:

- A key's ready time only moves earlier: ``add_after`` for a key already waiting keeps the
  earlier of the two times (a later request is absorbed by the earlier one).
- ``add_after`` with ``delay <= 0`` is a plain ``add``.
- A waiting key is not dirty: an ``add`` meanwhile queues it at once, and when the delay ends it
  is added again (deduplicated if it is still queued then). So a requested wake-up is never
  lost to an unrelated event.
- A due key is added through the normal path: deduplication, deferral while processing and
  metrics all apply. Keys due at the same time are added in the order they were scheduled.
- Every ``add_after`` call counts as a retry in the metrics, as client-go counts it.
- After ``shutdown`` ``add_after`` is ignored, the timer is cancelled and waiting keys are
  dropped.

``add_after`` must be called from within the running event loop (it may start the timer task).
If adding a due key ever raised (a bug: ``add`` does not raise), the error is logged and the
timer re-armed, so later keys still arrive.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import structlog

from controller.runtime.workqueue.clock import Clock
from controller.runtime.workqueue.metrics import MetricsProvider
from controller.runtime.workqueue.queue import K, WorkQueue

__all__ = ["DelayingQueue"]

_log = structlog.get_logger(__name__)


class _Waiting:
    """The entry that counts for one waiting key."""

    __slots__ = ("priority", "ready_at", "seq")

    def __init__(self, *, ready_at: float, seq: int, priority: int) -> None:
        self.ready_at = ready_at
        self.seq = seq
        self.priority = priority


class DelayingQueue(WorkQueue[K]):
    """A :class:`~controller.runtime.workqueue.queue.WorkQueue` with ``add_after``."""

    def __init__(
        self,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        metrics: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock, metrics=metrics)
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, _Waiting] = {}
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        self._add_after(key, delay, 0)

    def next_ready_at(self) -> float | None:
        """The clock time at which the next waiting key is due, if any key waits."""
        self._drop_superseded()
        return self._heap[0][0] if self._heap else None

    # -- internals ---------------------------------------------------------------------------

    def _add_after(self, key: K, delay: float, priority: int) -> None:
        if self._shutting_down:
            return
        self._metrics.retried()
        if delay <= 0:
            self._add(key, priority)
            return
        ready_at = self._clock.now() + delay
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = _Waiting(ready_at=ready_at, seq=next(self._seq), priority=priority)
            self._waiting[key] = waiting
        else:
            waiting.priority = max(waiting.priority, priority)
            if ready_at >= waiting.ready_at:
                return
            waiting.ready_at = ready_at
            waiting.seq = next(self._seq)
        heapq.heappush(self._heap, (ready_at, waiting.seq, key))
        self._arm()

    def _is_current(self, seq: int, key: K) -> bool:
        waiting = self._waiting.get(key)
        return waiting is not None and waiting.seq == seq

    def _drop_superseded(self) -> None:
        heap = self._heap
        while heap and not self._is_current(heap[0][1], heap[0][2]):
            heapq.heappop(heap)

    def _arm(self) -> None:
        """Make sure a timer is set for the earliest waiting key (and only one timer)."""
        self._drop_superseded()
        if not self._heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer, self._timer_at = None, math.inf
            return
        head_at = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at <= head_at:
                return
            self._timer.cancel()
        self._timer_at = head_at
        self._timer = asyncio.get_running_loop().create_task(
            self._sleep_until(head_at), name=f"workqueue-timer:{self._name or ''}"
        )

    async def _sleep_until(self, ready_at: float) -> None:
        await self._clock.sleep(ready_at - self._clock.now())
        self._timer, self._timer_at = None, math.inf
        try:
            # The timer was set for ``ready_at``: whatever was due then is due now, even when
            # the clock reads a hair earlier (float rounding, a coarse virtual clock). Judging
            # by ``now()`` alone could re-arm a zero-length timer forever.
            self._fire(due=max(ready_at, self._clock.now()))
        except Exception:
            _log.exception("work queue timer failed to add a due key", queue=self._name)
            self._arm()

    def _fire(self, *, due: float | None = None) -> None:
        now = self._clock.now() if due is None else due
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            if not self._is_current(seq, key):
                continue
            waiting = self._waiting.pop(key)
            self._add(key, waiting.priority)
        self._arm()

    def _waiting_count(self) -> int:
        return len(self._waiting)

    def _stop(self) -> None:
        super()._stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._heap.clear()
        self._waiting.clear()
