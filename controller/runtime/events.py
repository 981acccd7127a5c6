"""Kubernetes Events (``events.k8s.io/v1``) about objects, recorded like client-go's recorder.

``recorder.event(obj, type=..., reason=..., message=...)`` returns at once and never raises:
it updates in-memory bookkeeping and queues a write; a background task started by
``async with recorder:`` writes to the API server, one request at a time.

What is written:

- The Event lives in the object's namespace (``default`` for a cluster-scoped object, as the
  API requires); ``regarding`` is the object's reference (apiVersion, kind, namespace, name,
  uid, resourceVersion); ``reportingController``/``reportingInstance`` are the recorder's
  ``component`` and ``instance``; ``note`` is the message (cut to the API's 1 kB limit).
- Correlation: occurrences with the same object (by uid, kind, namespace, name), type,
  reason, action, note and related object, each within ``series_window`` of the previous one,
  are one Event. The first occurrence creates it; later ones raise ``series.count`` (and
  ``series.lastObservedTime``) with a merge PATCH. Occurrences that arrive while a write is
  queued fold into it, and one Event is patched at most every ``series_patch_interval``
  seconds, so a hot loop costs a PATCH per interval, not one per call.
- Spam filter: each object has a token bucket (``spam_burst`` tokens, one more every
  ``spam_refill_period`` seconds; 25 and 5 min by default). A new Event takes a token and is
  dropped without one; repeats of an existing Event cost nothing (they only move a counter).

Lifecycle: ``async with recorder:`` starts the writer; on exit every queued create or patch
is attempted at once (the patch interval no longer applies) within ``flush_timeout`` seconds,
then the writer is stopped and whatever is left is logged as lost. Events recorded before
entry are written after it; events recorded after exit are dropped with a warning. A
recorder is entered once.

Failure behaviour: nothing is raised to the caller. A write that fails transiently (429, 5xx,
transport errors) is retried with backoff, at most ``max_attempts`` times; a permanent failure
(forbidden, a namespace that does not exist, invalid) drops that write; an Event that has
vanished from the server (Events expire) is created afresh on its next write. Invalid
arguments (no ``metadata.name``, an unknown type) are logged and dropped. Every failure is
logged with structlog. Memory is bounded: at most ``max_events`` Events are remembered for
correlation and as many objects for the spam filter (least recently used go first), and at
most ``max_pending`` writes are queued (more new Events are dropped with a warning).

Call :meth:`EventRecorder.event` from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import structlog

from controller.runtime.kube import EVENTS, ApiError, KubeClient
from controller.runtime.store import Obj

__all__ = ["EventRecorder", "EventType"]

_log = structlog.get_logger(__name__)

EventType = Literal["Normal", "Warning"]

_NOTE_LIMIT = 1024  # bytes, the API's limit on ``note``
_FIELD_LIMIT = 128  # reason, action, reportingInstance
_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")

# (apiVersion, kind, namespace, name, uid) of the object an Event is about.
_ObjectId = tuple[str, str, str, str, str]
# object, type, reason, action, note, related object
_Key = tuple[_ObjectId, str, str, str, str, _ObjectId | None]


def _micro_time() -> str:
    """Now as a Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reference(obj: Obj) -> Obj:
    """An ObjectReference to ``obj``; raises ``ValueError`` when it has no name."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("the object has no metadata.name")
    ref: Obj = {"name": str(name)}
    for key, value in (
        ("apiVersion", obj.get("apiVersion")),
        ("kind", obj.get("kind")),
        ("namespace", meta.get("namespace")),
        ("uid", meta.get("uid")),
        ("resourceVersion", meta.get("resourceVersion")),
    ):
        if value:
            ref[key] = str(value)
    return ref


def _object_id(ref: Obj) -> _ObjectId:
    return (
        ref.get("apiVersion", ""),
        ref.get("kind", ""),
        ref.get("namespace", ""),
        ref["name"],
        ref.get("uid", ""),
    )


def _truncate(text: str, *, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def _event_name(object_name: str) -> str:
    """A fresh Event name: the object's name (as a DNS subdomain) and 16 random hex digits."""
    base = _NAME_CHARS.sub("-", object_name.lower()).strip(".-")[:200] or "event"
    return f"{base}.{secrets.token_hex(8)}"


@dataclass(eq=False)
class _Series:
    """One Event on the server (or about to be) and the occurrences it stands for."""

    key: _Key
    namespace: str
    body: Obj  # the Event as first created, without name and series
    object_name: str
    last_seen: float  # monotonic, latest occurrence
    last_observed: str  # MicroTime, latest occurrence
    count: int = 1
    name: str | None = None  # on the server, once created
    written: int = 0  # the count the server has
    last_write: float = field(default=-float("inf"))  # monotonic, last successful write
    attempts: int = 0  # failed attempts of the current write


@dataclass
class _Bucket:
    tokens: float
    updated: float


class EventRecorder:
    """Records Events in the background; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        component: str = "machinepool-controller",
        instance: str | None = None,
        series_window: float = 360.0,
        series_patch_interval: float = 5.0,
        spam_burst: int = 25,
        spam_refill_period: float = 300.0,
        flush_timeout: float = 5.0,
        max_attempts: int = 5,
        max_pending: int = 1000,
        max_events: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not component:
            raise ValueError("event recorder: component must not be empty")
        self.component = component
        self.instance = _truncate(instance or socket.gethostname(), limit=_FIELD_LIMIT)
        self._kube = kube
        self._series_window = series_window
        self._patch_interval = series_patch_interval
        self._spam_burst = spam_burst
        self._spam_refill = spam_refill_period
        self._flush_timeout = flush_timeout
        self._max_attempts = max_attempts
        self._max_pending = max_pending
        self._max_events = max_events
        self._clock = clock
        self._series: OrderedDict[_Key, _Series] = OrderedDict()
        self._buckets: OrderedDict[_ObjectId, _Bucket] = OrderedDict()
        self._pending: dict[_Series, float] = {}  # series -> monotonic time it is due
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._entered = False
        self._closing = False

    # ------------------------------------------------------------------ public

    def event(
        self,
        obj: Obj,
        *,
        type: EventType,
        reason: str,
        message: str,
        action: str = "Reconcile",
        related: Obj | None = None,
    ) -> None:
        """Record one occurrence about ``obj``; returns at once and never raises."""
        try:
            self._record(
                obj, type=type, reason=reason, message=message, action=action, related=related
            )
        except Exception as exc:
            _log.error(
                "event not recorded",
                error=str(exc),
                object=(obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None,
                reason=reason,
            )

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an EventRecorder is entered once")
        self._entered = True
        self._writer = asyncio.create_task(self._write_loop(), name="event-recorder")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        writer = self._writer
        assert writer is not None
        try:
            async with asyncio.timeout(self._flush_timeout):
                await asyncio.shield(writer)
        except TimeoutError:
            _log.warning("events not written before the flush timeout", lost=len(self._pending))
        finally:
            writer.cancel()
            await asyncio.wait({writer})

    # --------------------------------------------------------------- recording

    def _record(
        self,
        obj: Obj,
        *,
        type: EventType,
        reason: str,
        message: str,
        action: str,
        related: Obj | None,
    ) -> None:
        if self._closing:
            _log.warning("event recorder is closed; event dropped", reason=reason)
            return
        if type not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        if not reason or not action:
            raise ValueError("an event needs a reason and an action")
        regarding = _reference(obj)
        related_ref = _reference(related) if related is not None else None
        reason = _truncate(reason, limit=_FIELD_LIMIT)
        action = _truncate(action, limit=_FIELD_LIMIT)
        note = _truncate(message, limit=_NOTE_LIMIT)
        object_id = _object_id(regarding)
        key: _Key = (
            object_id,
            type,
            reason,
            action,
            note,
            _object_id(related_ref) if related_ref else None,
        )
        now = self._clock()
        _log.debug("event", object=regarding["name"], type=type, reason=reason, note=note)

        series = self._series.get(key)
        if series is not None and now - series.last_seen <= self._series_window:
            series.count += 1
            series.last_seen = now
            series.last_observed = _micro_time()
            self._series.move_to_end(key)
            self._schedule(series, due=now)
            return

        if not self._take_token(object_id, now=now):
            _log.debug("event dropped by the spam filter", object=regarding["name"], reason=reason)
            return
        if len(self._pending) >= self._max_pending:
            _log.warning("too many events queued; event dropped", reason=reason)
            return
        observed = _micro_time()
        body: Obj = {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "eventTime": observed,
            "reportingController": self.component,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "type": type,
            "note": note,
            "regarding": regarding,
        }
        if related_ref is not None:
            body["related"] = related_ref
        series = _Series(
            key=key,
            namespace=regarding.get("namespace") or "default",
            body=body,
            object_name=regarding["name"],
            last_seen=now,
            last_observed=observed,
        )
        self._series[key] = series
        self._series.move_to_end(key)
        while len(self._series) > self._max_events:
            self._series.popitem(last=False)
        self._schedule(series, due=now)

    def _take_token(self, object_id: _ObjectId, *, now: float) -> bool:
        bucket = self._buckets.get(object_id)
        if bucket is None:
            bucket = _Bucket(tokens=float(self._spam_burst), updated=now)
            self._buckets[object_id] = bucket
            while len(self._buckets) > self._max_events:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(object_id)
            if self._spam_refill > 0:
                refill = (now - bucket.updated) / self._spam_refill
                bucket.tokens = min(float(self._spam_burst), bucket.tokens + refill)
            bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _schedule(self, series: _Series, *, due: float) -> None:
        """Queue a write of ``series`` (a no-op if one is queued: it will carry the count)."""
        if series not in self._pending:
            self._pending[series] = due
            self._wake.set()

    # ----------------------------------------------------------------- writing

    async def _write_loop(self) -> None:
        while True:
            series = await self._next_due()
            if series is None:
                return
            try:
                await self._write(series)
            except Exception:  # a bug here must not stop the recorder
                _log.exception("event writer failed", reason=series.body.get("reason"))

    async def _next_due(self) -> _Series | None:
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self._pending:
                now = self._clock()
                series, due = min(self._pending.items(), key=lambda item: item[1])
                if series.name is not None and not self._closing:
                    due = max(due, series.last_write + self._patch_interval)
                if self._closing or due <= now:
                    del self._pending[series]
                    return series
                self._pending[series] = due
                timeout = due - now
            elif self._closing:
                return None
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _write(self, series: _Series) -> None:
        count, observed = series.count, series.last_observed
        log = _log.bind(
            namespace=series.namespace,
            object=series.object_name,
            reason=series.body["reason"],
            count=count,
        )
        try:
            if series.name is None:
                await self._create(series, count=count, observed=observed)
            elif count > series.written:
                await self._patch(series, count=count, observed=observed)
            else:
                return
        except ApiError as exc:
            if exc.not_found and series.name is not None:
                log.info("event gone from the server; creating it again")
                series.name, series.written = None, 0
                self._schedule(series, due=self._clock())
            elif exc.conflict and series.name is None:
                self._schedule(series, due=self._clock())  # a name clash: a new name
            elif exc.retryable:
                self._retry(series, log=log, error=exc)
            else:
                log.warning("event not written", error=str(exc))
                self._forget(series)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._retry(series, log=log, error=exc)
            return
        series.written = count
        series.attempts = 0
        series.last_write = self._clock()
        if series.count > count:
            self._schedule(series, due=self._clock())

    async def _create(self, series: _Series, *, count: int, observed: str) -> None:
        body: Obj = {
            **series.body,
            "metadata": {"name": _event_name(series.object_name), "namespace": series.namespace},
        }
        if count > 1:
            body["series"] = {"count": count, "lastObservedTime": observed}
        created = await self._kube.create(EVENTS, namespace=series.namespace, body=body)
        series.name = str(created["metadata"]["name"])

    async def _patch(self, series: _Series, *, count: int, observed: str) -> None:
        assert series.name is not None
        patch: dict[str, Any] = {"series": {"count": count, "lastObservedTime": observed}}
        await self._kube.merge_patch(
            EVENTS, name=series.name, namespace=series.namespace, patch=patch
        )

    def _retry(self, series: _Series, *, log: Any, error: BaseException) -> None:
        series.attempts += 1
        if series.attempts >= self._max_attempts:
            log.warning("event not written; giving up", error=str(error), attempts=series.attempts)
            series.attempts = 0
            self._forget(series)
            return
        backoff = min(0.5 * 2 ** (series.attempts - 1), 10.0)
        log.info("event write failed; retrying", error=str(error), backoff=backoff)
        self._schedule(series, due=self._clock() + backoff)

    def _forget(self, series: _Series) -> None:
        """Stop correlating with ``series``: the next occurrence starts a new Event."""
        if self._series.get(series.key) is series:
            del self._series[series.key]
