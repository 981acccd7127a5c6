"""A controller: one reconciler, its work queue, and the workers that drain it.

Semantics follow controller-runtime:

- Keys come from watches (:meth:`Controller.watch` maps informer events to keys). The
  priority each key is queued at is the work-priority policy's
  (:mod:`controller.runtime.urgency`, through :class:`~controller.runtime.urgency.KeyPriorities`;
  nothing here decides one): a key from a real change at high priority; keys from an
  informer's initial list, from resyncs and from status-only progress at low priority. With
  an :class:`~controller.runtime.urgency.Urgency` (the manager's controllers share one), a
  person's spec change and the chain of work it sets off go above both, so the change
  overtakes a cold-start backlog at every hop.
- ``concurrency`` workers take keys; the queue guarantees one key is never reconciled by two
  workers at once.
- The reconciler returns a :class:`Result`: done (``Result()``: the key's backoff is reset),
  ``requeue_after`` (reset, then queued again after that delay), or ``requeue`` (queued again
  with backoff). Raising is an error: queued again with per-key exponential backoff.
  :class:`TerminalError` is an error that retrying cannot fix: it is counted and logged but
  not requeued (a later change to the object queues it again).
- Each reconcile runs under ``reconcile_timeout``; running over it cancels the reconcile,
  counts a timeout and an error, and requeues with backoff, so a hung provider call cannot
  hold a worker forever.
- An unexpected exception (a bug) is logged with its traceback and counted in
  ``controller_runtime_reconcile_panics_total`` as well as the error counter; the worker
  carries on. :class:`ReconcileError`, an API server's error answer
  (:class:`~controller.runtime.kube.ApiError`: a conflict, a throttle, a rejected write) and a
  transport failure are expected, explained failures: logged on one line, no traceback.
- Every log line inside a reconcile carries ``controller``, ``key`` and ``reconcile_id``.

Metrics: ``controller_runtime_reconcile_total{controller,result}`` (``success``, ``error``,
``requeue``, ``requeue_after``), ``..._reconcile_errors_total``,
``..._terminal_reconcile_errors_total``, ``..._reconcile_panics_total``,
``..._reconcile_timeouts_total``, ``..._reconcile_time_seconds``,
``controller_runtime_max_concurrent_reconciles``, ``controller_runtime_active_workers``, plus
the ``workqueue_*`` series of the queue.

Shutdown: :meth:`Controller.run` returns when the queue is shut down; :meth:`Controller.stop`
shuts the queue down and lets in-flight reconciles finish within a grace period, then cancels
what is left.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import ApiError
from controller.runtime.metrics import REGISTRY, per_registry
from controller.runtime.urgency import KeyPriorities, Urgency, event_priority
from controller.runtime.workqueue import (
    HIGH_PRIORITY,
    PriorityQueue,
    QueueShutDown,
    prometheus_metrics,
)
from controller.runtime.workqueue.clock import Clock

_log = structlog.get_logger(__name__)

RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
    0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30,
    40, 50, 60,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next: nothing, a delayed requeue, or a backed-off requeue."""

    requeue_after: float | None = None
    requeue: bool = False


class ReconcileError(Exception):
    """An expected, explained failure: retried with backoff, logged without a traceback."""


class TerminalError(Exception):
    """A failure retrying cannot fix: counted and logged, not requeued."""


class Reconciler(Protocol):
    async def reconcile(self, key: str) -> Result: ...


class ControllerMetrics:
    """controller-runtime's controller metrics on one registry (shared by its controllers)."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.total = counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
        )
        self.errors = counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
        )
        self.terminal = counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            ["controller"],
        )
        self.panics = counter(
            "controller_runtime_reconcile_panics_total",
            "Total number of reconciliation panics per controller",
            ["controller"],
        )
        self.timeouts = counter(
            "controller_runtime_reconcile_timeouts_total",
            "Total number of reconciliation timeouts per controller",
            ["controller"],
        )
        self.time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=registry,
        )
        self.active = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=registry,
        )

    def init(self, *, controller: str, concurrency: int) -> None:
        for result in ("success", "error", "requeue", "requeue_after"):
            self.total.labels(controller, result)
        for c in (self.errors, self.terminal, self.panics, self.timeouts):
            c.labels(controller)
        self.max_concurrent.labels(controller).set(concurrency)
        self.active.labels(controller).set(0)


@per_registry
def controller_metrics(registry: CollectorRegistry) -> ControllerMetrics:
    """The one :class:`ControllerMetrics` of ``registry``."""
    return ControllerMetrics(registry=registry)


KeyMapper = Callable[[InformerEvent], Iterable[str]]


class Controller:
    """Runs one reconciler over its work queue; see the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        reconciler: Reconciler,
        concurrency: int = 10,
        reconcile_timeout: float = 60.0,
        registry: CollectorRegistry = REGISTRY,
        clock: Clock | None = None,
        urgency: Urgency | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if reconcile_timeout <= 0:
            raise ValueError(f"reconcile timeout must be positive, got {reconcile_timeout}")
        self.name = name
        self.reconciler = reconciler
        self.concurrency = concurrency
        self.reconcile_timeout = reconcile_timeout
        self.queue: PriorityQueue[str] = PriorityQueue(
            name=name, clock=clock, metrics=prometheus_metrics(registry)
        )
        self._metrics = controller_metrics(registry)
        self._metrics.init(controller=name, concurrency=concurrency)
        self._workers: list[asyncio.Task[None]] = []
        self._log = _log.bind(controller=name)
        self._priorities = KeyPriorities(urgency=urgency)

    # ------------------------------------------------------------- inputs

    def enqueue(
        self,
        key: str,
        *,
        priority: int = HIGH_PRIORITY,
        event: InformerEvent | None = None,
        kind: str | None = None,
    ) -> None:
        """Queue ``key``; with the ``event`` (of a ``kind``) that caused it, urgency applies
        as for watched events."""
        marks = event is not None and self._priorities.marks(
            event, kind=kind or str(event.obj.get("kind", ""))
        )
        self.queue.add(key, priority=self._priorities.queued(key, priority=priority, marks=marks))

    def watch(self, informer: Informer, mapper: KeyMapper) -> None:
        """Queue the keys ``mapper`` returns for each of ``informer``'s events."""
        kind = informer.resource.kind
        priorities = self._priorities

        def handle(event: InformerEvent) -> None:
            priority = event_priority(event)
            marks = priorities.marks(event, kind=kind)
            for key in mapper(event):
                self.queue.add(key, priority=priorities.queued(key, priority=priority, marks=marks))

        informer.add_handler(handle)

    # ----------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Run the workers until the queue shuts down (see :meth:`stop`)."""
        self._workers = [
            asyncio.create_task(self._worker(), name=f"{self.name} worker {i}")
            for i in range(self.concurrency)
        ]
        try:
            # Workers end when the queue shuts down, or are cancelled by stop() after the
            # grace period; either way run() returns normally.
            await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)

    async def stop(self, *, grace: float) -> bool:
        """Stop taking work; wait up to ``grace`` seconds for in-flight reconciles.

        Returns True when everything in flight finished in time; otherwise the rest is
        cancelled and False is returned.
        """
        drained = await self.queue.shutdown_with_drain(timeout=grace)
        if not drained:
            self._log.warning("reconciles still running after the grace period, cancelling")
            for task in self._workers:
                task.cancel()
        return drained

    # ------------------------------------------------------------- worker

    async def _worker(self) -> None:
        while True:
            try:
                key, priority = await self.queue.get_with_priority()
            except QueueShutDown:
                return
            try:
                await self._process(key=key, priority=priority)
            finally:
                self.queue.done(key)

    async def _process(self, *, key: str, priority: int) -> None:
        name = self.name
        metrics = self._metrics
        reconcile_id = uuid.uuid4().hex[:12]
        log = self._log.bind(key=key, reconcile_id=reconcile_id)
        metrics.active.labels(name).inc()
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            controller=name, key=key, reconcile_id=reconcile_id
        ):
            urgent = self._priorities.runs_urgently(key, priority=priority)
            try:
                async with asyncio.timeout(self.reconcile_timeout) as deadline:
                    with self._priorities.reconciling(urgent=urgent):
                        result = await self.reconciler.reconcile(key)
            except TerminalError as exc:
                metrics.errors.labels(name).inc()
                metrics.terminal.labels(name).inc()
                metrics.total.labels(name, "error").inc()
                log.error("reconcile failed permanently, not retrying", error=str(exc))
                self.queue.forget(key)
            except TimeoutError as exc:
                metrics.errors.labels(name).inc()
                metrics.total.labels(name, "error").inc()
                if deadline.expired():
                    metrics.timeouts.labels(name).inc()
                    log.error("reconcile timed out", timeout=self.reconcile_timeout)
                else:
                    log.warning("reconcile failed", error=f"TimeoutError: {exc}")
                self.queue.add_rate_limited(key, priority=priority)
            except (ReconcileError, ApiError, aiohttp.ClientError) as exc:
                metrics.errors.labels(name).inc()
                metrics.total.labels(name, "error").inc()
                log.warning("reconcile failed", error=str(exc))
                self.queue.add_rate_limited(key, priority=priority)
            except Exception:
                metrics.errors.labels(name).inc()
                metrics.panics.labels(name).inc()
                metrics.total.labels(name, "error").inc()
                log.exception("reconcile raised an unexpected exception")
                self.queue.add_rate_limited(key, priority=priority)
            else:
                if result.requeue_after is not None and result.requeue_after > 0:
                    metrics.total.labels(name, "requeue_after").inc()
                    self.queue.forget(key)
                    self.queue.add_after(
                        key, result.requeue_after, priority=self._priorities.poll(key)
                    )
                elif result.requeue:
                    metrics.total.labels(name, "requeue").inc()
                    self.queue.add_rate_limited(key, priority=priority)
                else:
                    metrics.total.labels(name, "success").inc()
                    self.queue.forget(key)
            finally:
                metrics.time.labels(name).observe(time.monotonic() - started)
                metrics.active.labels(name).dec()
