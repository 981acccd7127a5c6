"""Provider call metrics: how often each cloud call is made, how it ended, how long it took.

- ``machinepool_provider_requests_total{provider,operation,code}``: ``code`` is ``OK`` or the
  typed error's code (``Throttling``, ``GroupNotFound``, ``ValidationError``, ``Timeout``,
  ``ConnectionError``, ...), so throttling and failures are visible per call;
- ``machinepool_provider_request_duration_seconds{provider,operation}``: latency of every
  call, whatever its outcome.

``code`` is the cloud's word (or a tenant-run endpoint's, for the in-memory provider), so it
is bounded before it becomes a label value: a code that is not a plain identifier of at most
64 characters, or any code beyond the first :data:`MAX_CODES` distinct ones of a registry, is
counted as ``other``. ``provider`` and ``operation`` come from our code.

The names carry a ``provider`` label so every provider can share them; :func:`provider_metrics`
registers them at most once per registry (several clients, or a test's private registry, may
ask for them any number of times).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram

from controller.runtime.metrics import REGISTRY, per_registry

__all__ = ["MAX_CODES", "OTHER_CODE", "ProviderMetrics", "provider_metrics"]

#: Distinct ``code`` label values a registry keeps before the rest become :data:`OTHER_CODE`.
MAX_CODES = 64
OTHER_CODE = "other"
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class ProviderMetrics:
    """The provider call series on one registry."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "machinepool_provider_requests_total",
            "Provider API calls, by provider, operation and result code.",
            ["provider", "operation", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "machinepool_provider_request_duration_seconds",
            "Latency of provider API calls, by provider and operation.",
            ["provider", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._codes: set[str] = {"OK", OTHER_CODE}

    def bounded_code(self, code: str) -> str:
        """``code`` as a label value: itself when known or still room, else ``other``."""
        if code in self._codes:
            return code
        if not _CODE.match(code) or len(self._codes) >= MAX_CODES:
            return OTHER_CODE
        self._codes.add(code)
        return code

    def observe(self, *, provider: str, operation: str, code: str, seconds: float) -> None:
        self.requests.labels(provider, operation, self.bounded_code(code)).inc()
        self.duration.labels(provider, operation).observe(seconds)


_of_registry = per_registry(lambda registry: ProviderMetrics(registry=registry))


def provider_metrics(registry: CollectorRegistry = REGISTRY) -> ProviderMetrics:
    """The one :class:`ProviderMetrics` of ``registry``."""
    return _of_registry(registry)
