"""The product as deployed: `machinepool-controller simulator` and `machinepool-controller run`
as separate processes against the real API server; the controller is SIGKILLed mid-scale and
restarted, and the pool still converges with no duplicate instance and no lost request."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import MACHINE_POOL
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import NODES, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.test_cli import spawned


async def _setup(kube: KubeClient, control_plane: ControlPlane, ns: str, replicas: int) -> None:
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=ns)
    await create_inmemory_pool(
        kube=kube,
        namespace=ns,
        replicas=replicas,
        template={"version": "1", "bootDelaySeconds": 1, "readyDelaySeconds": 0},
    )


async def _group(port: int, name: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/v1/groups/{name}") as resp,
    ):
        if resp.status == 404:
            return {}
        data: dict[str, Any] = await resp.json()
        return data


async def test_controller_killed_mid_scale_converges_without_duplicates(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    sim_port = free_port()
    state = tmp_path / "cloud.json"
    kubeconfig = str(control_plane.kubeconfig_path)
    run_args = [
        "run", "--kubeconfig", kubeconfig, "--namespace", namespace,
        "--inmemory-endpoint", f"http://127.0.0.1:{sim_port}",
        "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
    ]  # fmt: skip
    group = inmemory_group_name(namespace=namespace, name="p1")

    async def pool() -> dict[str, Any]:
        return await kube.get(MACHINE_POOL, namespace=namespace, name="p1")

    async def converged(n: int) -> bool:
        status = (await pool()).get("status", {})
        return bool(status.get("phase") == "Running" and status.get("readyReplicas") == n)

    await _setup(kube, control_plane, namespace, replicas=2)
    async with spawned(
        "simulator", "--listen", f"127.0.0.1:{sim_port}", "--state-file", str(state),
        "--kubeconfig", kubeconfig, log=tmp_path / "simulator.log",
    ):  # fmt: skip
        async with spawned(*run_args, log=tmp_path / "first.log") as first:
            await until(lambda: converged(2), timeout=60, what="2 replicas Running")
            await kube.merge_patch(
                MACHINE_POOL, namespace=namespace, name="p1", subresource="scale",
                patch={"spec": {"replicas": 6}},
            )  # fmt: skip

            async def scaling() -> bool:
                return int((await _group(sim_port, group)).get("desiredCapacity", 0)) > 2

            await until(scaling, timeout=30, what="the scale-out to reach the cloud")
            os.killpg(first.pid, signal.SIGKILL)
            await first.wait()
        async with spawned(*run_args, log=tmp_path / "second.log"):
            await until(lambda: converged(6), timeout=90, what="6 replicas after the restart")
            cloud = await _group(sim_port, group)
            live = [i for i in cloud["instances"] if i["state"] in ("pending", "running")]
            assert cloud["desiredCapacity"] == 6
            assert len(live) == 6
            assert len({i["instanceId"] for i in live}) == 6
            ids = sorted((await pool())["spec"]["providerIDList"])
            assert ids == sorted(i["providerId"] for i in live)
    nodes = (await kube.list(NODES))["items"]
    for node in nodes:
        if node["metadata"]["name"].startswith(namespace):
            await kube.delete(NODES, name=node["metadata"]["name"])
