"""Which informer events are news (high priority) and which are progress (low)."""

from __future__ import annotations

from controller.runtime.informer import InformerEvent
from controller.runtime.urgency import event_priority
from controller.runtime.workqueue import HIGH_PRIORITY, LOW_PRIORITY


def _event(
    type_: str, *, old: dict[str, object] | None, new: dict[str, object], initial: bool = False
) -> InformerEvent:
    def obj(meta: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"namespace": "ns", "name": "p1", **meta}}

    return InformerEvent(
        type=type_,  # type: ignore[arg-type]
        obj=obj(new),
        old=obj(old) if old is not None else None,
        initial=initial,
    )


def test_progress_is_low_priority_and_intent_is_high() -> None:
    same = {"generation": 3, "labels": {"a": "b"}}
    assert event_priority(_event("ADDED", old=None, new=same, initial=True)) == LOW_PRIORITY
    assert event_priority(_event("SYNC", old=same, new=same)) == LOW_PRIORITY
    # Status only (what converging controllers write): low.
    assert event_priority(_event("MODIFIED", old=same, new=same)) == LOW_PRIORITY
    # A spec change, a new annotation (pause, delete-machine), a deletion: high.
    assert event_priority(_event("MODIFIED", old=same, new={**same, "generation": 4})) == (
        HIGH_PRIORITY
    )
    annotated = {**same, "annotations": {"cluster.x-k8s.io/paused": ""}}
    assert event_priority(_event("MODIFIED", old=same, new=annotated)) == HIGH_PRIORITY
    deleting = {**same, "deletionTimestamp": "2026-11-25T00:00:00Z"}
    assert event_priority(_event("MODIFIED", old=same, new=deleting)) == HIGH_PRIORITY
    # New objects, deletions and objects without a generation (Nodes): high.
    assert event_priority(_event("ADDED", old=None, new=same)) == HIGH_PRIORITY
    assert event_priority(_event("DELETED", old=None, new=same)) == HIGH_PRIORITY
    assert event_priority(_event("MODIFIED", old={}, new={})) == HIGH_PRIORITY
