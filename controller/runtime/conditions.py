"""Conditions on plain object dicts: v1beta2 (``metav1.Condition``) and v1beta1 (with severity).

Invariants: ``lastTransitionTime`` changes only when a condition's ``status`` changes, so a
reconcile that finds nothing new writes nothing; conditions are kept sorted by type so the
same facts always serialise the same way; ``observedGeneration`` is the object's generation
at the time of the reconcile that set it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from controller.api.meta import ConditionStatus as Status

Severity = Literal["", "Error", "Warning", "Info"]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Cond:
    """One condition as a reconcile phase decides it."""

    type: str
    status: Status
    reason: str
    message: str = ""
    severity: Severity = ""


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]] | None, type_: str) -> bool:
    found = get(conditions or [], type_)
    return found is not None and found.get("status") == "True"


def set_v1beta2(
    conditions: list[dict[str, Any]], cond: Cond, *, generation: int | None
) -> list[dict[str, Any]]:
    """A new list with ``cond`` set (``lastTransitionTime`` kept unless the status changed)."""
    old = get(conditions, cond.type)
    transition = (
        old["lastTransitionTime"]
        if old is not None and old.get("status") == cond.status and old.get("lastTransitionTime")
        else now_rfc3339()
    )
    new: dict[str, Any] = {
        "type": cond.type,
        "status": cond.status,
        "reason": cond.reason,
        "message": cond.message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    rest = [c for c in conditions if c.get("type") != cond.type]
    return sorted([*rest, new], key=lambda c: str(c.get("type")))


def set_v1beta1(conditions: list[dict[str, Any]], cond: Cond) -> list[dict[str, Any]]:
    """The v1beta1 flavour: severity instead of observedGeneration (empty when True)."""
    old = get(conditions, cond.type)
    transition = (
        old["lastTransitionTime"]
        if old is not None and old.get("status") == cond.status and old.get("lastTransitionTime")
        else now_rfc3339()
    )
    new: dict[str, Any] = {
        "type": cond.type,
        "status": cond.status,
        "lastTransitionTime": transition,
    }
    if cond.status != "True":
        new["reason"] = cond.reason
        new["severity"] = cond.severity or "Info"
        if cond.message:
            new["message"] = cond.message
    rest = [c for c in conditions if c.get("type") != cond.type]
    return sorted([*rest, new], key=lambda c: str(c.get("type")))


_SEVERITY_RANK = {"Error": 0, "Warning": 1, "Info": 2}


def summary_v1beta1(conditions: list[dict[str, Any]], *, types: list[str]) -> Cond:
    """Cluster API's ``Ready`` summary: the worst False (by severity) wins, else True."""
    relevant = [c for c in conditions if c.get("type") in types]
    failing = [c for c in relevant if c.get("status") == "False"]
    if failing:
        worst = min(failing, key=lambda c: _SEVERITY_RANK.get(str(c.get("severity")), 3))
        return Cond(
            type="Ready",
            status="False",
            reason=str(worst.get("reason", "")),
            message=str(worst.get("message", "")),
            severity=worst.get("severity", "Info"),
        )
    if relevant and all(c.get("status") == "True" for c in relevant):
        return Cond(type="Ready", status="True", reason="")
    return Cond(type="Ready", status="Unknown", reason="Unknown", severity="Info")
