"""List + watch one resource into a :class:`~controller.runtime.store.Store`, and tell handlers.

An informer watches one resource cluster-wide (``namespace=None``), in one namespace, or in
several (a tuple of names: ``run --namespace a,b``). Several namespaces are several
list+watch loops (one per namespace, each with its own resourceVersion, as controller-runtime's
multi-namespace cache) feeding ONE store and ONE handler list, so callers, indexes and keys
(``namespace/name``) are the same whatever the scope; the informer is synced once every
namespace's first LIST is applied. A cluster-scoped resource is always watched whole. No
request ever leaves the namespaces given, so a controller limited to them needs RBAC in them
only.

Each loop follows client-go's reflector:

1. LIST (paginated, a consistent read) and replace that loop's part of the cache (its
   namespace; the whole cache cluster-wide). Objects that were cached but are absent from
   the new list were deleted while we were not watching: each gets a ``DELETED`` event with
   ``state_unknown=True`` (client-go's ``DeletedFinalStateUnknown``), so no deletion is lost
   across a gap. A relist in one namespace never touches another namespace's objects.
2. WATCH from the list's resourceVersion with bookmarks and a randomised server timeout
   (5-10 min). Every event, bookmarks included, advances the resourceVersion.
3. A stream that ends normally (server timeout) is re-watched from the last resourceVersion,
   without relisting. ``410 Gone`` (an expired resourceVersion, as after etcd compaction)
   relists. Transport errors, throttling and server errors back off with jitter (0.8 s
   doubling to 30 s) and re-watch; a LIST that fails is retried the same way (a 403 in one
   namespace, e.g. RBAC missing there, is logged and retried; the other namespaces go on).
4. An inactivity timeout (default 70 s of silence) abandons a watch whose connection went
   half-open and could otherwise hang forever; the next watch resumes from the last
   resourceVersion.

Handlers run synchronously, in event order, on the informer's task; they must be quick
(map the event to work-queue keys). A handler that raises is logged and does not stop the
informer. ``wait_for_sync()`` returns once the first LIST of every namespace has been applied.

Invariants: the store holds at most one object per key; an event is dispatched only after
the store reflects it; a watch event that repeats the cached resourceVersion (a replay after
reconnect) is dropped, so handlers never see duplicates of what they already saw; the
periodic resync dispatches each cached object once per period, whatever the namespaces.
"""

from __future__ import annotations

import asyncio
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


#: What an informer watches: every namespace (None), one, or several (a tuple of names).
Namespaces = str | tuple[str, ...] | None


def namespace_scope(namespaces: Namespaces) -> tuple[str | None, ...]:
    """The list+watch loops ``namespaces`` needs: ``(None,)`` for cluster-wide, else one per
    distinct name, sorted (so ``("b", "a", "a")`` and ``("a", "b")`` are one scope). An empty
    tuple means every namespace, like an empty ``--namespace``."""
    if namespaces is None or isinstance(namespaces, str):
        return (namespaces or None,)
    names = tuple(sorted({n for n in namespaces if n}))
    return names or (None,)


class Informer:
    """One resource's list+watch loops, cache and event handlers; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        resource: ResourceLike,
        namespace: Namespaces = None,
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
        # A cluster-scoped resource has no namespaces: one loop, whatever was asked.
        scope = namespace_scope(namespace if resource.namespaced else None)
        #: ``None`` (cluster-wide), the one namespace, or the sorted tuple of namespaces.
        self.namespace: Namespaces = (
            scope[0] if len(scope) == 1 else tuple(n for n in scope if n is not None)
        )
        self.label_selector = label_selector
        self.store = Store()
        self._handlers: list[Handler] = []
        self._resync_period = resync_period
        self._reflectors = [
            _Reflector(
                informer=self,
                namespace=ns,
                inactivity_timeout=inactivity_timeout,
                watch_timeout_range=watch_timeout_range,
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
                page_size=page_size,
            )
            for ns in scope
        ]
        self._synced = asyncio.Event()

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

    @property
    def lists(self) -> int:
        """LISTs done, over every namespace (for tests and diagnostics)."""
        return sum(r.lists for r in self._reflectors)

    @property
    def watches(self) -> int:
        """WATCH requests made, over every namespace (for tests and diagnostics)."""
        return sum(r.watches for r in self._reflectors)

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch resumes from; ``None`` with several namespaces
        (each has its own)."""
        return self._reflectors[0].resource_version if len(self._reflectors) == 1 else None

    async def run(self) -> None:
        """List and watch (every namespace) until cancelled."""
        name = resource_name(self.resource)
        async with asyncio.TaskGroup() as tasks:
            for reflector in self._reflectors:
                tasks.create_task(
                    reflector.list_and_watch_forever(),
                    name=f"list+watch {name} {reflector.namespace or '(all)'}",
                )
            if self._resync_period:
                tasks.create_task(self._resync_loop(), name=f"resync {name}")

    # ------------------------------------------------------------- internals

    def _reflector_synced(self) -> None:
        if all(r.listed for r in self._reflectors):
            self._synced.set()

    def _dispatch(self, event: InformerEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                _log.exception(
                    "event handler failed",
                    resource=resource_name(self.resource),
                    event_type=event.type,
                    key=event.key,
                )

    async def _resync_loop(self) -> None:
        assert self._resync_period is not None
        await self._synced.wait()
        while True:
            await asyncio.sleep(self._resync_period * random.uniform(0.9, 1.1))
            for obj in self.store.values():
                self._dispatch(InformerEvent(type="SYNC", obj=obj))


class _Reflector:
    """The list+watch loop of one namespace (or of all), writing into its informer's store."""

    def __init__(
        self,
        *,
        informer: Informer,
        namespace: str | None,
        inactivity_timeout: float,
        watch_timeout_range: tuple[int, int],
        backoff_initial: float,
        backoff_max: float,
        page_size: int,
    ) -> None:
        self._informer = informer
        self.namespace = namespace
        self._inactivity_timeout = inactivity_timeout
        self._watch_timeout_range = watch_timeout_range
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._page_size = page_size
        self._prefix = f"{namespace}/" if namespace else ""
        self.listed = False
        self.resource_version: str | None = None
        self.lists = 0
        self.watches = 0
        self._log = _log.bind(resource=resource_name(informer.resource), namespace=namespace or "")

    async def list_and_watch_forever(self) -> None:
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

    def _mine(self, key: str) -> bool:
        """Whether ``key`` is in this loop's part of the shared store."""
        return key.startswith(self._prefix)

    async def _list(self) -> None:
        informer = self._informer
        store = informer.store
        items: list[Obj] = []
        continue_token: str | None = None
        while True:
            page = await informer.kube.list(
                informer.resource,
                namespace=self.namespace,
                label_selector=informer.label_selector,
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
        initial = not self.listed
        api_version = informer.resource.api_version
        seen: set[str] = set()
        events: list[InformerEvent] = []
        for item in items:
            obj = cache_form(item)
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", informer.resource.kind)
            key = object_key(obj)
            seen.add(key)
            old = store.get(key)
            if old is not None and _rv(old) == _rv(obj):
                continue
            store.upsert(obj)
            events.append(
                InformerEvent(
                    type="ADDED" if old is None else "MODIFIED", obj=obj, old=old, initial=initial
                )
            )
        for key in list(store):
            if key not in seen and self._mine(key):
                gone = store.delete(key)
                assert gone is not None
                events.append(InformerEvent(type="DELETED", obj=gone, state_unknown=True))
        self.resource_version = list_rv
        self.listed = True
        informer._reflector_synced()
        for event in events:
            informer._dispatch(event)

    async def _watch(self) -> bool:
        """One watch request; True if it delivered any event."""
        assert self.resource_version is not None
        self.watches += 1
        low, high = self._watch_timeout_range
        stream = self._informer.kube.watch(
            self._informer.resource,
            namespace=self.namespace,
            label_selector=self._informer.label_selector,
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
        store = self._informer.store
        obj = cache_form(obj)
        key = object_key(obj)
        old = store.get(key)
        if rv:
            self.resource_version = rv
        if kind == "DELETED":
            if old is None:
                return
            store.delete(key)
            self._informer._dispatch(InformerEvent(type="DELETED", obj=obj, old=old))
            return
        if old is not None and _rv(old) == rv:
            return
        store.upsert(obj)
        self._informer._dispatch(
            InformerEvent(type="ADDED" if old is None else "MODIFIED", obj=obj, old=old)
        )


def _rv(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
