"""One object's reconcile: the object as read, a working copy, and one commit that writes the
difference (the counterpart of Cluster API's ``util/patch`` helper).

An :class:`ObjectScope` is built from a cached object at the start of a reconcile. The
reconciler edits the working copy :attr:`ObjectScope.obj` (``metadata.labels``,
``metadata.annotations``, ``metadata.ownerReferences``, ``spec``, ``status``), sets conditions
through :mod:`controller.runtime.conditions`, queues Events and requeue requests, and calls
:meth:`ObjectScope.commit` once at the end.

Invariants of a commit:

- Two merge patches computed from before and after (:func:`controller.runtime.patch.merge_patch`):
  one for ``metadata`` (labels, annotations, ownerReferences only; everything else in
  ``metadata`` is the API server's, and finalizers go through :mod:`.finalizers`) plus
  ``spec``, one for ``status`` (the ``status`` subresource). At most one request each, and
  none when nothing changed: a reconcile that learns nothing new writes nothing.
- When the object's own spec write bumps ``metadata.generation``, the conditions (and, with
  ``observed=True``, ``status.observedGeneration``) stamped with the generation read are
  stamped with the new one: this reconcile observed the spec it wrote, so that costs no
  second status write in the next reconcile.
- After a commit ``before`` is the object as written, so a second commit (an early write a
  reconciler documents) sends only what changed since.

The one conflict policy. With ``precondition=True`` every request carries the
``resourceVersion`` read, so a write computed from a stale cache never overwrites a newer
version (needed where another writer owns part of a list a merge patch replaces whole, e.g.
the Machine conditions a MachineHealthCheck sets). Whatever the precondition:

- 409 Conflict is not an error: the commit returns :attr:`Outcome.STALE` and writes nothing
  more; our copy was behind, and the newer version's watch event reconciles the object again.
- 404 Not Found is not an error: :attr:`Outcome.GONE`; the object was deleted, there is
  nothing left to record on it.
- Anything else raises :class:`~controller.runtime.kube.ApiError` (the controller retries
  with backoff).

Events queued with :meth:`ObjectScope.event` are handed to the recorder after the writes, also
when a write failed or was dropped: an Event records what this reconcile did or found, which
stays true whatever happened to the status write. The recorder never raises.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any, Literal

from controller.api.labels import PAUSED_ANNOTATION
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.events import EventRecorder
from controller.runtime.kube import ApiError, KubeClient, ResourceLike
from controller.runtime.patch import merge_patch
from controller.runtime.store import Obj

__all__ = ["ObjectScope", "Outcome", "PendingEvent"]

#: The ``metadata`` fields a commit diffs; the rest of ``metadata`` is the API server's.
_METADATA_FIELDS = ("labels", "annotations", "ownerReferences")


class Outcome(enum.Enum):
    """What a commit did; see the module docstring for the conflict policy."""

    UNCHANGED = "unchanged"  #: nothing differed, nothing was sent
    WRITTEN = "written"  #: every differing part was written
    STALE = "stale"  #: a 409: dropped, the newer version's watch event reconciles again
    GONE = "gone"  #: a 404: the object was deleted

    @property
    def dropped(self) -> bool:
        return self in (Outcome.STALE, Outcome.GONE)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class ObjectScope:
    """One object's reconcile state and its commit; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        resource: ResourceLike,
        obj: Obj,
        recorder: EventRecorder | None = None,
        precondition: bool = False,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.recorder = recorder
        self.precondition = precondition
        #: The object as last read or written: what a commit diffs against. A shallow copy
        #: (``obj`` is usually a cache's object, and one deep copy per reconcile is enough):
        #: it is only ever replaced part by part, never changed in place.
        self.before: Obj = dict(obj)
        #: The working copy the reconcile edits.
        self.obj: Obj = copy.deepcopy(obj)
        self.obj.setdefault("status", {})
        self.events: list[PendingEvent] = []
        self.requeue_after: float | None = None

    # ------------------------------------------------------------ identity

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def generation(self) -> int | None:
        value = self.obj["metadata"].get("generation")
        return int(value) if isinstance(value, int) else None

    @property
    def deleting(self) -> bool:
        return bool(self.obj["metadata"].get("deletionTimestamp"))

    @property
    def status(self) -> dict[str, Any]:
        """The working status (created empty when the object has none)."""
        status: dict[str, Any] = self.obj.setdefault("status", {})
        return status

    # --------------------------------------------------------- decisions

    def condition(self, cond: Cond) -> None:
        """Set a v1beta2 condition on the working status (stamped with the generation)."""
        self.status["conditions"] = conditions.set_v1beta2(
            self.status.get("conditions") or [], cond, generation=self.generation
        )

    def v1beta1_condition(self, cond: Cond) -> None:
        """Set a v1beta1 condition under ``status.deprecated.v1beta1``."""
        v1 = self.status.setdefault("deprecated", {}).setdefault("v1beta1", {})
        v1["conditions"] = conditions.set_v1beta1(v1.get("conditions") or [], cond)

    def remove_condition(self, type_: str) -> None:
        if "conditions" in self.status:
            self.status["conditions"] = [
                c for c in self.status["conditions"] or [] if c.get("type") != type_
            ]

    def paused(self, *, cluster: Obj | None, also: tuple[Obj, ...] = ()) -> str:
        """Why reconciling is paused, or ``""``: the Cluster's ``spec.paused``, or the
        ``cluster.x-k8s.io/paused`` annotation on this object (or on ``also``)."""
        reasons = []
        if cluster is not None and (cluster.get("spec") or {}).get("paused"):
            reasons.append("Cluster spec.paused is set to true")
        for obj, kind in ((self.obj, self.resource.kind), *((o, "its owner") for o in also)):
            if PAUSED_ANNOTATION in (obj["metadata"].get("annotations") or {}):
                reasons.append(f"{obj.get('kind') or kind} has the "
                               f"{PAUSED_ANNOTATION} annotation")  # fmt: skip
        return "; ".join(reasons)

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        """Queue an Event about this object; the commit (or :meth:`emit_events`) sends it."""
        self.events.append(PendingEvent(type=type_, reason=reason, message=message))

    def requeue(self, seconds: float) -> None:
        """Ask to be reconciled again within ``seconds`` (the soonest request wins)."""
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = max(seconds, 0.1)

    def adopt(self, written: Obj) -> None:
        """Take the ``metadata`` and ``spec`` of a write made outside :meth:`commit` (a
        finalizer, a documented early write) as both read and wanted."""
        for part in ("metadata", "spec"):
            if part in written:
                self.before[part] = copy.deepcopy(written[part])
                self.obj[part] = copy.deepcopy(written[part])

    def emit_events(self) -> None:
        """Hand the queued Events to the recorder (none without one)."""
        events, self.events = self.events, []
        if self.recorder is None:
            return
        snapshot = copy.deepcopy(self.obj)
        for event in events:
            self.recorder.event(snapshot, type=event.type, reason=event.reason,
                                message=event.message)  # fmt: skip

    # ------------------------------------------------------------- commit

    async def commit(self, *, observed: bool = False, status: bool = True) -> Outcome:
        """Write what differs from :attr:`before`: metadata and spec in one request, status
        in another; then send the queued Events. ``observed=True`` records the generation
        this reconcile saw in ``status.observedGeneration``; ``status=False`` (an early
        write of metadata that must precede a call elsewhere) leaves the status for later."""
        try:
            return await self._commit(observed=observed, with_status=status)
        finally:
            self.emit_events()

    async def _commit(self, *, observed: bool, with_status: bool) -> Outcome:
        outcome = Outcome.UNCHANGED
        read_generation = self.generation
        main = merge_patch(_main(self.before), _main(self.obj))
        if main:
            written = await self._send(main, subresource=None)
            if isinstance(written, Outcome):
                return written
            outcome = Outcome.WRITTEN
            status = self.status
            self.adopt(written)
            self.obj["status"] = status
            if self.generation != read_generation and read_generation is not None:
                for cond in status.get("conditions") or []:
                    if cond.get("observedGeneration") == read_generation:
                        cond["observedGeneration"] = self.generation
        if not with_status:
            return outcome
        if observed and self.generation is not None:
            self.status["observedGeneration"] = self.generation
        patch = merge_patch(self.before.get("status") or {}, self.status)
        if patch:
            written = await self._send({"status": patch}, subresource="status")
            if isinstance(written, Outcome):
                return written
            outcome = Outcome.WRITTEN
            version = written["metadata"].get("resourceVersion")
            self.before["metadata"] = {**self.before["metadata"], "resourceVersion": version}
            self.obj["metadata"]["resourceVersion"] = version
            self.before["status"] = copy.deepcopy(self.status)
        return outcome

    async def _send(self, patch: Obj, *, subresource: str | None) -> Obj | Outcome:
        version = self.obj["metadata"].get("resourceVersion") if self.precondition else None
        try:
            return await self.kube.merge_patch(
                self.resource, namespace=self.namespace or None, name=self.name,
                subresource=subresource, patch=patch, resource_version=version,
            )  # fmt: skip
        except ApiError as exc:
            if exc.not_found:
                return Outcome.GONE
            if exc.conflict:
                return Outcome.STALE
            raise


def _main(obj: Obj) -> Obj:
    """The part of ``obj`` the main resource's request writes."""
    meta = obj.get("metadata") or {}
    return {
        "metadata": {k: meta[k] for k in _METADATA_FIELDS if k in meta},
        "spec": obj.get("spec") or {},
    }
