"""The workqueue_* series: names, labels, buckets, and how each one moves."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from controller.runtime.workqueue import (
    LOW_PRIORITY,
    FakeClock,
    ItemExponentialFailureRateLimiter,
    PriorityQueue,
    RateLimitingQueue,
    WorkQueue,
    prometheus_metrics,
)

NAME = "machinepool"
LABELS = {"name": NAME, "controller": NAME}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def queue(
    clock: FakeClock, registry: CollectorRegistry
) -> AsyncIterator[RateLimitingQueue[str]]:
    q: RateLimitingQueue[str] = RateLimitingQueue(
        name=NAME,
        clock=clock,
        metrics=prometheus_metrics(registry),
        rate_limiter=ItemExponentialFailureRateLimiter(base_delay=1, max_delay=10),
    )
    yield q
    q.shutdown()
    await clock.settle()


@pytest.fixture
def sample(registry: CollectorRegistry) -> Callable[..., float | None]:
    def read(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {**LABELS, **labels})

    return read


def test_series_names_and_label_sets(
    queue: RateLimitingQueue[str], registry: CollectorRegistry
) -> None:
    label_sets = {
        family.name: {frozenset(sample.labels) - {"le"} for sample in family.samples}
        for family in registry.collect()
    }
    name_and_controller = {frozenset({"name", "controller"})}
    assert label_sets == {
        "workqueue_depth": {frozenset({"name", "controller", "priority"})},
        "workqueue_adds": name_and_controller,
        "workqueue_queue_duration_seconds": name_and_controller,
        "workqueue_work_duration_seconds": name_and_controller,
        "workqueue_retries": name_and_controller,
        "workqueue_unfinished_work_seconds": name_and_controller,
        "workqueue_longest_running_processor_seconds": name_and_controller,
    }
    exposition = generate_latest(registry).decode()
    for line in (
        'workqueue_depth{controller="machinepool",name="machinepool",priority=""} 0.0',
        'workqueue_adds_total{controller="machinepool",name="machinepool"} 0.0',
        'workqueue_retries_total{controller="machinepool",name="machinepool"} 0.0',
        'workqueue_unfinished_work_seconds{controller="machinepool",name="machinepool"} 0.0',
        "workqueue_longest_running_processor_seconds"
        '{controller="machinepool",name="machinepool"} 0.0',
        'workqueue_queue_duration_seconds_count{controller="machinepool",name="machinepool"} 0.0',
        'workqueue_work_duration_seconds_count{controller="machinepool",name="machinepool"} 0.0',
    ):
        assert line in exposition.splitlines()


def test_duration_buckets_span_10ns_to_1000s(
    queue: RateLimitingQueue[str], registry: CollectorRegistry
) -> None:
    for family in registry.collect():
        if family.name == "workqueue_queue_duration_seconds":
            bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            assert bounds == [
                "1e-08", "1e-07", "1e-06", "1e-05", "0.0001", "0.001",
                "0.01", "0.1", "1.0", "10.0", "100.0", "1000.0", "+Inf",
            ]  # fmt: skip
            return
    pytest.fail("no queue duration histogram")


async def test_adds_and_depth_count_keys_that_need_processing(
    queue: RateLimitingQueue[str], sample: Callable[..., float | None]
) -> None:
    queue.add("a")
    queue.add("a")  # deduplicated: not counted
    queue.add("b")
    assert sample("workqueue_adds_total") == 2
    assert sample("workqueue_depth", priority="") == 2
    key = await queue.get()
    assert sample("workqueue_depth", priority="") == 1
    queue.add(key)  # deferred while processing: counted
    assert sample("workqueue_adds_total") == 3
    assert sample("workqueue_depth", priority="") == 2
    queue.done(key)
    assert sample("workqueue_depth", priority="") == 2


async def test_queue_duration_runs_from_first_add_to_get(
    queue: RateLimitingQueue[str], clock: FakeClock, sample: Callable[..., float | None]
) -> None:
    queue.add("a")
    await clock.advance(2)
    queue.add("a")
    await clock.advance(1.5)
    await queue.get()
    assert sample("workqueue_queue_duration_seconds_count") == 1
    assert sample("workqueue_queue_duration_seconds_sum") == 3.5
    assert sample("workqueue_queue_duration_seconds_bucket", le="10.0") == 1
    assert sample("workqueue_queue_duration_seconds_bucket", le="1.0") == 0


async def test_work_duration_runs_from_get_to_done(
    queue: RateLimitingQueue[str], clock: FakeClock, sample: Callable[..., float | None]
) -> None:
    queue.add("a")
    key = await queue.get()
    await clock.advance(3)
    queue.done(key)
    queue.done(key)  # not processing any more: not observed again
    assert sample("workqueue_work_duration_seconds_count") == 1
    assert sample("workqueue_work_duration_seconds_sum") == 3


async def test_unfinished_work_and_longest_running_processor(
    queue: RateLimitingQueue[str], clock: FakeClock, sample: Callable[..., float | None]
) -> None:
    queue.add("a")
    queue.add("b")
    first = await queue.get()
    await clock.advance(1)
    second = await queue.get()
    await clock.advance(2)
    assert sample("workqueue_unfinished_work_seconds") == 3 + 2
    assert sample("workqueue_longest_running_processor_seconds") == 3
    queue.done(first)
    assert sample("workqueue_unfinished_work_seconds") == 2
    assert sample("workqueue_longest_running_processor_seconds") == 2
    queue.done(second)
    assert sample("workqueue_unfinished_work_seconds") == 0
    assert sample("workqueue_longest_running_processor_seconds") == 0


async def test_every_add_after_counts_as_a_retry(
    queue: RateLimitingQueue[str], sample: Callable[..., float | None]
) -> None:
    queue.add_after("a", 5)
    queue.add_after("a", 10)  # absorbed, still a retry
    queue.add_after("b", 0)  # immediate, still a retry
    queue.add_rate_limited("c")
    assert sample("workqueue_retries_total") == 4
    assert sample("workqueue_adds_total") == 1, "only b was added so far"


async def test_a_due_key_counts_as_an_add_when_it_arrives(
    queue: RateLimitingQueue[str], clock: FakeClock, sample: Callable[..., float | None]
) -> None:
    queue.add_after("a", 5)
    assert sample("workqueue_depth", priority="") == 0
    await clock.advance(5)
    assert sample("workqueue_adds_total") == 1
    assert sample("workqueue_depth", priority="") == 1


async def test_priority_queue_labels_depth_by_priority(
    clock: FakeClock, registry: CollectorRegistry, sample: Callable[..., float | None]
) -> None:
    queue: PriorityQueue[str] = PriorityQueue(
        name=NAME, clock=clock, metrics=prometheus_metrics(registry)
    )
    queue.add("a", priority=LOW_PRIORITY)
    queue.add("b", priority=LOW_PRIORITY)
    queue.add("c")
    assert sample("workqueue_depth", priority="-100") == 2
    assert sample("workqueue_depth", priority="0") == 1
    queue.add("a")  # raised: its depth moves to priority 0
    assert sample("workqueue_depth", priority="-100") == 1
    assert sample("workqueue_depth", priority="0") == 2
    await queue.get()
    await queue.get()
    assert sample("workqueue_depth", priority="0") == 0
    assert sample("workqueue_depth", priority="-100") == 1
    assert sample("workqueue_adds_total") == 3
    queue.shutdown()


async def test_priority_labels_are_capped_at_25(
    clock: FakeClock, registry: CollectorRegistry, sample: Callable[..., float | None]
) -> None:
    queue: PriorityQueue[str] = PriorityQueue(
        name=NAME, clock=clock, metrics=prometheus_metrics(registry)
    )
    for priority in range(30):
        queue.add(f"k{priority}", priority=priority)
    assert sample("workqueue_depth", priority="24") == 1
    assert sample("workqueue_depth", priority="25") is None
    assert sample("workqueue_depth", priority="exceeded_cardinality_limit") == 5
    while len(queue):
        await queue.get()
    assert sample("workqueue_depth", priority="exceeded_cardinality_limit") == 0
    queue.shutdown()


async def test_many_queues_share_one_registry(
    clock: FakeClock, registry: CollectorRegistry
) -> None:
    provider = prometheus_metrics(registry)
    assert prometheus_metrics(registry) is provider
    queues: list[WorkQueue[str]] = [
        WorkQueue(name=name, clock=clock, metrics=provider) for name in ("one", "two", "two")
    ]
    for queue in queues:
        queue.add("a")
        await queue.get()
    await clock.advance(4)

    def unfinished(name: str) -> float | None:
        return registry.get_sample_value(
            "workqueue_unfinished_work_seconds", {"name": name, "controller": name}
        )

    assert unfinished("one") == 4
    assert unfinished("two") == 8, "queues sharing a name add up"
    assert (
        registry.get_sample_value("workqueue_adds_total", {"name": "two", "controller": "two"}) == 2
    )
    del queues, queue
    gc.collect()
    assert unfinished("one") is None, "a collected queue stops reporting in-flight work"
    assert (
        registry.get_sample_value("workqueue_adds_total", {"name": "two", "controller": "two"}) == 2
    ), "counters never go backwards"


def test_a_named_queue_defaults_to_the_global_registry() -> None:
    labels = {"name": "test-default-registry", "controller": "test-default-registry"}
    before = REGISTRY.get_sample_value("workqueue_adds_total", labels) or 0.0
    queue: WorkQueue[str] = WorkQueue(name="test-default-registry")
    queue.add("a")
    assert REGISTRY.get_sample_value("workqueue_adds_total", labels) == before + 1
    assert prometheus_metrics() is prometheus_metrics(REGISTRY)


def test_an_unnamed_queue_records_nothing(registry: CollectorRegistry) -> None:
    queue: WorkQueue[str] = WorkQueue(metrics=prometheus_metrics(registry))
    queue.add("a")
    assert registry.get_sample_value("workqueue_adds_total", {"name": "", "controller": ""}) is None
