"""Both halves end to end: the MachinePool reconciler and the infrastructure reconciler driving
the in-memory simulator, whose instances register real Nodes in the workload cluster (the same
local API server, reached through <cluster>-kubeconfig)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options, workload_clusters
from controller.infrastructure.setup import setup_infrastructure_controller
from controller.machinepool.setup import setup_machinepool_controller
from controller.providers.inmemory.adapter import InMemoryPoolAdapter, inmemory_group_name
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind
from controller.runtime.kube import NODES, ApiError, KubeClient, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing import ControlPlane
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until

Obj = dict[str, Any]


@dataclass
class Env:
    kube: KubeClient
    namespace: str
    simulator: Simulator

    async def pool(self) -> Obj:
        return await self.kube.get(MACHINE_POOL, namespace=self.namespace, name="p1")

    async def converged(self, replicas: int) -> bool:
        pool = await self.pool()
        status = pool.get("status", {})
        return (
            status.get("phase") == "Running"
            and status.get("replicas") == replicas
            and status.get("readyReplicas") == replicas
            and len(pool["spec"].get("providerIDList", [])) == replicas
            and len(status.get("nodeRefs", [])) == replicas
        )

    async def scale(self, replicas: int) -> None:
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=self.namespace, name="p1", subresource="scale",
            patch={"spec": {"replicas": replicas}},
        )  # fmt: skip

    async def nodes(self) -> list[Obj]:
        listing = await self.kube.list(NODES)
        return [
            n for n in listing["items"]
            if n["spec"].get("providerID", "").find(f"/{self.namespace}-") >= 0
            or n["metadata"]["name"].startswith(self.namespace)
        ]  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="0", health_address="0", graceful_shutdown_timeout=5
        ),
    )
    async with (
        contextlib.aclosing(KubeNodeRegistrar(management=kube)) as registrar,
        Simulator(registrar=registrar, seed=1) as simulator,
    ):
        options = controller_options(
            manager=manager,
            namespace=namespace,
            recorder=None,
            concurrency=4,
            reconcile_timeout=30,
        )
        setup_machinepool_controller(
            options=options, workloads=workload_clusters(options=options),
            infra_kinds=[IN_MEMORY_MACHINE_POOL],
        )  # fmt: skip
        setup_infrastructure_controller(
            options=options,
            cloud=CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator, busy_poll=0.5,
                            steady_poll=3),
        )  # fmt: skip
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown))
        environment = Env(kube=kube, namespace=namespace, simulator=simulator)
        try:
            await until(manager.controllers_started.is_set, what="controllers")
            yield environment
        finally:
            shutdown.set()
            await asyncio.wait_for(task, 15)
            for node in await environment.nodes():
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])


async def _create_pool(env: Env, *, replicas: int, **infra_spec: Any) -> None:
    template = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 1,
                "zones": ["zone-a", "zone-b"]}  # fmt: skip
    await create_inmemory_pool(
        kube=env.kube, namespace=env.namespace, replicas=replicas, template=template,
        **infra_spec,
    )  # fmt: skip


async def test_create_scale_out_in_to_zero_and_back_then_delete(env: Env) -> None:
    await _create_pool(env, replicas=3)
    await until(lambda: env.converged(3), timeout=60, what="3 replicas Running")
    pool = await env.pool()
    node_ids = {n["spec"]["providerID"] for n in await env.nodes()}
    assert set(pool["spec"]["providerIDList"]) <= node_ids

    await env.scale(5)
    await until(lambda: env.converged(5), timeout=60, what="scale out to 5")
    before = set((await env.pool())["spec"]["providerIDList"])

    await env.scale(1)
    await until(lambda: env.converged(1), timeout=60, what="scale in to 1")
    after = set((await env.pool())["spec"]["providerIDList"])
    assert after < before

    async def retired_nodes_gone() -> bool:
        left = {n["spec"]["providerID"] for n in await env.nodes()}
        return left == after

    await until(retired_nodes_gone, timeout=30, what="Nodes of removed instances deleted")

    await env.scale(0)
    await until(lambda: env.converged(0), timeout=60, what="scale to 0")
    await env.scale(2)
    await until(lambda: env.converged(2), timeout=60, what="back from 0 to 2")

    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="p1")

    async def all_gone() -> bool:
        try:
            await env.pool()
        except ApiError as exc:
            return (
                exc.not_found
                and env.simulator.inspect(
                    name=inmemory_group_name(namespace=env.namespace, name="p1")
                )
                is None
            )
        return False

    await until(all_gone, timeout=60, what="pool, infra pool and cloud group deleted")


async def test_replicas_outside_min_max_is_a_condition_not_a_cloud_call(env: Env) -> None:
    await _create_pool(env, replicas=5, maxSize=3)

    async def reported() -> bool:
        infra = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
        conds = infra.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["reason"] == "ReplicasOutOfRange" for c in conds)

    await until(reported, what="ReplicasOutOfRange")
    assert (
        env.simulator.inspect(name=inmemory_group_name(namespace=env.namespace, name="p1")) is None
    )
    await env.scale(3)
    await until(lambda: env.converged(3), timeout=60, what="convergence once within bounds")


@pytest.mark.parametrize("annotation", ["cluster-autoscaler"])
async def test_replicas_managed_by_copies_the_group_size_back(env: Env, annotation: str) -> None:
    await _create_pool(env, replicas=2)
    await until(lambda: env.converged(2), timeout=60, what="2 replicas")
    await env.kube.merge_patch(
        MACHINE_POOL, namespace=env.namespace, name="p1",
        patch={"metadata": {"annotations": {"cluster.x-k8s.io/replicas-managed-by": annotation}}},
    )  # fmt: skip
    # The external autoscaler resizes the cloud group directly.
    await env.simulator.set_capacity(
        name=inmemory_group_name(namespace=env.namespace, name="p1"), desired=4
    )

    async def followed() -> bool:
        pool = await env.pool()
        return bool(
            pool["spec"].get("replicas") == 4 and pool.get("status", {}).get("replicas") == 4
        )

    await until(followed, timeout=60, what="spec.replicas following the group")


async def test_kubectl_scale_works_as_cluster_autoscaler_and_people_use_it(
    env: Env, kubeconfig_path: str
) -> None:
    await _create_pool(env, replicas=1)
    await until(lambda: env.converged(1), timeout=60, what="1 replica")
    kubectl = Path(sys.executable).parent / "kubectl"
    proc = await asyncio.create_subprocess_exec(
        str(kubectl), "scale", "machinepool", "p1", "--replicas=3", "-n", env.namespace,
        env={**os.environ, "KUBECONFIG": kubeconfig_path},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"scaled" in out
    await until(lambda: env.converged(3), timeout=60, what="3 replicas after kubectl scale")
    proc = await asyncio.create_subprocess_exec(
        str(kubectl), "get", "mp", "p1", "-n", env.namespace, "--no-headers",
        env={**os.environ, "KUBECONFIG": kubeconfig_path}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert b"Running" in out
