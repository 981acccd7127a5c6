"""Work queue throughput: keys/s through add -> get -> done, against a bare asyncio.Queue.

One producer adds ``--ops`` distinct keys in batches of 100 (yielding to the loop between
batches) while ``--workers`` workers loop ``get``/``done``; the clock stops when the last key
is done. The floor is an ``asyncio.Queue`` doing the same (``put_nowait``/``get``/
``task_done``), in the same process and run. Each case runs ``--repeat`` times; the best run
counts; cases take turns within each round so that a noisy machine hurts them alike. A
last case adds ``--ops`` times over 1,000 hot keys, 10,000 adds a loop turn, to show
deduplication (``processed`` is then far below ``--ops``).

Run: ``.venv/bin/python -m bench.queue [--ops N] [--workers N] [--repeat N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from controller.runtime.workqueue import (
    LOW_PRIORITY,
    PriorityQueue,
    QueueShutDown,
    RateLimitingQueue,
    WorkQueue,
    prometheus_metrics,
)

BATCH = 100
HOT_KEYS = 1000


@dataclass(frozen=True)
class Result:
    name: str
    ops: int
    processed: int
    seconds: float
    keys_per_second: float
    relative_to_asyncio_queue: float = 1.0


Case = Callable[[int, int], Coroutine[Any, Any, int]]


async def bare_asyncio_queue(ops: int, workers: int) -> int:
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    processed = 0

    async def worker() -> None:
        nonlocal processed
        while True:
            key = await queue.get()
            queue.task_done()
            if key is None:
                return
            processed += 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for start in range(0, ops, BATCH):
        for key in range(start, min(start + BATCH, ops)):
            queue.put_nowait(key)
        await asyncio.sleep(0)
    for _ in range(workers):
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return processed


async def drive(
    queue: WorkQueue[int], ops: int, workers: int, *, keys: int | None = None, batch: int = BATCH
) -> int:
    processed = 0

    async def worker() -> None:
        nonlocal processed
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            queue.done(key)
            processed += 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for start in range(0, ops, batch):
        for key in range(start, min(start + batch, ops)):
            queue.add(key if keys is None else key % keys)
        await asyncio.sleep(0)
    queue.shutdown()
    await asyncio.gather(*tasks)
    return processed


async def plain_queue(ops: int, workers: int) -> int:
    return await drive(WorkQueue(), ops, workers)


async def plain_queue_with_metrics(ops: int, workers: int) -> int:
    metrics = prometheus_metrics(CollectorRegistry())
    return await drive(WorkQueue(name="bench", metrics=metrics), ops, workers)


async def rate_limiting_queue(ops: int, workers: int) -> int:
    return await drive(RateLimitingQueue(), ops, workers)


async def priority_queue(ops: int, workers: int) -> int:
    queue: PriorityQueue[int] = PriorityQueue()
    processed = 0

    async def worker() -> None:
        nonlocal processed
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            queue.done(key)
            processed += 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for start in range(0, ops, BATCH):
        for key in range(start, min(start + BATCH, ops)):
            queue.add(key, priority=LOW_PRIORITY if key % 10 else 0)
        await asyncio.sleep(0)
    queue.shutdown()
    await asyncio.gather(*tasks)
    return processed


async def priority_queue_with_metrics(ops: int, workers: int) -> int:
    metrics = prometheus_metrics(CollectorRegistry())
    return await drive(PriorityQueue(name="bench", metrics=metrics), ops, workers)


async def hot_keys(ops: int, workers: int) -> int:
    return await drive(WorkQueue(), ops, workers, keys=HOT_KEYS, batch=10 * HOT_KEYS)


CASES: list[tuple[str, Case]] = [
    ("asyncio.Queue (floor)", bare_asyncio_queue),
    ("WorkQueue", plain_queue),
    ("WorkQueue + metrics", plain_queue_with_metrics),
    ("RateLimitingQueue", rate_limiting_queue),
    ("PriorityQueue (2 priorities)", priority_queue),
    ("PriorityQueue + metrics", priority_queue_with_metrics),
    (f"WorkQueue, {HOT_KEYS:,} hot keys (dedupe)", hot_keys),
]


def measure(*, ops: int, workers: int, repeat: int) -> list[tuple[float, int]]:
    """Best seconds and keys processed per case, the cases taking turns in each round."""
    best = [float("inf")] * len(CASES)
    processed = [0] * len(CASES)
    for _ in range(repeat):
        for index, (_, case) in enumerate(CASES):
            with asyncio.Runner() as runner:
                started = time.perf_counter()
                processed[index] = runner.run(case(ops, workers))
                best[index] = min(best[index], time.perf_counter() - started)
    return list(zip(best, processed, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__)
    parser.add_argument("--ops", type=int, default=200_000, help="keys added per run")
    parser.add_argument("--workers", type=int, default=10, help="concurrent workers")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; best counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    results = [
        Result(
            name=name,
            ops=args.ops,
            processed=processed,
            seconds=seconds,
            keys_per_second=args.ops / seconds,
        )
        for (name, _), (seconds, processed) in zip(
            CASES, measure(ops=args.ops, workers=args.workers, repeat=args.repeat), strict=True
        )
    ]
    floor = results[0].keys_per_second
    results = [
        Result(**{**asdict(r), "relative_to_asyncio_queue": r.keys_per_second / floor})
        for r in results
    ]

    if args.json:
        report = {
            "python": platform.python_version(),
            "ops": args.ops,
            "workers": args.workers,
            "repeat": args.repeat,
            "results": [asdict(r) for r in results],
        }
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    table = Table(
        title=f"work queue throughput: {args.ops:,} adds, {args.workers} workers, "
        f"best of {args.repeat} (Python {platform.python_version()})"
    )
    table.add_column("queue")
    table.add_column("processed", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("adds/s", justify="right")
    table.add_column("µs/key", justify="right")
    table.add_column("vs asyncio.Queue", justify="right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.processed:,}",
            f"{r.seconds:.3f}",
            f"{r.keys_per_second:,.0f}",
            f"{1e6 / r.keys_per_second:.2f}",
            f"{r.relative_to_asyncio_queue:.2f}x",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
