"""``--watch-filter``: two controllers on one API server, each reconciling only its own pools.

Pools are labelled ``cluster.x-k8s.io/watch-filter=team-a`` / ``team-b``; a third pool has no
label. Each controller has its own simulator, so a group in the wrong simulator, or a
finalizer on the unlabelled pool, would show a controller touching what is not its own.
"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.conventions._running import running

FILTER = "cluster.x-k8s.io/watch-filter"


async def _labelled_pool(kube: KubeClient, namespace: str, name: str, team: str | None) -> None:
    await create_inmemory_pool(kube=kube, namespace=namespace, name=name, replicas=2)
    if team is not None:
        for kind in (MACHINE_POOL, IN_MEMORY_MACHINE_POOL):
            await kube.merge_patch(
                kind, namespace=namespace, name=name,
                patch={"metadata": {"labels": {FILTER: team}}},
            )  # fmt: skip


async def test_two_controllers_with_different_watch_filters_each_reconcile_their_own(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await _labelled_pool(kube, namespace, "pa", "team-a")
    await _labelled_pool(kube, namespace, "pb", "team-b")
    await _labelled_pool(kube, namespace, "pc", None)

    async with (
        running(kube=kube, namespace=namespace, watch_filter="team-a") as a,
        running(kube=kube, namespace=namespace, watch_filter="team-b") as b,
    ):
        await asyncio.gather(
            until(lambda: a.running_replicas("pa", 2), timeout=60, what="pa Running"),
            until(lambda: b.running_replicas("pb", 2), timeout=60, what="pb Running"),
        )
        # Each simulator holds only its own pool's group.
        for mine, other, run in (("pa", "pb", a), ("pb", "pa", b)):
            assert (
                run.simulator.inspect(name=inmemory_group_name(namespace=namespace, name=mine))
                is not None
            )
            assert (
                run.simulator.inspect(name=inmemory_group_name(namespace=namespace, name=other))
                is None
            )
            assert (
                run.simulator.inspect(name=inmemory_group_name(namespace=namespace, name="pc"))
                is None
            )
        # Both controllers have seen every pool in the namespace (initial LIST) by now;
        # neither has touched the unlabelled one.
        unlabelled = await a.pool("pc")
        assert "finalizers" not in unlabelled["metadata"]
        assert "status" not in unlabelled
        assert "finalizers" not in (await a.infra("pc"))["metadata"]

        # Labelling the third pool for team-a hands it to a (its filtered watch sees it).
        for kind in (MACHINE_POOL, IN_MEMORY_MACHINE_POOL):
            await kube.merge_patch(
                kind, namespace=namespace, name="pc",
                patch={"metadata": {"labels": {FILTER: "team-a"}}},
            )  # fmt: skip
        await until(lambda: a.running_replicas("pc", 2), timeout=60, what="pc Running under a")
        assert b.simulator.inspect(name=inmemory_group_name(namespace=namespace, name="pc")) is None
