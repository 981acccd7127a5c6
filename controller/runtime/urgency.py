"""Work priority: the one policy that decides which key a controller reconciles first.

Every priority a controller gives a key comes from here; :class:`KeyPriorities` is what a
:class:`~controller.runtime.controller.Controller` calls, and the API client only reports its
writes through a hook (:func:`note_write`, installed by the manager; the client does not
import this module). Three levels, highest first:

- **Urgent** (:data:`URGENT_PRIORITY`): a key marked by *intent* (below) or by the chain of
  work intent set off, for a window.
- **News** (:data:`~controller.runtime.workqueue.HIGH_PRIORITY`, :func:`event_priority`): a
  watched event that is not progress: a new or deleted object, a generation change, a
  label, annotation, finalizer, owner or deletion change, or any change of an object without
  a generation (Nodes).
- **Progress and backlog** (:data:`~controller.runtime.workqueue.LOW_PRIORITY`): an
  informer's initial list, resyncs, a status-only change (what the controllers' own writes
  produce while a fleet converges), and a reconcile's ``requeue_after`` poll of a key that
  is not urgent. A failed reconcile is retried at the priority it ran with.

News puts real changes ahead of the bulk work. That is not enough during a cold start: the
controllers' own creations (an infra machine and a Machine per instance, their Nodes) are
news too, so a person's ``kubectl scale`` still waited behind the fleet's work at every hop
of the chain MachinePool → infra pool → instances → infra machines → Machines → Nodes →
MachinePool status (measured: 167 s, a whole cold start, in ``bench/README.md``). Urgency
follows the person's change along that chain instead.

Rules (one :class:`Urgency` per process, shared by every controller of the manager):

- **Intent.** An event is intent when it is a watched change (not the initial list, not a
  resync) of an object's spec by someone other than the controllers: ``metadata.generation``
  moved and the spec differs in more than the fields the controllers write themselves
  (``progress_fields``, e.g. ``providerIDList``); or a deletion just requested. New objects
  are not intent: kubelets' Nodes and the controllers' own creations would crowd the lane.
  In an informer's initial list, an object whose ``status.observedGeneration`` is behind its
  ``metadata.generation`` was changed while the controllers were away: intent as well (one
  never reconciled, with no ``observedGeneration``, is ordinary backlog).
- **Urgent keys.** Each key an intent event maps to becomes urgent in that controller for
  ``window`` seconds: it is queued at :data:`URGENT_PRIORITY`, above every other key, and its
  reconcile runs *urgently*. Each later event that maps to it, and each ``requeue_after`` it
  asks for while the window lasts, is urgent as well.
- **Propagation.** Every write an API client makes during an urgent reconcile marks the
  object it writes as *touched* (by kind, namespace and name) for ``touch_ttl`` seconds,
  *before* the request goes out, so a watch event that overtakes the response still counts:
  the client calls its ``on_write`` hook (:func:`note_write`) before sending each write. The
  manager installs the hook on its client, and a workload cluster's clients take the hook
  of the management client they were built beside.
  An event on a touched object makes the keys it maps to urgent, in every controller: the
  chain carries the urgency to the next hop. Events nobody here caused (a kubelet
  registering the Node) are urgent when their key still is.
- **Decay.** A window ends ``window`` seconds after the last event that marked the key, so a
  converged pool, whose reconciles write nothing, stops being urgent.

Failure: none to handle. Urgency only orders work: a wrong guess makes a reconcile run a
little earlier or later than it would have, never skips one or runs one twice. Memory is
bounded by the number of objects written within ``touch_ttl`` and keys marked within
``window`` (expired entries are dropped as new ones arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, Final

from controller.runtime.informer import InformerEvent
from controller.runtime.workqueue import HIGH_PRIORITY, LOW_PRIORITY

URGENT_PRIORITY: Final = 100
"""Above :data:`~controller.runtime.workqueue.HIGH_PRIORITY`: a person's change and its chain."""

Identity = tuple[str, str, str]  # (kind, namespace or "", name)

# The urgency of the reconcile running in a task, and that task: tasks it starts inherit the
# context but not the urgency (a lazily started watch must not mark its writes for ever).
_reconciling: ContextVar[tuple[Urgency, asyncio.Task[Any] | None] | None] = ContextVar(
    "urgent_reconcile", default=None
)


def identity(*, kind: str, namespace: str | None, name: str) -> Identity:
    return (kind, namespace or "", name)


def note_write(*, kind: str, namespace: str | None, name: str) -> None:
    """The API client's write hook (a :class:`~controller.runtime.kube.WriteHook`), called
    before each write is sent: inside an urgent reconcile, the object becomes touched.
    Elsewhere it costs one context-variable lookup. Never raises."""
    current = _reconciling.get()
    if current is None or not name:
        return
    urgency, task = current
    if task is _current_task():
        urgency.touch(identity(kind=kind, namespace=namespace, name=name))


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


class Urgency:
    """The touched objects of this process and the rules above; see the module docstring."""

    def __init__(
        self,
        *,
        window: float = 30.0,
        touch_ttl: float = 15.0,
        progress_fields: Collection[str] = ("providerIDList",),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0 or touch_ttl <= 0:
            raise ValueError("urgency: window and touch_ttl must be positive")
        self.window = window
        self.touch_ttl = touch_ttl
        self.progress_fields = frozenset(progress_fields)
        self.clock = clock
        self._touched: dict[Identity, float] = {}  # identity -> expiry, in insertion order

    # ------------------------------------------------------------- writes

    @contextlib.contextmanager
    def reconciling(self, *, urgent: bool) -> Iterator[None]:
        """Run a reconcile: urgently (its writes touch what they write) or not."""
        token = _reconciling.set((self, _current_task()) if urgent else None)
        try:
            yield
        finally:
            _reconciling.reset(token)

    def touch(self, ident: Identity) -> None:
        now = self.clock()
        self._touched.pop(ident, None)
        self._touched[ident] = now + self.touch_ttl
        # Entries are in order of their last touch, hence of expiry: drop from the front.
        for oldest, expiry in list(self._touched.items())[:64]:
            if expiry > now:
                break
            del self._touched[oldest]

    def touched(self, ident: Identity) -> bool:
        expiry = self._touched.get(ident)
        return expiry is not None and expiry > self.clock()

    # ------------------------------------------------------------- events

    def marks(self, event: InformerEvent, *, kind: str) -> bool:
        """True when ``event`` makes the keys it maps to urgent: intent, or an event on an
        object an urgent reconcile wrote."""
        if event.type == "SYNC":
            return False
        if event.initial:
            return _changed_while_away(event.obj)
        meta = event.obj.get("metadata") or {}
        if self.touched(identity(kind=kind, namespace=meta.get("namespace"),
                                 name=str(meta.get("name", "")))):  # fmt: skip
            return True
        return self._intent(event)

    def _intent(self, event: InformerEvent) -> bool:
        # New objects are not intent: kubelets registering Nodes and the controllers' own
        # creations would crowd the lane during a cold start.
        if event.type != "MODIFIED" or event.old is None:
            return False
        old_meta = event.old.get("metadata") or {}
        new_meta = event.obj.get("metadata") or {}
        if new_meta.get("deletionTimestamp") and not old_meta.get("deletionTimestamp"):
            return True
        generation = new_meta.get("generation")
        if generation is None or old_meta.get("generation") == generation:
            return False
        return self._spec(event.old) != self._spec(event.obj)

    def _spec(self, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        return {k: v for k, v in spec.items() if k not in self.progress_fields}


def _changed_while_away(obj: dict[str, Any]) -> bool:
    """Listed with a spec change its controller has not seen (``status.observedGeneration``
    behind ``metadata.generation``): someone changed it while we were down. A never-reconciled
    object (no ``observedGeneration``) is ordinary backlog."""
    observed = (obj.get("status") or {}).get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    return isinstance(observed, int) and isinstance(generation, int) and observed < generation


class UrgentKeys:
    """One controller's urgent keys and their windows."""

    def __init__(self, *, urgency: Urgency) -> None:
        self.urgency = urgency
        self._until: dict[str, float] = {}

    def mark(self, key: str) -> None:
        now = self.urgency.clock()
        self._until.pop(key, None)
        self._until[key] = now + self.urgency.window
        for oldest, until in list(self._until.items())[:64]:
            if until > now:
                break
            del self._until[oldest]

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key) if isinstance(key, str) else None
        return until is not None and until > self.urgency.clock()


#: Metadata whose change is news (a person's or another controller's doing), not progress.
_NEWS_METADATA = ("labels", "annotations", "deletionTimestamp", "finalizers", "ownerReferences")


def event_priority(event: InformerEvent) -> int:
    """Low for what is not news: the initial list, resyncs, and *progress* — a MODIFIED that
    changed only status (``metadata.generation`` unchanged, and no label, annotation,
    finalizer, owner or deletion change), which is what the controllers' own writes produce
    while a fleet converges. High for everything else, so a spec change, a pause or a
    deletion overtakes a backlog at every hop of a chain of controllers. Objects without a
    generation (Nodes) always count as news."""
    if event.initial or event.type == "SYNC":
        return LOW_PRIORITY
    if event.type != "MODIFIED" or event.old is None:
        return HIGH_PRIORITY
    old = event.old.get("metadata") or {}
    new = event.obj.get("metadata") or {}
    generation = new.get("generation")
    if generation is None or old.get("generation") != generation:
        return HIGH_PRIORITY
    if any(old.get(name) != new.get(name) for name in _NEWS_METADATA):
        return HIGH_PRIORITY
    return LOW_PRIORITY


class KeyPriorities:
    """One controller's use of the policy: the priority each of its keys is queued at, and
    whether its reconcile runs urgently. Without an :class:`Urgency` there is no urgent
    level: news and progress only."""

    def __init__(self, *, urgency: Urgency | None) -> None:
        self._urgent = UrgentKeys(urgency=urgency) if urgency is not None else None

    def marks(self, event: InformerEvent, *, kind: str) -> bool:
        """Whether ``event`` (on an object of ``kind``) makes the keys it maps to urgent."""
        return self._urgent is not None and self._urgent.urgency.marks(event, kind=kind)

    def queued(self, key: str, *, priority: int, marks: bool) -> int:
        """The priority to queue ``key`` at, for a cause of ``priority`` (news or progress)
        that ``marks`` the key or not: urgent while the key's window lasts."""
        urgent = self._urgent
        if urgent is None:
            return priority
        if marks:
            urgent.mark(key)
        return URGENT_PRIORITY if key in urgent else priority

    def runs_urgently(self, key: str, *, priority: int) -> bool:
        """Whether the reconcile of ``key``, handed out at ``priority``, runs urgently."""
        return self._urgent is not None and (priority == URGENT_PRIORITY or key in self._urgent)

    def reconciling(self, *, urgent: bool) -> AbstractContextManager[None]:
        """The context a reconcile runs in: an urgent one touches what it writes."""
        if self._urgent is None:
            return contextlib.nullcontext()
        return self._urgent.urgency.reconciling(urgent=urgent)

    def poll(self, key: str) -> int:
        """The priority of a ``requeue_after`` poll: bulk work, unless the key is urgent."""
        return URGENT_PRIORITY if self._urgent is not None and key in self._urgent else LOW_PRIORITY
