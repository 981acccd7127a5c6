"""The Prometheus registry every runtime metric is registered on.

It is prometheus_client's default registry, so the process and platform collectors that
Prometheus users expect (``process_*``, ``python_*``) come along. Components take a
``registry`` argument so tests and benchmarks can use a private one and run many managers in
one process without duplicate-registration errors.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry

__all__ = ["REGISTRY", "CollectorRegistry", "per_registry"]

_T = TypeVar("_T")


def per_registry(build: Callable[[CollectorRegistry], _T]) -> Callable[[CollectorRegistry], _T]:
    """``build(registry)`` once per registry, then the same result: a metric name can be
    registered on a registry only once, and every component (or every manager of a test
    process) asks for the same metrics. Results go with their registry."""
    made: weakref.WeakKeyDictionary[CollectorRegistry, _T] = weakref.WeakKeyDictionary()

    def get(registry: CollectorRegistry) -> _T:
        found = made.get(registry)
        if found is None:
            found = made[registry] = build(registry)
        return found

    get.__doc__ = build.__doc__
    return get
