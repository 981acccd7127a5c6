"""Rate-limited requeues: a delaying queue paired with a :class:`RateLimiter`.

- ``add_rate_limited(key)`` is ``add_after(key, limiter.when(key))``: it records a failure of
  ``key`` and schedules the retry after the limiter's delay.
- ``forget(key)`` clears the limiter's history of ``key`` (call it when ``key`` succeeded, or when
  it is given up). It does not touch the queue: the worker still calls ``done``.
- ``num_requeues(key)`` is the limiter's failure count.

Forget keys that succeed, or their failure history stays forever. All the delaying queue's
rules hold: ready times only move earlier, a waiting key is not dirty, and every rate-limited
add counts as a retry in the metrics.
"""

from __future__ import annotations

from collections.abc import Hashable

from controller.runtime.workqueue.clock import Clock
from controller.runtime.workqueue.delaying import DelayingQueue
from controller.runtime.workqueue.metrics import MetricsProvider
from controller.runtime.workqueue.queue import K
from controller.runtime.workqueue.rate_limiters import RateLimiter, default_controller_rate_limiter

__all__ = ["RateLimitingQueue"]


class RateLimitingQueue(DelayingQueue[K]):
    """A :class:`~controller.runtime.workqueue.delaying.DelayingQueue` with retry backoff.

    ``rate_limiter`` defaults to :func:`default_controller_rate_limiter` on the queue's clock.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        rate_limiter: RateLimiter[K] | None = None,
        clock: Clock | None = None,
        metrics: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock, metrics=metrics)
        limiter: RateLimiter[K] | RateLimiter[Hashable]
        if rate_limiter is None:
            limiter = default_controller_rate_limiter(clock=self._clock)
        else:
            limiter = rate_limiter
        self._rate_limiter: RateLimiter[K] = limiter

    @property
    def rate_limiter(self) -> RateLimiter[K]:
        return self._rate_limiter

    def add_rate_limited(self, key: K) -> None:
        """Record a failure of ``key`` and add it again after the limiter's delay."""
        self._add_after(key, self._rate_limiter.when(key), 0)

    def forget(self, key: K) -> None:
        """Clear the failure history of ``key`` (the worker still calls ``done``)."""
        self._rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """How many failures of ``key`` the limiter has on record."""
        return self._rate_limiter.num_requeues(key)
