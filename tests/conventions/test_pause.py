"""A paused pool is never acted on: what ``clusterctl move`` relies on.

``clusterctl move`` sets ``Cluster.spec.paused`` on the source before copying objects and
deleting them there. While paused, neither reconciler may change the MachinePool, the infra
pool or the cloud group, whatever happens to the objects (here: a scale) — checked across
several resyncs that replay every pool to both reconcilers — and un-pausing resumes.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE_POOL
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.conventions._running import running


def _paused(pool: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Paused" and c["status"] == "True"
        for c in (pool.get("status") or {}).get("conditions", [])
    )


async def test_cluster_paused_mid_move_freezes_the_pool_until_unpaused(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await create_inmemory_pool(kube=kube, namespace=namespace, replicas=2)
    async with running(kube=kube, namespace=namespace, sync_period=0.5) as run:
        await until(lambda: run.running_replicas("p1", 2), timeout=60, what="2 replicas")

        await kube.merge_patch(
            CLUSTER, namespace=namespace, name="c1", patch={"spec": {"paused": True}}
        )

        async def paused() -> bool:
            return _paused(await run.pool("p1"))

        await until(paused, timeout=30, what="Paused=True")
        await kube.merge_patch(
            MACHINE_POOL, namespace=namespace, name="p1", subresource="scale",
            patch={"spec": {"replicas": 4}},
        )  # fmt: skip

        # The paused reconcile only restamps its own bookkeeping (Paused condition and
        # observedGeneration for the new generation), as Cluster API does; then nothing.
        async def acknowledged() -> bool:
            pool = await run.pool("p1")
            return bool(
                _paused(pool)
                and (pool.get("status") or {}).get("observedGeneration")
                == pool["metadata"]["generation"]
            )

        await until(acknowledged, timeout=30, what="the pause acknowledged at the new generation")
        pool_before, infra_before = await run.pool("p1"), await run.infra("p1")
        core = run.reconciles("machinepool")
        infra = run.reconciles("inmemorymachinepool")

        # Every resync replays the pool to both reconcilers; let several go by.
        async def resynced() -> bool:
            return (
                run.reconciles("machinepool") >= core + 3
                and run.reconciles("inmemorymachinepool") >= infra + 3
            )

        await until(resynced, timeout=30, what="three reconciles of each half while paused")
        pool_after, infra_after = await run.pool("p1"), await run.infra("p1")
        assert (
            pool_after["metadata"]["resourceVersion"] == pool_before["metadata"]["resourceVersion"]
        )
        assert (
            infra_after["metadata"]["resourceVersion"]
            == infra_before["metadata"]["resourceVersion"]
        )
        assert pool_after["spec"]["replicas"] == 4
        assert (pool_after.get("status") or {}).get("replicas") == 2
        group = run.simulator.inspect(name=inmemory_group_name(namespace=namespace, name="p1"))
        assert group is not None
        assert group.desired == 2
        assert run.live("p1") == 2

        await kube.merge_patch(
            CLUSTER, namespace=namespace, name="c1", patch={"spec": {"paused": False}}
        )
        await until(lambda: run.running_replicas("p1", 4), timeout=60, what="4 after unpause")
        assert not _paused(await run.pool("p1"))
