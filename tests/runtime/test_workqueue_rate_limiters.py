"""Rate limiters (backoff, bucket, combinators) and the rate-limiting queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.workqueue import (
    BucketRateLimiter,
    FakeClock,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
    default_item_based_rate_limiter,
)


def test_backoff_doubles_from_5ms_and_is_capped_at_1000s() -> None:
    limiter = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(21)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[17] == pytest.approx(655.36)
    assert delays[18:] == [1000.0, 1000.0, 1000.0]
    assert delays == sorted(delays)
    assert limiter.num_requeues("a") == 21


def test_backoff_is_per_key_and_forget_resets_it() -> None:
    limiter = ItemExponentialFailureRateLimiter(base_delay=1, max_delay=60)
    assert [limiter.when("a") for _ in range(3)] == [1, 2, 4]
    assert limiter.when("b") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1
    limiter.forget("never-failed")


def test_backoff_never_overflows() -> None:
    limiter = ItemExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000)
    for _ in range(5000):
        delay = limiter.when("a")
    assert delay == 1000


@given(
    base=st.floats(min_value=1e-6, max_value=10),
    cap=st.floats(min_value=1e-3, max_value=1e5),
    failures=st.integers(min_value=1, max_value=200),
)
def test_backoff_is_min_of_doubling_and_cap(base: float, cap: float, failures: int) -> None:
    limiter = ItemExponentialFailureRateLimiter(base_delay=base, max_delay=cap)
    delays = [limiter.when("k") for _ in range(failures)]
    assert delays == sorted(delays)
    for exponent, delay in enumerate(delays):
        assert delay == min(base * 2.0**exponent, cap)


def test_default_item_based_limiter_starts_at_1ms() -> None:
    limiter = default_item_based_rate_limiter()
    assert [limiter.when("a") for _ in range(3)] == [0.001, 0.002, 0.004]


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ItemExponentialFailureRateLimiter(base_delay=-1)


async def test_bucket_allows_a_burst_then_spaces_retries_by_its_rate() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert [bucket.when(f"k{i}") for i in range(100)] == [0.0] * 100
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("x") == pytest.approx(0.2)
    assert bucket.num_requeues("x") == 0
    bucket.forget("x")
    await clock.advance(10)  # 100 tokens refill the 2 owed and 98 more
    assert [bucket.when("y") for _ in range(98)] == [0.0] * 98
    assert bucket.when("y") == pytest.approx(0.1)


async def test_bucket_never_saves_more_than_its_burst() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=1, burst=2, clock=clock)
    await clock.advance(3600)
    assert [bucket.when("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(qps=0)


async def test_default_controller_limiter_takes_the_longer_of_backoff_and_bucket() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock=clock)
    # first failures of 100 keys: the bucket has tokens, the per-key backoff (5 ms) wins
    assert {limiter.when(f"k{i}") for i in range(100)} == {0.005}
    # the bucket is empty: its 100 ms beats a first failure's 5 ms
    assert limiter.when("fresh") == pytest.approx(0.1)
    assert limiter.num_requeues("fresh") == 1
    limiter.forget("fresh")
    assert limiter.num_requeues("fresh") == 0


def test_max_of_asks_every_limiter_and_forgets_in_all() -> None:
    slow = ItemExponentialFailureRateLimiter(base_delay=1, max_delay=100)
    fast = ItemFastSlowRateLimiter(fast_delay=0.5, slow_delay=30, max_fast_attempts=2)
    limiter = MaxOfRateLimiter(slow, fast)
    assert [limiter.when("a") for _ in range(4)] == [1, 2, 30, 30]
    assert slow.num_requeues("a") == fast.num_requeues("a") == 4
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert slow.num_requeues("a") == fast.num_requeues("a") == 0
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()


def test_fast_slow_switches_after_the_fast_attempts() -> None:
    limiter = ItemFastSlowRateLimiter(fast_delay=0.1, slow_delay=10, max_fast_attempts=3)
    assert [limiter.when("a") for _ in range(5)] == [0.1, 0.1, 0.1, 10, 10]
    limiter.forget("a")
    assert limiter.when("a") == 0.1


def test_with_max_wait_caps_the_delay() -> None:
    limiter = WithMaxWaitRateLimiter(
        ItemExponentialFailureRateLimiter(base_delay=1, max_delay=1000), max_delay=5
    )
    assert [limiter.when("a") for _ in range(5)] == [1, 2, 4, 5, 5]
    assert limiter.num_requeues("a") == 5
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[RateLimitingQueue[str]]:
    q: RateLimitingQueue[str] = RateLimitingQueue(
        clock=clock,
        rate_limiter=ItemExponentialFailureRateLimiter(base_delay=1, max_delay=1000),
    )
    yield q
    q.shutdown()
    await clock.settle()


async def test_rate_limited_adds_back_off_until_forgotten(
    queue: RateLimitingQueue[str], clock: FakeClock
) -> None:
    for expected_delay in (1, 2, 4):
        queue.add_rate_limited("a")
        await clock.advance(expected_delay - 0.5)
        assert len(queue) == 0
        await clock.advance(0.5)
        key = await queue.get()
        queue.done(key)
    assert queue.num_requeues("a") == 3
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    await clock.advance(1)
    assert len(queue) == 1


async def test_the_default_limiter_runs_on_the_queue_clock(clock: FakeClock) -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue(clock=clock)
    for index in range(101):
        queue.add_rate_limited(f"k{index}")
    await clock.advance(0.005)
    assert len(queue) == 100, "the 101st key waits for a bucket token"
    await clock.advance(0.095)
    assert len(queue) == 101
    queue.shutdown()
