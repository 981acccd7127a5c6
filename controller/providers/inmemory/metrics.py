"""The provider call metrics, shared by every provider: see :mod:`controller.providers.metrics`.

Kept so existing imports of the in-memory provider keep working.
"""

from __future__ import annotations

from controller.providers.metrics import ProviderMetrics, provider_metrics

__all__ = ["ProviderMetrics", "provider_metrics"]
