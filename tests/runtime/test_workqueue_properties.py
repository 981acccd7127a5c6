"""Random interleavings of add / add_after / get / done / time against a model.

Whatever the order, the queue must never hand one key to two workers at once, never hand out
a key nobody asked for, and never lose a key that was added after its last ``get``: with a
worker idle, every such key is either being processed (and comes back on ``done``) or gone to
a worker. At the end, with time run out and workers draining, every such key is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller.runtime.workqueue import (
    DelayingQueue,
    FakeClock,
    PriorityQueue,
    QueueShutDown,
)

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
WORKERS = st.integers(min_value=0, max_value=2)
DELAYS = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.5, 10.0])
PRIORITIES = st.sampled_from([-100, -1, 0, 5])


class QueueMachine(RuleBasedStateMachine):
    """Three workers on one queue, driven step by step on a private loop and a fake clock."""

    with_priorities: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = FakeClock(settle_turns=8)
        self.queue: DelayingQueue[str] | PriorityQueue[str]
        if self.with_priorities:
            self.queue = PriorityQueue(clock=self.clock)
        else:
            self.queue = DelayingQueue(clock=self.clock)
        self.getting: dict[int, asyncio.Task[str]] = {}
        self.holding: dict[int, str] = {}
        # model: keys added since their last hand-out, and delayed adds not yet due
        self.needs: set[str] = set()
        self.due: dict[str, float] = {}

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def call(self, action: Callable[[], object]) -> None:
        """Run a plain queue method inside the loop, as a worker or informer would."""

        async def inside() -> None:
            action()

        self.run(inside())

    def settle(self) -> None:
        self.run(self.clock.settle())
        self.collect()

    def collect(self) -> None:
        for worker, task in list(self.getting.items()):
            if not task.done():
                continue
            del self.getting[worker]
            key = task.result()
            assert key not in self.holding.values(), f"{key} handed to two workers"
            assert key in self.needs, f"{key} handed out though nobody added it"
            self.needs.discard(key)
            self.holding[worker] = key

    def add_key(self, key: str, priority: int) -> None:
        queue = self.queue
        if isinstance(queue, PriorityQueue):
            self.call(lambda: queue.add(key, priority=priority))
        else:
            self.call(lambda: queue.add(key))

    # -- rules -------------------------------------------------------------------------------

    @rule(key=KEYS, priority=PRIORITIES)
    def add(self, key: str, priority: int) -> None:
        self.add_key(key, priority)
        self.needs.add(key)
        self.settle()

    @rule(key=KEYS, delay=DELAYS, priority=PRIORITIES)
    def add_after(self, key: str, delay: float, priority: int) -> None:
        queue = self.queue
        if isinstance(queue, PriorityQueue):
            self.call(lambda: queue.add_after(key, delay, priority=priority))
        else:
            self.call(lambda: queue.add_after(key, delay))
        if delay <= 0:
            self.needs.add(key)
        else:
            ready_at = self.clock.now() + delay
            self.due[key] = min(self.due.get(key, ready_at), ready_at)
        self.settle()

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        target = self.clock.now() + seconds
        for key, ready_at in list(self.due.items()):
            if ready_at <= target:
                del self.due[key]
                self.needs.add(key)
        self.run(self.clock.advance(seconds))
        self.collect()

    @precondition(lambda self: len(self.getting) + len(self.holding) < 3)
    @rule(worker=WORKERS)
    def get(self, worker: int) -> None:
        if worker in self.getting or worker in self.holding:
            return

        async def start() -> asyncio.Task[str]:
            return asyncio.create_task(self.queue.get())

        self.getting[worker] = self.run(start())
        self.settle()

    @precondition(lambda self: bool(self.holding))
    @rule(worker=WORKERS)
    def done(self, worker: int) -> None:
        key = self.holding.pop(worker, None)
        if key is None:
            return
        self.call(lambda: self.queue.done(key))
        self.settle()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def nothing_is_lost_while_a_worker_waits(self) -> None:
        if self.getting:
            stranded = self.needs - set(self.holding.values())
            assert not stranded, f"{stranded} queued while a worker waits"

    @invariant()
    def the_queue_agrees_with_the_model(self) -> None:
        stats = self.queue.statistics()
        assert stats.dirty == len(self.needs)
        assert stats.processing == len(self.holding)
        assert stats.waiting == len(self.due)
        assert stats.queued == len(self.needs - set(self.holding.values()))

    def teardown(self) -> None:
        try:
            self.run(self.clock.advance(max(self.due.values(), default=0.0)))
            for key in self.due:
                self.needs.add(key)
            self.due.clear()
            self.collect()
            for _ in range(20):
                for worker in list(self.holding):
                    self.done(worker)
                for worker in range(3):
                    self.get(worker)
                if not self.needs:
                    break
            assert not self.needs, f"{self.needs} never delivered"
            self.call(self.queue.shutdown)
            self.run(self.clock.settle())
            for task in self.getting.values():
                assert task.done()
                assert isinstance(task.exception(), QueueShutDown)
        finally:
            self.runner.close()


class PriorityQueueMachine(QueueMachine):
    with_priorities = True


machine_settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestDelayingQueueInterleavings = QueueMachine.TestCase
TestDelayingQueueInterleavings.settings = machine_settings
TestPriorityQueueInterleavings = PriorityQueueMachine.TestCase
TestPriorityQueueInterleavings.settings = machine_settings
