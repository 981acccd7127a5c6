"""The base work queue: fair, stingy, deduplicating; keys wait their turn in FIFO order.

State: ``dirty`` (keys that need processing), ``processing`` (keys handed to a worker by
:meth:`WorkQueue.get` and not yet :meth:`WorkQueue.done`) and the ready queue (keys a worker can
take now). Invariants, after every method returns:

- every key in the ready queue is in ``dirty`` and not in ``processing``, and appears there once;
- a key is never handed to two workers at once: ``get`` moves it into ``processing`` and it is
  handed out again only after ``done``;
- a key added while queued is deduplicated (it is processed once); a key added while being
  processed is marked dirty and goes back to the ready queue (at the back) on ``done``, so a
  change made during a reconcile is never lost and never reconciled concurrently.

``get`` waits for a key. After :meth:`WorkQueue.shutdown`, ``add`` is ignored, keys already
queued are still handed out, and once the ready queue is empty ``get`` raises
:class:`QueueShutDown` (in every waiting worker too). Workers that want to stop at once check
:attr:`WorkQueue.shutting_down`. :meth:`WorkQueue.shutdown_with_drain` additionally waits (up
to a timeout) until no key is being processed, which requires every worker to call ``done``,
also when its work failed; use ``try``/``finally``.

``done`` for a key that is not being processed does nothing. A getter cancelled while waiting
takes nothing from the queue; a getter cancelled just after being woken passes its wake-up on,
so no key is left behind while another worker waits.

The queue is for one event loop and is not thread-safe. ``add`` and ``done`` are plain
functions and never block; ``get`` returns without suspending when a key is ready.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from controller.runtime.workqueue.clock import Clock, LoopClock
from controller.runtime.workqueue.metrics import (
    NOOP_METRICS,
    MetricsProvider,
    QueueMetrics,
    prometheus_metrics,
)

__all__ = ["K", "QueueShutDown", "QueueStatistics", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and has no key left to hand out."""


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A snapshot of a queue, for health checks, logs and tests."""

    queued: int
    """Keys ready to be handed to a worker."""
    processing: int
    """Keys handed to a worker and not yet done."""
    dirty: int
    """Keys that need processing: the queued ones plus those re-added while being processed."""
    waiting: int
    """Keys waiting for their ``add_after`` delay (always 0 for a plain :class:`WorkQueue`)."""
    getters: int
    """Workers waiting in ``get``."""
    shutting_down: bool


class WorkQueue(Generic[K]):
    """A deduplicating FIFO of keys for a pool of workers; see the module docstring.

    ``name`` labels the queue's metrics; an unnamed queue records none. With a name and no
    ``metrics`` provider, metrics go to the global Prometheus registry.
    """

    _prioritised: ClassVar[bool] = False

    def __init__(
        self,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        metrics: MetricsProvider | None = None,
    ) -> None:
        self._name = name
        self._clock: Clock = LoopClock() if clock is None else clock
        provider: MetricsProvider
        if name is None:
            provider = NOOP_METRICS
        else:
            provider = prometheus_metrics() if metrics is None else metrics
        self._metrics: QueueMetrics = provider.queue_metrics(
            name=name or "", clock=self._clock, prioritised=self._prioritised
        )
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        """How many keys are ready to be handed out (informational only)."""
        return len(self._queue)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} name={self._name!r} queued={len(self)} "
            f"processing={len(self._processing)}{' shutting down' if self._shutting_down else ''}>"
        )

    def add(self, key: K) -> None:
        """Mark ``key`` as needing processing (deduplicated; ignored after shutdown)."""
        self._add(key, 0)

    async def get(self) -> K:
        """Wait for a key, hand it to the caller and mark it as being processed.

        The caller must call :meth:`done` with the key when finished, whatever the outcome.
        Raises :class:`QueueShutDown` once the queue is shut down and nothing is left.
        """
        while len(self) == 0:
            if self._shutting_down:
                raise QueueShutDown(f"work queue {self._name or ''!r} is shut down")
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter.done() and not getter.cancelled():
                    self._wake_one()  # woken, but will take nothing: wake someone else
                else:
                    getter.cancel()
                    with contextlib.suppress(ValueError):
                        self._getters.remove(getter)
                raise
        key = self._dequeue()
        self._dirty.discard(key)
        self._processing.add(key)
        self._track_got(key)
        return key

    def done(self, key: K) -> None:
        """Finish processing ``key``; if it was added meanwhile, queue it again."""
        if key not in self._processing:
            return
        self._processing.discard(key)
        self._metrics.done(key)
        if key in self._dirty:
            self._enqueue(key)
            self._wake_one()
        if self._drained is not None and not self._processing:
            self._drained.set()

    def shutdown(self) -> None:
        """Stop accepting keys and wake every waiting worker (idempotent)."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._stop()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    async def shutdown_with_drain(self, *, timeout: float | None = None) -> bool:
        """Shut down, then wait until no key is being processed.

        Returns True when drained, False when ``timeout`` seconds (on the queue's clock) passed
        first. Keys still queued are not waited for.
        """
        self.shutdown()
        if not self._processing:
            return True
        if self._drained is None:
            self._drained = asyncio.Event()
        drained = asyncio.ensure_future(self._wait_drained(self._drained))
        if timeout is None:
            await drained
            return True
        expired = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            finished, _ = await asyncio.wait(
                {drained, expired}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            drained.cancel()
            expired.cancel()
        return drained in finished

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(
            queued=len(self),
            processing=len(self._processing),
            dirty=len(self._dirty),
            waiting=self._waiting_count(),
            getters=sum(1 for getter in self._getters if not getter.done()),
            shutting_down=self._shutting_down,
        )

    # -- the add path, shared with the delaying and priority layers ------------------------

    def _add(self, key: K, priority: int) -> None:
        if self._shutting_down:
            return
        if key in self._dirty:
            self._merge_priority(key, priority)
            return
        self._dirty.add(key)
        self._track_new(key, priority)
        if key in self._processing:
            return  # deferred: done() queues it again
        self._enqueue(key)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    async def _wait_drained(self, event: asyncio.Event) -> None:
        while self._processing:
            event.clear()
            await event.wait()

    # -- hooks: how keys are ordered (overridden by the priority queue) --------------------

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)

    def _dequeue(self) -> K:
        return self._queue.popleft()

    def _track_new(self, key: K, priority: int) -> None:
        self._metrics.added(key, None)

    def _track_got(self, key: K) -> None:
        self._metrics.got(key, None)

    def _merge_priority(self, key: K, priority: int) -> None:
        """A dirty key was added again; a plain queue has nothing to merge."""

    # -- hooks: delayed keys (overridden by the delaying queue) ----------------------------

    def _waiting_count(self) -> int:
        return 0

    def _stop(self) -> None:
        """Called once on shutdown, before waiting workers are woken."""
