"""Leader election on a ``coordination.k8s.io/v1`` Lease, following client-go's algorithm.

``LeaderElector.run(on_started_leading=...)`` waits until this process holds the Lease, runs
``on_started_leading()`` as a task, and renews the Lease until that task ends or the run is
cancelled. Everyone who wants to lead runs an elector on the same Lease; one leads, the others
stand by and take over when the leader stops renewing.

The lease thread: acquiring, renewing and releasing the Lease run on a thread of their own
(``lease <namespace>/<name>``), with its own event loop and its own API client (a copy of
``kube`` on a new ApiClient built there from the same configuration), as client-go renews
on a goroutine of its own. ``on_started_leading()`` and everything it starts stay on the
caller's loop. So a main loop blocked by CPU-bound work keeps the Lease, and
:meth:`LeaderElector.check` stays truthful. When leadership is lost the thread steps down
(``is_leader`` false, the gauge 0) and cancels the leading task on the main loop at once
(``call_soon_threadsafe``); a main loop that is blocked at that moment runs the
cancellation as soon as it runs anything. ``run()`` always waits for the thread to end.

One attempt to acquire or renew (client-go's ``tryAcquireOrRenew``):

1. Fast path: while we lead and our view of the record is still valid, PUT the record with a
   new ``renewTime`` and the resourceVersion we last saw.
2. Otherwise GET the Lease (CREATE it, held by us, if there is none). Another holder's record
   is *valid* until ``observed + leaseDurationSeconds``, where ``observed`` is the moment, on
   our own monotonic clock, that we first saw the record in its current form (any field
   changed, ``renewTime`` included). While it is valid we leave it alone.
3. Write our record by PUT with the resourceVersion we read: ``acquireTime`` and
   ``leaseTransitions`` are kept when we already hold the Lease, else ``acquireTime`` is now
   and ``leaseTransitions`` goes up by one. A concurrent writer makes the PUT fail with 409,
   so two candidates can never both win the same version of the record.

Timing (defaults 15 s / 10 s / 2 s; ``lease_duration > renew_deadline > 1.2 * retry_period``,
all > 0, checked by the constructor with a ``ValueError``):

- A candidate retries every ``retry_period * (1 + 1.2 * random())`` seconds, and also wakes at
  the moment the current holder's lease would expire by its own clock.
- A leader renews every ``retry_period``. A renewal that fails (any API or transport error, a
  lost race) is retried every ``retry_period`` until ``renew_deadline`` has passed since the
  *start* of the last successful renewal; then the leading task is cancelled at once and
  ``run()`` raises :class:`LeadershipLost`. Seeing another holder's valid record ends the
  leadership at once, without waiting for the deadline. Every attempt is bounded by the
  time left to the deadline.
- Validity is judged from local observation times, never from the timestamps in the record,
  so wall-clock skew between nodes does not matter (a different clock *rate* would).

Invariant: a candidate takes over only ``leaseDurationSeconds`` (our ``lease_duration``
rounded up) after it saw the leader's last renewal, which is after that renewal started; the
leader has cancelled its work ``renew_deadline`` after the start. So the old leader's work is
stopped at least ``lease_duration - renew_deadline`` before a new leader starts, provided the
main loop is not blocked for that long at the moment leadership is lost (the lease thread
itself only does Lease requests). As client-go says, this is not fencing: a process frozen
longer than that margin can overlap with its successor. :meth:`LeaderElector.check` lets a
liveness probe catch a leader whose renew loop is stuck.

Shutdown: when ``run()`` is cancelled the leading task is cancelled first and renewal goes on
while it winds down (it must honour cancellation: ``run()`` waits for it). With
``release_on_cancel=True`` the Lease is then released - ``holderIdentity ""`` and
``leaseDurationSeconds 1`` - so a standby takes over at its next retry; the release retries
conflicts and is bounded by ``renew_deadline``; a failed release is logged and the Lease
simply expires. The same release happens when ``on_started_leading()`` returns or raises on
its own; ``run()`` then returns its result (or raises its exception).

Metrics: ``leader_election_master_status{name}`` is 1 while this process leads the Lease
``name`` and 0 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import math
import random
import socket
import threading
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import aiohttp
import structlog
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Gauge

from controller.runtime.kube import LEASES, ApiError, KubeClient
from controller.runtime.metrics import REGISTRY, per_registry
from controller.runtime.store import Obj

__all__ = ["JITTER_FACTOR", "LeaderElector", "LeadershipLost", "default_identity"]

_log = structlog.get_logger(__name__)

#: Candidates wait ``retry_period * (1 + JITTER_FACTOR * random())`` between attempts.
JITTER_FACTOR = 1.2

# Errors an attempt survives: the next attempt (or the deadline) decides.
_TRANSIENT = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


class LeadershipLost(Exception):
    """The Lease could not be renewed in time, or another holder took it over."""


def default_identity() -> str:
    """``<hostname>_<uuid4>``, unique per process as controller-runtime's default."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class _Attempt(enum.Enum):
    OURS = "ours"  # we hold the Lease now
    HELD = "held"  # another holder's record is still valid
    FAILED = "failed"  # an API error or a lost race; try again


@dataclass(frozen=True, slots=True)
class _Observation:
    lease: Obj  # the Lease as last read or written
    record: Obj  # its spec
    at: float  # local monotonic time we first saw ``record`` in this form


class _Link:
    """What the main loop and the lease thread tell each other, each on its own loop.

    Futures live on the main loop and are completed there (``to_main``); the thread's stop
    event lives on the thread's loop and is set there (``stop``).
    """

    def __init__(self, *, main: asyncio.AbstractEventLoop) -> None:
        self.main = main
        self.acquired: asyncio.Future[None] = main.create_future()
        self.lost: asyncio.Future[BaseException] = main.create_future()
        self.finished: asyncio.Future[None] = main.create_future()
        self.failure: BaseException | None = None
        self.leading: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    # main loop -> thread
    def attach(self, *, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        with self._lock:
            self._loop, self._stop = loop, stop
            if self._stop_requested:
                stop.set()

    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the thread's loop already closed
                loop.call_soon_threadsafe(event.set)

    # thread -> main loop
    def to_main(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the main loop already closed
            self.main.call_soon_threadsafe(callback, *args)

    def acquire(self) -> None:
        if not self.acquired.done():
            self.acquired.set_result(None)

    def lose(self, exc: BaseException) -> None:
        if self.leading is not None:
            self.leading.cancel()  # stop reconciling at once
        if not self.lost.done():
            self.lost.set_result(exc)

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.lose(exc)

    def finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def _wait_uncancellably(future: asyncio.Future[None]) -> None:
    """Wait for ``future`` even if cancelled meanwhile; re-raise the cancellation after."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _on_api(kube: KubeClient, api: client.ApiClient) -> KubeClient:
    """A shallow copy of ``kube`` (its class, settings, metrics and any state it carries)
    that sends its requests through ``api``, an ApiClient of another event loop."""
    twin = copy.copy(kube)
    twin.api = api
    return twin


@per_registry
def _master_status(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "leader_election_master_status",
        "1 while this process holds the leader-election lease 'name', 0 while on standby.",
        ["name"],
        registry=registry,
    )


def _micro_time() -> str:
    """Now as a Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _validate(*, lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    for label, value in (
        ("lease_duration", lease_duration),
        ("renew_deadline", renew_deadline),
        ("retry_period", retry_period),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"leader election: {label} must be a finite number > 0, got {value}")
    if not lease_duration > renew_deadline:
        raise ValueError(
            f"leader election: lease_duration ({lease_duration} s) must be greater than "
            f"renew_deadline ({renew_deadline} s)"
        )
    if not renew_deadline > JITTER_FACTOR * retry_period:
        raise ValueError(
            f"leader election: renew_deadline ({renew_deadline} s) must be greater than "
            f"{JITTER_FACTOR} * retry_period ({retry_period} s)"
        )


class LeaderElector:
    """Campaigns for one Lease and runs work while holding it; see the module docstring.

    One elector runs once: a second call to :meth:`run` raises ``RuntimeError``.
    """

    def __init__(
        self,
        *,
        kube: KubeClient,
        namespace: str,
        name: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = False,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _validate(
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period
        )
        if not namespace or not name:
            raise ValueError("leader election: namespace and name of the Lease are required")
        if identity == "":
            raise ValueError("leader election: identity must not be empty")
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        #: Set once this elector has acquired the Lease (it stays set after leadership ends).
        self.acquired = asyncio.Event()
        self._kube = kube
        #: The client the lease thread uses: ``kube``'s twin on that thread's own loop.
        self._lease_kube = kube
        self._clock = clock
        self._lease_seconds = max(1, math.ceil(lease_duration))
        self._is_leader = False
        self._observed: _Observation | None = None
        self._last_renewal: float | None = None  # clock() at the start of the last success
        self._started = False
        self._gauge = _master_status(registry).labels(name)
        self._gauge.set(0)
        self._log = _log.bind(lease=f"{namespace}/{name}", identity=self.identity)

    # ------------------------------------------------------------------ public

    @property
    def is_leader(self) -> bool:
        """True from acquiring the Lease until leadership ends (lost, released or stopped)."""
        return self._is_leader

    @property
    def leader_identity(self) -> str | None:
        """The holder of the Lease as last observed (``None`` if unknown or released)."""
        if self._observed is None:
            return None
        holder = self._observed.record.get("holderIdentity")
        return str(holder) if holder else None

    def check(self, *, max_tolerable_expired: float = 2.0) -> str | None:
        """A health check: ``None`` when fine, else why not.

        Fails when we believe we lead but our last successful renewal is older than
        ``lease_duration + max_tolerable_expired`` - the renew loop is stuck (a blocked event
        loop) and a standby may already lead.
        """
        if not self._is_leader or self._last_renewal is None:
            return None
        age = self._clock() - self._last_renewal
        if age > self.lease_duration + max_tolerable_expired:
            return (
                f"leader election: lease {self.namespace}/{self.name} not renewed for {age:.1f} s"
            )
        return None

    async def run(self, *, on_started_leading: Callable[[], Awaitable[None]]) -> None:
        """Acquire the Lease, run ``on_started_leading()`` while holding it; see module docs.

        Raises :class:`LeadershipLost` (after the leading task was cancelled and has ended)
        when leadership is lost; propagates cancellation; otherwise returns or raises what
        ``on_started_leading()`` returned or raised.
        """
        if self._started:
            raise RuntimeError("a LeaderElector runs once; create a new one")
        self._started = True
        link = _Link(main=asyncio.get_running_loop())
        thread = threading.Thread(
            target=self._thread_main,
            args=(link,),
            name=f"lease {self.namespace}/{self.name}",
            daemon=True,
        )
        thread.start()
        leading: asyncio.Task[None] | None = None
        try:
            started: set[asyncio.Future[Any]] = {link.acquired, link.finished}
            await asyncio.wait(started, return_when=FIRST_COMPLETED)
            if not link.acquired.done():  # the thread ended without the Lease: a bug
                raise link.failure or RuntimeError("the lease thread ended unexpectedly")
            self.acquired.set()
            self._log.info("became leader")

            async def lead() -> None:
                await on_started_leading()

            leading = asyncio.create_task(lead(), name=f"leading:{self.namespace}/{self.name}")
            link.leading = leading
            if link.lost.done():  # lost before the task existed
                leading.cancel()
            ending: set[asyncio.Future[Any]] = {leading, link.lost}
            try:
                await asyncio.wait(ending, return_when=FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Stop the work first; the thread keeps the Lease renewed while it winds down.
                leading.cancel()
                await asyncio.wait(ending, return_when=FIRST_COMPLETED)
                raise
        finally:
            # Lost leadership: the work was cancelled at once. Otherwise renewal stops now.
            if leading is not None:
                leading.cancel()
                await asyncio.wait({leading})
            link.stop()  # the thread steps down and, if asked to, releases the Lease
            await _wait_uncancellably(link.finished)
        assert leading is not None  # else the try block raised
        lost = link.lost.result() if link.lost.done() else None
        if lost is not None:
            raise lost
        failed = None if leading.cancelled() else leading.exception()
        if failed is not None:
            self._log.error("the leading task failed", error=repr(failed))
            raise failed
        if leading.cancelled():  # cancelled by someone else than us
            raise asyncio.CancelledError

    # ------------------------------------------------------------------ the lease thread

    def _thread_main(self, link: _Link) -> None:
        """The lease thread: its own event loop, its own API client, until told to stop."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._campaign(link, loop=loop))
        except BaseException as exc:  # a bug: report it rather than die silently
            link.to_main(link.fail, exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                link.to_main(link.finish)

    async def _campaign(self, link: _Link, *, loop: asyncio.AbstractEventLoop) -> None:
        stop = asyncio.Event()
        link.attach(loop=loop, stop=stop)
        async with client.ApiClient(configuration=self._kube.api.configuration) as api:
            self._lease_kube = _on_api(self._kube, api)
            stopping = asyncio.create_task(stop.wait())
            try:
                acquiring = asyncio.create_task(self._acquire())
                await asyncio.wait({acquiring, stopping}, return_when=FIRST_COMPLETED)
                if not acquiring.done():
                    acquiring.cancel()
                    await asyncio.wait({acquiring})
                    return
                acquiring.result()
                self._is_leader = True
                self._gauge.set(1)
                link.to_main(link.acquire)
                renewing = asyncio.create_task(self._renew_loop())
                await asyncio.wait({renewing, stopping}, return_when=FIRST_COMPLETED)
                if renewing.done():
                    lost = renewing.exception()
                    self._step_down()
                    link.to_main(link.lose, lost)
                    return
                renewing.cancel()
                await asyncio.wait({renewing})
                still_holder = self._is_leader
                self._step_down()
                if self.release_on_cancel and still_holder:
                    await self._release()
            finally:
                stopping.cancel()
                await asyncio.wait({stopping})

    # ------------------------------------------------------------------ loops

    async def _acquire(self) -> None:
        self._log.info("waiting to acquire the lease")
        while True:
            started = self._clock()
            result = await self._attempt(timeout=self.renew_deadline)
            if result is _Attempt.OURS:
                self._last_renewal = started
                return
            delay = self.retry_period * (1 + JITTER_FACTOR * random.random())
            if result is _Attempt.HELD and self._observed is not None:
                # Wake when the holder's lease expires by our clock, if that is sooner.
                expires_in = self._expires_at(self._observed) - self._clock()
                delay = min(delay, max(expires_in, 0.0) + 0.001)
            await asyncio.sleep(delay)

    async def _renew_loop(self) -> NoReturn:
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                assert self._last_renewal is not None
                deadline = self._last_renewal + self.renew_deadline
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._lose("the lease was not renewed within the renew deadline")
                started = self._clock()
                result = await self._attempt(timeout=remaining)
                if result is _Attempt.OURS:
                    self._last_renewal = started
                    break
                if result is _Attempt.HELD:
                    self._lose(f"the lease is now held by {self.leader_identity}")
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._lose("the lease was not renewed within the renew deadline")
                await asyncio.sleep(min(self.retry_period, remaining))

    def _lose(self, why: str) -> NoReturn:
        self._step_down()
        self._log.error("leadership lost", reason=why)
        raise LeadershipLost(f"leader election lost for lease {self.namespace}/{self.name}: {why}")

    def _step_down(self) -> None:
        self._is_leader = False
        self._gauge.set(0)

    # ----------------------------------------------------------------- attempts

    async def _attempt(self, *, timeout: float) -> _Attempt:
        try:
            async with asyncio.timeout(timeout):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            self._log.warning("lease request timed out", timeout=round(timeout, 3))
            return _Attempt.FAILED

    async def _try_acquire_or_renew(self) -> _Attempt:
        now = _micro_time()
        observed = self._observed
        if self._is_leader and observed is not None and self._valid(observed):
            record = {
                **observed.record,
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds,
                "renewTime": now,
            }
            try:
                await self._replace(lease=observed.lease, record=record)
                return _Attempt.OURS
            except _TRANSIENT as exc:
                self._log.info("fast renewal failed, reading the lease", error=str(exc))

        try:
            lease = await self._lease_kube.get(LEASES, name=self.name, namespace=self.namespace)
        except ApiError as exc:
            if not exc.not_found:
                self._log.warning("could not read the lease", error=str(exc))
                return _Attempt.FAILED
            return await self._create(now=now)
        except _TRANSIENT as exc:
            self._log.warning("could not read the lease", error=str(exc))
            return _Attempt.FAILED

        observed = self._observe(lease)
        holder = observed.record.get("holderIdentity") or ""
        if holder and holder != self.identity and self._valid(observed):
            return _Attempt.HELD
        record = {
            **observed.record,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._lease_seconds,
            "renewTime": now,
        }
        if holder != self.identity:
            record["acquireTime"] = now
            record["leaseTransitions"] = int(observed.record.get("leaseTransitions") or 0) + 1
        try:
            await self._replace(lease=lease, record=record)
        except _TRANSIENT as exc:
            lost_race = isinstance(exc, ApiError) and exc.conflict
            (self._log.debug if lost_race else self._log.warning)(
                "could not write the lease", error=str(exc)
            )
            return _Attempt.FAILED
        if holder != self.identity:
            self._log.info("acquired the lease", previous_holder=holder or None)
        return _Attempt.OURS

    async def _create(self, *, now: str) -> _Attempt:
        body: Obj = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self._lease_kube.create(LEASES, namespace=self.namespace, body=body)
        except _TRANSIENT as exc:
            lost_race = isinstance(exc, ApiError) and exc.conflict
            (self._log.debug if lost_race else self._log.warning)(
                "could not create the lease", error=str(exc)
            )
            return _Attempt.FAILED
        self._observe(created)
        self._log.info("created the lease")
        return _Attempt.OURS

    async def _replace(self, *, lease: Obj, record: Obj) -> None:
        """PUT ``record`` as the Lease's spec, conditional on ``lease``'s resourceVersion."""
        metadata = {k: v for k, v in lease.get("metadata", {}).items() if k != "managedFields"}
        body: Obj = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": metadata,
            "spec": record,
        }
        written = await self._lease_kube.request(
            method="PUT",
            path=LEASES.path(namespace=self.namespace, name=self.name),
            body=body,
            query={"fieldManager": self._lease_kube.field_manager},
        )
        self._observe(written)

    async def _release(self) -> None:
        try:
            async with asyncio.timeout(self.renew_deadline):
                while True:
                    observed = self._observed
                    if observed is None or observed.record.get("holderIdentity") != self.identity:
                        return
                    now = _micro_time()
                    record = {
                        **observed.record,
                        "holderIdentity": "",
                        "leaseDurationSeconds": 1,
                        "acquireTime": now,
                        "renewTime": now,
                    }
                    try:
                        await self._replace(lease=observed.lease, record=record)
                    except _TRANSIENT as exc:
                        self._log.info("release failed, retrying", error=str(exc))
                        if not (isinstance(exc, ApiError) and exc.conflict):
                            await asyncio.sleep(self.retry_period)
                        try:
                            lease = await self._lease_kube.get(
                                LEASES, name=self.name, namespace=self.namespace
                            )
                        except _TRANSIENT as get_exc:
                            if isinstance(get_exc, ApiError) and get_exc.not_found:
                                return
                            continue
                        self._observe(lease)
                        continue
                    self._log.info("released the lease")
                    return
        except TimeoutError:
            self._log.warning(
                "could not release the lease in time; it expires on its own",
                lease_duration=self._lease_seconds,
            )

    # ------------------------------------------------------------ observation

    def _observe(self, lease: Obj) -> _Observation:
        record = lease.get("spec") or {}
        previous = self._observed
        if previous is not None and previous.record == record:
            observed = _Observation(lease=lease, record=record, at=previous.at)
        else:
            observed = _Observation(lease=lease, record=record, at=self._clock())
            before = previous.record.get("holderIdentity") if previous is not None else None
            holder = record.get("holderIdentity")
            if holder != before and holder and holder != self.identity:
                self._log.info("observed a new leader", leader=holder)
        self._observed = observed
        return observed

    def _expires_at(self, observed: _Observation) -> float:
        seconds = observed.record.get("leaseDurationSeconds")
        duration = (
            float(seconds) if isinstance(seconds, int) and seconds > 0 else self.lease_duration
        )
        return observed.at + duration

    def _valid(self, observed: _Observation) -> bool:
        return self._expires_at(observed) > self._clock()
