"""Rate limiters: how long a key waits before it is retried.

A limiter answers three questions about a key: :meth:`RateLimiter.when` (how long to wait
before the next retry; calling it *records* a failure or takes a token), :meth:`RateLimiter.forget`
(the key succeeded or was given up: clear its history) and :meth:`RateLimiter.num_requeues`
(how many failures are on record). Delays are seconds, as floats.

- :class:`ItemExponentialFailureRateLimiter` -- per key: ``base * 2**failures``, capped at
  ``max_delay``. The default (5 ms .. 1000 s) gives 5 ms, 10 ms, 20 ms, ... 655.36 s on the 18th
  failure, then 1000 s. Large failure counts never overflow.
- :class:`BucketRateLimiter` -- one token bucket for all keys (default 10 per second, burst
  100): the overall retry rate, not per key. Tokens are reserved, so a burst of failures gets
  increasing delays rather than all the same one. ``num_requeues`` is 0; ``forget`` does nothing.
- :class:`ItemFastSlowRateLimiter` -- ``fast`` for the first ``max_fast_attempts`` failures,
  ``slow`` afterwards.
- :class:`MaxOfRateLimiter` -- the longest delay of its limiters. Every limiter's ``when`` is
  called each time (each records the failure, the bucket spends a token), so the bucket's burst
  can appear to be exceeded while per-key backoffs dominate.
- :class:`WithMaxWaitRateLimiter` -- caps another limiter's delay.

:func:`default_controller_rate_limiter` is client-go's controller default: the per-key
exponential limiter (5 ms .. 1000 s) and the bucket (10 qps, burst 100), whichever is longer.
(controller-runtime, since it made its priority queue the default, uses the per-key limiter
alone; pass :func:`default_item_based_rate_limiter` or an exponential limiter for that.)

Limiters hold state per key until ``forget``: callers must forget keys that succeed, or the
history (and memory) grows with every key that ever failed. They are for one event loop and
not thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Protocol, TypeVar

from controller.runtime.workqueue.clock import Clock, LoopClock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "WithMaxWaitRateLimiter",
    "default_controller_rate_limiter",
    "default_item_based_rate_limiter",
]

K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[K_contra]):
    """Decides retry delays for keys; see the module docstring."""

    def when(self, key: K_contra) -> float:
        """Record a failure of ``key``; return how many seconds to wait before retrying."""
        ...

    def forget(self, key: K_contra) -> None:
        """Clear the history of ``key``."""
        ...

    def num_requeues(self, key: K_contra) -> int:
        """How many failures of ``key`` are on record."""
        ...


class ItemExponentialFailureRateLimiter:
    """Per-key exponential backoff: ``base_delay * 2**failures``, at most ``max_delay``."""

    __slots__ = ("_failures", "base_delay", "max_delay")

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        exponent = self._failures.get(key, 0)
        self._failures[key] = exponent + 1
        try:
            delay = math.ldexp(self.base_delay, min(exponent, 1100))
        except OverflowError:
            return self.max_delay
        return min(delay, self.max_delay)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class ItemFastSlowRateLimiter:
    """``fast_delay`` for the first ``max_fast_attempts`` failures of a key, then ``slow_delay``."""

    __slots__ = ("_failures", "fast_delay", "max_fast_attempts", "slow_delay")

    def __init__(self, *, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        self.fast_delay = fast_delay
        self.slow_delay = slow_delay
        self.max_fast_attempts = max_fast_attempts
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return self.fast_delay if failures <= self.max_fast_attempts else self.slow_delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """A token bucket shared by all keys: ``qps`` tokens a second, at most ``burst`` saved up.

    Each ``when`` reserves one token and returns how long until that token exists (0 while the
    bucket has tokens). The bucket starts full.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "qps")

    def __init__(self, *, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be positive and burst at least 1")
        self.qps = qps
        self.burst = burst
        self._clock: Clock = LoopClock() if clock is None else clock
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, key: Hashable) -> float:
        now = self._clock.now()
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        if self._last is None or now > self._last:
            self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: Hashable) -> None:
        pass

    def num_requeues(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters (all of them record every failure)."""

    __slots__ = ("limiters",)

    def __init__(self, *limiters: RateLimiter[Hashable]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, key: Hashable) -> float:
        return max([limiter.when(key) for limiter in self.limiters])

    def forget(self, key: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


class WithMaxWaitRateLimiter:
    """Another limiter's delay, never longer than ``max_delay``."""

    __slots__ = ("limiter", "max_delay")

    def __init__(self, limiter: RateLimiter[Hashable], *, max_delay: float) -> None:
        self.limiter = limiter
        self.max_delay = max_delay

    def when(self, key: Hashable) -> float:
        return min(self.limiter.when(key), self.max_delay)

    def forget(self, key: Hashable) -> None:
        self.limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.limiter.num_requeues(key)


def default_controller_rate_limiter(*, clock: Clock | None = None) -> MaxOfRateLimiter:
    """Per-key exponential backoff 5 ms .. 1000 s, and 10 qps / burst 100 overall."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )


def default_item_based_rate_limiter() -> ItemExponentialFailureRateLimiter:
    """Per-key exponential backoff 1 ms .. 1000 s."""
    return ItemExponentialFailureRateLimiter(base_delay=0.001, max_delay=1000.0)
