"""The manager against the real API server: informers feed a controller, /metrics shows the
controller-runtime and workqueue series moving, probes report sync, shutdown drains."""

from __future__ import annotations

import asyncio

import aiohttp
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.controller import Controller, Result
from controller.runtime.informer import InformerEvent
from controller.runtime.kube import KubeClient, Resource, RestMetrics
from controller.runtime.manager import LeaderElectionOptions, Manager, ManagerOptions
from controller.testing.waiting import until

CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap")


class Recording:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    async def reconcile(self, key: str) -> Result:
        self.keys.append(key)
        await self.release.wait()
        return Result()


def _sample(text: str, metric: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def test_manager_runs_a_controller_and_exports_metrics(
    api_client: client.ApiClient, namespace: str
) -> None:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            graceful_shutdown_timeout=5,
            leader_election=LeaderElectionOptions(
                namespace=namespace, lease_duration=4, renew_deadline=3, retry_period=0.5
            ),
        ),
    )
    reconciler = Recording()
    ctrl = Controller(name="configmap", reconciler=reconciler, registry=registry, concurrency=2)
    informer = manager.informer(CONFIGMAPS, namespace=namespace)
    assert manager.informer(CONFIGMAPS, namespace=namespace) is informer

    def keys(event: InformerEvent) -> list[str]:
        return [event.key]

    ctrl.watch(informer, keys)
    manager.add_controller(ctrl)
    await kube.create(CONFIGMAPS, namespace=namespace, body={"metadata": {"name": "one"}})

    shutdown = asyncio.Event()
    run = asyncio.create_task(manager.run(shutdown=shutdown))
    try:
        await until(manager.controllers_started.is_set, what="controllers to start")
        await until(lambda: f"{namespace}/one" in reconciler.keys, what="first reconcile")
        await kube.create(CONFIGMAPS, namespace=namespace, body={"metadata": {"name": "two"}})
        await until(lambda: f"{namespace}/two" in reconciler.keys, what="reconcile of a change")

        assert manager.probes.metrics_port is not None
        assert manager.probes.health_port is not None
        status, body = await _get(manager.probes.health_port, "/readyz?verbose")
        assert status == 200
        assert "[+]informers ok" in body
        status, body = await _get(manager.probes.health_port, "/healthz?verbose")
        assert status == 200
        assert "[+]leaderElection ok" in body

        _, text = await _get(manager.probes.metrics_port, "/metrics")
        assert _sample(text, "controller_runtime_reconcile_total",
                       controller="configmap", result="success") == 2  # fmt: skip
        assert _sample(text, "workqueue_adds_total", name="configmap") == 2
        assert _sample(text, "controller_runtime_active_workers", controller="configmap") == 0
        assert _sample(text, "leader_election_master_status",
                       name="machinepool-controller-leader-election") == 1  # fmt: skip
        assert (_sample(text, "rest_client_requests_total", code="200", method="GET") or 0) > 0
        for name in (
            "controller_runtime_reconcile_errors_total",
            "controller_runtime_reconcile_time_seconds_bucket",
            "workqueue_depth",
            "workqueue_queue_duration_seconds_bucket",
            "workqueue_work_duration_seconds_bucket",
            "workqueue_retries_total",
            "workqueue_unfinished_work_seconds",
            "workqueue_longest_running_processor_seconds",
        ):
            assert name in text, name

        # A reconcile in flight during shutdown is allowed to finish.
        reconciler.release.clear()
        await kube.create(CONFIGMAPS, namespace=namespace, body={"metadata": {"name": "three"}})
        await until(lambda: f"{namespace}/three" in reconciler.keys, what="third reconcile")
        shutdown.set()
        await asyncio.sleep(0.2)
        assert not run.done()
        reconciler.release.set()
        async with asyncio.timeout(10):
            await run
    finally:
        shutdown.set()
        reconciler.release.set()
        await asyncio.wait_for(run, 15)
