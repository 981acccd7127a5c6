"""JSON merge patches (RFC 7386) computed from a before and an after.

:func:`merge_patch` returns the smallest merge patch that turns ``before`` into ``after``:
objects are compared key by key and recursively, a key that disappeared becomes ``null``,
and anything else that changed (scalars, lists) is sent whole. ``{}`` means no change, so a
caller can skip the request. Values that are themselves ``null`` in ``after`` cannot be
expressed by a merge patch (``null`` deletes); they are treated as deletions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if value is None:
            if key in before:
                patch[key] = None
        elif isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in before or old != value:
            patch[key] = value
    for key in before:
        if key not in after:
            patch[key] = None
    return patch
