"""The Prometheus registry every runtime metric is registered on.

It is prometheus_client's default registry, so the process and platform collectors that
Prometheus users expect (``process_*``, ``python_*``) come along. Components take a
``registry`` argument so tests and benchmarks can use a private one and run many managers in
one process without duplicate-registration errors.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

__all__ = ["REGISTRY", "CollectorRegistry"]
