"""``machinepool-controller run --namespace a,b`` as deployed (its own process, the in-process
simulator): pools in both listed namespaces converge; a pool in a third namespace, there
before the controller started, is never touched (no finalizer or status on it or its
InMemoryMachinePool, no Machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE, MACHINE_POOL
from controller.runtime.kube import KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.test_cli import spawned


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


async def test_run_with_two_namespaces_reconciles_both_and_ignores_a_third(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    two_more_namespaces: tuple[str, str],
    tmp_path: Path,
) -> None:
    kube = _kube(api_client)
    a, (b, outside) = namespace, two_more_namespaces
    for ns in (a, b, outside):
        await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=ns)
        await create_inmemory_pool(kube=kube, namespace=ns, replicas=1)

    async def pool(ns: str) -> dict[str, Any]:
        return await kube.get(MACHINE_POOL, namespace=ns, name="p1")

    async def running(ns: str) -> bool:
        status = (await pool(ns)).get("status", {})
        return bool(status.get("phase") == "Running" and status.get("readyReplicas") == 1)

    async with spawned(
        "run", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", f"{a},{b}",
        "--metrics-bind-address", "0",
        "--health-probe-bind-address", "0", log=tmp_path / "controller.log",
    ):  # fmt: skip
        await until(lambda: running(a), timeout=90, what=f"the pool in {a} Running")
        await until(lambda: running(b), timeout=90, what=f"the pool in {b} Running")
        # All three pools were in the caches' first LIST (had the third been watched, its
        # finalizer would be the first write, long before the other two ran their machines).
        ignored = await pool(outside)
        assert not ignored["metadata"].get("finalizers"), ignored["metadata"]
        assert "status" not in ignored
        infra = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=outside, name="p1")
        assert not infra["metadata"].get("finalizers"), infra["metadata"]
        assert "status" not in infra
        machines = await kube.list(MACHINE, namespace=outside)
        assert machines["items"] == []
