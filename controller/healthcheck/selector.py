"""``metav1.LabelSelector`` semantics on plain label maps.

Invariants: ``matchLabels`` and every ``matchExpressions`` entry must all hold (an empty
selector matches everything; the MachineHealthCheck CRD refuses empty selectors). ``In``
needs the key with one of the values; ``NotIn`` holds when the key is absent or its value is
not listed; ``Exists``/``DoesNotExist`` look at the key only.

Failure: none; an unknown operator (impossible through the CRD's enum) matches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.api.healthcheck import LabelSelector

__all__ = ["describe", "matches"]


def matches(*, selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether an object with ``labels`` is selected."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In":
            ok = present and labels[req.key] in req.values
        elif req.operator == "NotIn":
            ok = not present or labels[req.key] not in req.values
        elif req.operator == "Exists":
            ok = present
        elif req.operator == "DoesNotExist":
            ok = not present
        else:  # pragma: no cover - the CRD's enum rules it out
            ok = False
        if not ok:
            return False
    return True


def describe(selector: LabelSelector) -> str:
    """The selector in ``kubectl``'s string form, for messages (``a=b,c in (d,e)``)."""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        if req.operator in ("In", "NotIn"):
            parts.append(f"{req.key} {req.operator.lower()} ({','.join(req.values)})")
        elif req.operator == "Exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)
