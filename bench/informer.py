"""Informer event throughput against the local API server, with the write floor beside it.

A ``ControlPlane`` is started; an informer watches ConfigMaps in a fresh namespace; ``--objects``
ConfigMaps are created by ``--concurrency`` concurrent writers. Reported:

- ``create_seconds``: wall time of the creates alone (the floor: the watch cannot deliver
  events faster than the API server accepts the writes);
- ``events_seconds``: from the first create to the informer having dispatched every ADDED;
- ``events_per_second``: ``objects / events_seconds``;
- ``lag_seconds``: how long after the last create the last event arrived;
- ``relist_seconds``: a second informer's initial LIST (paginated) of all objects to synced.

Run: ``.venv/bin/python -m bench.informer [--objects N] [--concurrency N] [--json]`` (needs the
control plane binaries: ``make envtest``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
import uuid

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NAMESPACES, KubeClient, Resource, RestMetrics
from controller.testing import ControlPlane

CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap")


async def run(*, objects: int, concurrency: int) -> dict[str, float | int | str]:
    async with ControlPlane(install_crds=False) as cp, cp.api_client() as api:
        kube = KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        await kube.create(NAMESPACES, body={"metadata": {"name": ns}})
        seen = 0
        done = asyncio.Event()

        def count(event: InformerEvent) -> None:
            nonlocal seen
            if event.type == "ADDED":
                seen += 1
                if seen == objects:
                    done.set()

        informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=ns)
        informer.add_handler(count)
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        names = iter(range(objects))
        loop = asyncio.get_running_loop()

        async def writer() -> None:
            for i in names:
                await kube.create(
                    CONFIGMAPS,
                    namespace=ns,
                    body={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}},
                )

        started = loop.time()
        await asyncio.gather(*(writer() for _ in range(concurrency)))
        created = loop.time()
        await done.wait()
        finished = loop.time()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        relister = Informer(kube=kube, resource=CONFIGMAPS, namespace=ns)
        t0 = time.monotonic()
        relist_task = asyncio.create_task(relister.run())
        await relister.wait_for_sync()
        relist = time.monotonic() - t0
        relist_task.cancel()
        await asyncio.gather(relist_task, return_exceptions=True)
    return {
        "objects": objects,
        "concurrency": concurrency,
        "create_seconds": round(created - started, 3),
        "events_seconds": round(finished - started, 3),
        "events_per_second": round(objects / (finished - started), 1),
        "lag_seconds": round(finished - created, 3),
        "relist_seconds": round(relist, 3),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.informer", description=__doc__)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(objects=args.objects, concurrency=args.concurrency))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    table = Table(title="informer event throughput (local kube-apiserver)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
