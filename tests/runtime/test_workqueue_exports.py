"""The package's public surface: sorted, complete, and importable from the package root."""

from __future__ import annotations

import importlib

import pytest

import controller.runtime.workqueue as workqueue

MODULES = ["clock", "delaying", "metrics", "priority", "queue", "rate_limiters", "rate_limiting"]


def test_all_is_sorted_and_every_name_exists() -> None:
    assert workqueue.__all__ == sorted(workqueue.__all__, key=lambda n: (not n.isupper(), n))
    for name in workqueue.__all__:
        assert hasattr(workqueue, name), name


@pytest.mark.parametrize("module", MODULES)
def test_each_module_states_what_it_exports(module: str) -> None:
    imported = importlib.import_module(f"controller.runtime.workqueue.{module}")
    assert imported.__doc__, "module docstrings state invariants and failure behaviour"
    for name in imported.__all__:
        assert hasattr(imported, name), name
        if not name.isupper():  # constants such as metric names stay in their module
            assert name in workqueue.__all__, f"{module}.{name} is not re-exported"
