"""AWS API cost of the AWSMachinePool reconciler: steady state and a fleet-wide scale-out.

One process runs a real local control plane (``ControlPlane``: etcd + kube-apiserver with
our CRDs), ``moto`` in server mode behind the counting :class:`FaultProxy` (no faults), and a
``Manager`` with the AWS infrastructure reconciler wired as ``machinepool-controller run
--controllers aws`` wires it (:func:`setup_infrastructure_controller`, concurrency 10, one
:class:`AwsProvider` for the region). The core MachinePool reconciler is not run: the
benchmark creates each ``MachinePool`` and its ``AWSMachinePool`` with the controller owner
reference the core would set, so what is measured is the AWS side alone. Every pool's
bootstrap Secret is labelled (in the controller's cache).

Phases, each counted by action at the proxy (every HTTP call our client makes):

- **create**: ``--pools`` pools of 1 replica, created by ``--writers`` concurrent writers,
  until every AWSMachinePool reports 1 instance;
- **steady**: ``--windows`` times ``--poll`` seconds with nothing changing (after one poll of
  settling). Target: at most one ``DescribeAutoScalingGroups`` per 100 pools per poll, and no
  writes;
- **scale-out**: every MachinePool's ``spec.replicas`` 1 → ``--scale-to`` at once, until
  every AWSMachinePool reports that many instances.

Run: ``.venv/bin/python -m bench.aws [--pools 200] [--poll 15] [--json]`` (needs the control
plane binaries: ``make envtest``). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from controller.api.kinds import AWS_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options
from controller.infrastructure.setup import setup_infrastructure_controller
from controller.providers.aws.adapter import AwsPoolAdapter
from controller.providers.aws.client import AwsApi
from controller.providers.aws.emulator import FaultProxy, MotoServer
from controller.providers.aws.provider import AwsProvider
from controller.providers.registry import CloudKind
from controller.runtime.informer import InformerEvent
from controller.runtime.kube import NAMESPACES, SECRETS, KubeClient, RestMetrics
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing import ControlPlane

REGION = "us-east-1"
NAMESPACE = "bench-aws"
WRITES = frozenset(
    {
        "CreateAutoScalingGroup",
        "UpdateAutoScalingGroup",
        "SetDesiredCapacity",
        "TerminateInstanceInAutoScalingGroup",
        "CreateOrUpdateTags",
        "DeleteTags",
        "SuspendProcesses",
        "ResumeProcesses",
        "PutLifecycleHook",
        "DeleteLifecycleHook",
        "CreateLaunchTemplate",
        "CreateLaunchTemplateVersion",
        "ModifyLaunchTemplate",
        "DeleteLaunchTemplateVersions",
        "DeleteAutoScalingGroup",
        "DeleteLaunchTemplate",
        "StartInstanceRefresh",
    }
)
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pool(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "replicas": replicas,
            "template": {
                "spec": {
                    "clusterName": "c1",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": {
                        "apiGroup": AWS_MACHINE_POOL.group,
                        "kind": AWS_MACHINE_POOL.kind,
                        "name": name,
                    },
                }
            },
        },
    }


def _infra(name: str, owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": MACHINE_POOL.api_version,
                    "kind": MACHINE_POOL.kind,
                    "name": name,
                    "uid": owner_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "minSize": 0,
            "maxSize": 10,
            "availabilityZones": ["us-east-1a", "us-east-1b"],
            "awsLaunchTemplate": {"instanceType": "t3.large", "ami": {"id": "ami-12c6146b"}},
        },
    }


class Watch:
    """Wakes waiters whenever an AWSMachinePool changes (informer events, no polling)."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.replicas: dict[str, int] = {}

    def on_event(self, event: InformerEvent) -> None:
        self.replicas[event.key] = int((event.obj.get("status") or {}).get("replicas") or 0)
        self.changed.set()

    async def until(self, done: Callable[[], bool], *, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def _summary(calls: Counter[str], seconds: float, pools: int) -> dict[str, Any]:
    total = sum(calls.values())
    writes = sum(n for action, n in calls.items() if action in WRITES)
    return {
        "seconds": round(seconds, 2),
        "calls": total,
        "writes": writes,
        "calls_per_minute": round(total * 60 / seconds, 1) if seconds else None,
        "calls_per_pool": round(total / pools, 3),
        "by_action": dict(sorted(calls.items())),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(_FAKE_ENV)
    results: dict[str, Any] = {"pools": args.pools, "poll_seconds": args.poll}
    async with (
        ControlPlane() as cp,
        cp.api_client() as api_client,
        MotoServer() as moto,
        FaultProxy(upstream=moto.url) as proxy,
    ):
        registry = CollectorRegistry()
        kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
        bench_kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
        await bench_kube.create(NAMESPACES, body={"metadata": {"name": NAMESPACE}})
        await bench_kube.create(
            SECRETS, namespace=NAMESPACE,
            body={
                "metadata": {"name": "boot", "labels": {"cluster.x-k8s.io/cluster-name": "c1"}},
                "data": {"value": base64.b64encode(b"#cloud-config\n").decode()},
            },
        )  # fmt: skip
        manager = Manager(
            kube=kube, registry=registry,
            options=ManagerOptions(metrics_address="0", health_address="0"),
        )  # fmt: skip
        aws_api = AwsApi(region=REGION, endpoint_url=proxy.url, registry=registry)
        async with aws_api, AwsProvider(region=REGION, api=aws_api, poll_interval=args.poll) as aws:
            options = controller_options(
                manager=manager,
                namespace=NAMESPACE,
                recorder=None,
                concurrency=10,
                reconcile_timeout=60,
            )
            adapter = AwsPoolAdapter(secrets=options.informers.secrets, templates=aws.templates)
            setup_infrastructure_controller(
                options=options,
                cloud=CloudKind(adapter=adapter, provider=aws, steady_poll=args.poll),
            )
            watch = Watch()
            manager.informer(AWS_MACHINE_POOL, namespace=NAMESPACE).add_handler(watch.on_event)
            shutdown = asyncio.Event()
            task = asyncio.create_task(manager.run(shutdown=shutdown))
            try:
                await manager.controllers_started.wait()
                names = [f"p{i:04d}" for i in range(args.pools)]

                def at(replicas: int) -> Callable[[], bool]:
                    def check() -> bool:
                        return sum(
                            1 for n in names if watch.replicas.get(f"{NAMESPACE}/{n}") == replicas
                        ) == len(names)

                    return check

                # --- create
                proxy.reset_counts()
                started = time.monotonic()
                queue: asyncio.Queue[str] = asyncio.Queue()
                for name in names:
                    queue.put_nowait(name)

                async def writer() -> None:
                    while not queue.empty():
                        name = queue.get_nowait()
                        pool = await bench_kube.create(
                            MACHINE_POOL, namespace=NAMESPACE, body=_pool(name, 1)
                        )
                        await bench_kube.create(
                            AWS_MACHINE_POOL, namespace=NAMESPACE,
                            body=_infra(name, pool["metadata"]["uid"]),
                        )  # fmt: skip

                await asyncio.gather(*(writer() for _ in range(args.writers)))
                await watch.until(at(1), timeout=args.timeout)
                results["create"] = _summary(
                    proxy.record.calls, time.monotonic() - started, args.pools
                )
                _log(
                    f"create: {results['create']['seconds']} s, {results['create']['calls']} calls"
                )

                # --- steady
                await asyncio.sleep(args.poll)  # one poll of settling (busy polls end)
                proxy.reset_counts()
                started = time.monotonic()
                await asyncio.sleep(args.poll * args.windows)
                steady = _summary(proxy.record.calls, time.monotonic() - started, args.pools)
                polls = steady["seconds"] / args.poll
                describes = proxy.record.calls["DescribeAutoScalingGroups"]
                steady["describe_per_100_pools_per_poll"] = round(
                    describes / polls / (args.pools / 100), 3
                )
                results["steady"] = steady
                _log(f"steady: {steady['calls']} calls, {steady['writes']} writes")

                # --- scale-out
                proxy.reset_counts()
                started = time.monotonic()
                queue = asyncio.Queue()
                for name in names:
                    queue.put_nowait(name)

                async def scaler() -> None:
                    while not queue.empty():
                        name = queue.get_nowait()
                        await bench_kube.merge_patch(
                            MACHINE_POOL, namespace=NAMESPACE, name=name, subresource="scale",
                            patch={"spec": {"replicas": args.scale_to}},
                        )  # fmt: skip

                await asyncio.gather(*(scaler() for _ in range(args.writers)))
                await watch.until(at(args.scale_to), timeout=args.timeout)
                results["scale_out"] = _summary(
                    proxy.record.calls, time.monotonic() - started, args.pools
                )
                _log(f"scale-out: {results['scale_out']['seconds']} s")
            finally:
                shutdown.set()
                await asyncio.wait_for(task, 30)
    return results


def _print(results: dict[str, Any]) -> None:
    console = Console()
    table = Table(
        title=f"AWS API calls, {results['pools']} pools, poll {results['poll_seconds']} s"
    )
    for column in ("phase", "seconds", "calls", "writes", "calls/min", "calls/pool", "by action"):
        table.add_column(column)
    for phase in ("create", "steady", "scale_out"):
        r = results[phase]
        actions = ", ".join(f"{k} {v}" for k, v in r["by_action"].items())
        table.add_row(
            phase, str(r["seconds"]), str(r["calls"]), str(r["writes"]),
            str(r["calls_per_minute"]), str(r["calls_per_pool"]), actions,
        )  # fmt: skip
    console.print(table)
    console.print(
        "steady DescribeAutoScalingGroups per 100 pools per poll: "
        f"{results['steady']['describe_per_100_pools_per_poll']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aws", description=__doc__)
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--poll", type=float, default=15.0, help="steady poll and cache ttl (s)")
    parser.add_argument("--windows", type=int, default=4, help="steady polls measured")
    parser.add_argument("--scale-to", type=int, default=3)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    configure_logging(level=args.log_level)  # to stderr: stdout is the result
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)


if __name__ == "__main__":
    main()
