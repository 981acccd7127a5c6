"""merge_patch computes the smallest RFC 7386 patch, including deletions of nested keys."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.patch import merge_patch


def _apply(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch, for checking."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _apply(result.get(key), value)
    return result


def test_nested_key_removed_becomes_null() -> None:
    before = {"deprecated": {"v1beta1": {"failureReason": "X", "readyReplicas": 1}}, "phase": "A"}
    after = {"deprecated": {"v1beta1": {"readyReplicas": 1}}, "phase": "A"}
    assert merge_patch(before, after) == {"deprecated": {"v1beta1": {"failureReason": None}}}


def test_no_change_is_empty_and_lists_are_replaced_whole() -> None:
    assert merge_patch({"a": [1, 2], "b": {"c": 1}}, {"a": [1, 2], "b": {"c": 1}}) == {}
    assert merge_patch({"a": [1, 2]}, {"a": [2]}) == {"a": [2]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=10,
)
documents = st.dictionaries(st.text(max_size=2), json_values, max_size=4)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@given(before=documents, after=documents)
def test_applying_the_patch_gives_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    before, after = _without_nulls(before), _without_nulls(after)
    assert _apply(before, merge_patch(before, after)) == after
