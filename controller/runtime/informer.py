"""List + watch one resource into a :class:`~controller.runtime.store.Store`, and tell handlers.

The loop follows client-go's reflector:

1. LIST (paginated, a consistent read) and replace the cache. Objects that were cached but
   are absent from the new list were deleted while we were not watching: each gets a
   ``DELETED`` event with ``state_unknown=True`` (client-go's ``DeletedFinalStateUnknown``), so
   no deletion is lost across a gap.
2. WATCH from the list's resourceVersion with bookmarks and a randomised server timeout
   (5-10 min). Every event, bookmarks included, advances the resourceVersion.
3. A stream that ends normally (server timeout) is re-watched from the last resourceVersion,
   without relisting. ``410 Gone`` (an expired resourceVersion, as after etcd compaction)
   relists. Transport errors, throttling and server errors back off with jitter (0.8 s
   doubling to 30 s) and re-watch; a LIST that fails is retried the same way.
4. An inactivity timeout (default 70 s of silence) abandons a watch whose connection went
   half-open and could otherwise hang forever; the next watch resumes from the last
   resourceVersion.

Handlers run synchronously, in event order, on the informer's task; they must be quick
(map the event to work-queue keys). A handler that raises is logged and does not stop the
informer. ``wait_for_sync()`` returns once the first LIST has been applied.

Invariants: the store holds at most one object per key; an event is dispatched only after
the store reflects it; a watch event that repeats the cached resourceVersion (a replay after
reconnect) is dropped, so handlers never see duplicates of what they already saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog

from controller.runtime.kube import ApiError, KubeClient, ResourceLike, resource_name
from controller.runtime.store import Obj, Store, cache_form, object_key

EventType = Literal["ADDED", "MODIFIED", "DELETED", "SYNC"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class InformerEvent:
    """One change seen by an informer."""

    type: EventType
    obj: Obj
    old: Obj | None = None
    #: Part of the first LIST (a cold start), as opposed to a change seen while watching.
    initial: bool = False
    #: A DELETED inferred from a relist: the object's final state may be stale.
    state_unknown: bool = False

    @property
    def key(self) -> str:
        return object_key(self.obj)


Handler = Callable[[InformerEvent], None]


class Informer:
    """One resource's list+watch loop, cache and event handlers; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        resource: ResourceLike,
        namespace: str | None = None,
        label_selector: str | None = None,
        resync_period: float | None = None,
        inactivity_timeout: float = 70.0,
        watch_timeout_range: tuple[int, int] = (300, 600),
        backoff_initial: float = 0.8,
        backoff_max: float = 30.0,
        page_size: int = 500,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.store = Store()
        self._handlers: list[Handler] = []
        self._resync_period = resync_period
        self._inactivity_timeout = inactivity_timeout
        self._watch_timeout_range = watch_timeout_range
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._page_size = page_size
        self._synced = asyncio.Event()
        self.resource_version: str | None = None
        #: Counters for tests and diagnostics.
        self.lists = 0
        self.watches = 0
        self._log = _log.bind(resource=resource_name(resource), namespace=namespace or "")

    # ------------------------------------------------------------ public API

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` for every future event (and, once synced, nothing retroactive)."""
        self._handlers.append(handler)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Wait until the first LIST is applied (bound it with ``asyncio.timeout``)."""
        await self._synced.wait()

    async def run(self) -> None:
        """List and watch until cancelled."""
        resync = (
            asyncio.create_task(self._resync_loop(), name=f"resync {resource_name(self.resource)}")
            if self._resync_period
            else None
        )
        try:
            await self._list_and_watch_forever()
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync

    # ------------------------------------------------------------- the loop

    async def _list_and_watch_forever(self) -> None:
        backoff = self._backoff_initial
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                started = time.monotonic()
                got_events = await self._watch()
                if got_events or time.monotonic() - started > 1.0:
                    backoff = self._backoff_initial
                    continue
                # A watch that ends at once with nothing in it: don't spin.
                self._log.debug("very short watch", seconds=time.monotonic() - started)
            except ApiError as exc:
                if exc.gone:
                    self._log.info("resourceVersion expired, relisting", rv=self.resource_version)
                    need_list = True
                    backoff = self._backoff_initial
                    continue
                self._log.warning("list/watch failed", status=exc.status, error=exc.message)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self._log.warning(
                    "list/watch connection failed", error=f"{exc.__class__.__name__}: {exc}"
                )
            delay = random.uniform(backoff / 2, backoff)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self._backoff_max)

    async def _list(self) -> None:
        items: list[Obj] = []
        continue_token: str | None = None
        while True:
            page = await self.kube.list(
                self.resource,
                namespace=self.namespace,
                label_selector=self.label_selector,
                limit=self._page_size,
                continue_token=continue_token,
            )
            items.extend(page.get("items", []))
            meta = page.get("metadata", {})
            continue_token = meta.get("continue")
            if not continue_token:
                list_rv = str(meta.get("resourceVersion", ""))
                break
        self.lists += 1
        initial = not self._synced.is_set()
        api_version = self.resource.api_version
        seen: set[str] = set()
        events: list[InformerEvent] = []
        for item in items:
            obj = cache_form(item)
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", self.resource.kind)
            key = object_key(obj)
            seen.add(key)
            old = self.store.get(key)
            if old is not None and _rv(old) == _rv(obj):
                continue
            self.store.upsert(obj)
            events.append(
                InformerEvent(
                    type="ADDED" if old is None else "MODIFIED", obj=obj, old=old, initial=initial
                )
            )
        for key in list(self.store):
            if key not in seen:
                gone = self.store.delete(key)
                assert gone is not None
                events.append(InformerEvent(type="DELETED", obj=gone, state_unknown=True))
        self.resource_version = list_rv
        self._synced.set()
        for event in events:
            self._dispatch(event)

    async def _watch(self) -> bool:
        """One watch request; True if it delivered any event."""
        assert self.resource_version is not None
        self.watches += 1
        low, high = self._watch_timeout_range
        stream = self.kube.watch(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            resource_version=self.resource_version,
            timeout_seconds=random.randint(low, high),
        )
        got = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self._inactivity_timeout):
                        raw = await anext(stream)
                except StopAsyncIteration:
                    return got
                except TimeoutError:
                    self._log.info("watch inactive, reconnecting", seconds=self._inactivity_timeout)
                    return got
                got = True
                self._apply(raw)
        finally:
            await stream.aclose()

    def _apply(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        obj = raw.get("object") or {}
        if kind == "ERROR":
            raise ApiError(
                status=int(obj.get("code", 500)),
                reason=str(obj.get("reason", "")),
                message=str(obj.get("message", "")),
                body=obj,
            )
        rv = _rv(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        obj = cache_form(obj)
        key = object_key(obj)
        old = self.store.get(key)
        if rv:
            self.resource_version = rv
        if kind == "DELETED":
            if old is None:
                return
            self.store.delete(key)
            self._dispatch(InformerEvent(type="DELETED", obj=obj, old=old))
            return
        if old is not None and _rv(old) == rv:
            return
        self.store.upsert(obj)
        self._dispatch(InformerEvent(type="ADDED" if old is None else "MODIFIED", obj=obj, old=old))

    def _dispatch(self, event: InformerEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                self._log.exception("event handler failed", event_type=event.type, key=event.key)

    async def _resync_loop(self) -> None:
        assert self._resync_period is not None
        await self._synced.wait()
        while True:
            await asyncio.sleep(self._resync_period * random.uniform(0.9, 1.1))
            for obj in self.store.values():
                self._dispatch(InformerEvent(type="SYNC", obj=obj))


def _rv(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
