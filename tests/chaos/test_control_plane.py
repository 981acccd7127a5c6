"""The management cluster's control plane fails under a running controller.

Each scenario runs the whole product in-process (:func:`tests.chaos._harness.in_process`) on
a control plane of its own (this module's, as the faults would disturb every other test),
converges a fleet, injects the fault mid-change, and then requires the fleet to converge to
a consistent state (nothing lost, duplicated or orphaned) within a bound. The recovery time
(fault cleared → consistent) and the controllers' API requests in that window are recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import NAMESPACES, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.waiting import until
from tests.chaos._harness import (
    LONG,
    Fleet,
    create_pools,
    delete_nodes,
    in_process,
    minus,
    record,
    scale,
    workload_cluster,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration]

POOLS = 6 if LONG else 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plane() -> AsyncIterator[ControlPlane]:
    async with ControlPlane() as cp:
        yield cp


@pytest_asyncio.fixture(loop_scope="session")
async def kube(plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with plane.api_client() as api:
        yield KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


async def _namespace(kube: KubeClient, plane: ControlPlane) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, body={"metadata": {"name": name}})
    await workload_cluster(kube=kube, control_plane=plane, namespace=name)
    return name


async def test_apiserver_killed_and_restarted_mid_scale(
    plane: ControlPlane, kube: KubeClient
) -> None:
    ns = await _namespace(kube, plane)
    pools = {f"p{i}": 2 for i in range(POOLS)}
    try:
        async with in_process(control_plane=plane, namespace=ns) as product:
            fleet = Fleet(kube=kube, namespace=ns, pools=pools, instances=product.instances)
            await create_pools(kube=kube, namespace=ns, pools=pools)
            await fleet.converge(timeout=90)
            fleet.pools = {name: 5 for name in pools}
            await scale(kube=kube, namespace=ns, pools=fleet.pools)

            def scaling() -> bool:
                view = product.simulator.inspect(name=inmemory_group_name(namespace=ns, name="p0"))
                return view is not None and view.desired == 5

            await until(scaling, timeout=30, what="the scale-out reaching the cloud")
            await plane.kill_apiserver()
            outage = 8.0 if LONG else 4.0
            await asyncio.sleep(outage)  # the outage itself: nothing to await
            before = product.requests()
            loop = asyncio.get_running_loop()
            began = loop.time()
            await plane.start_apiserver()
            restarted = loop.time() - began
            recovery = await fleet.converge(timeout=120) + restarted
            used = minus(product.requests(), before)
            record(
                "apiserver killed mid scale-out",
                pools=len(pools), outage_s=outage, recovery_s=round(recovery, 2),
                apiserver_start_s=round(restarted, 2), requests=used,
                problems=len(await fleet.problems()),
            )  # fmt: skip
    finally:
        await delete_nodes(kube=kube, namespace=ns)


async def test_etcd_compacted_watches_resume_with_410(
    plane: ControlPlane, kube: KubeClient
) -> None:
    """History compacted and the API server restarted: every informer's resume point is gone,
    so its re-watch gets 410 Gone and it must relist; changes made meanwhile must not be
    lost (the relist synthesises deletions)."""
    ns = await _namespace(kube, plane)
    pools = {f"p{i}": 2 for i in range(POOLS)}
    try:
        async with in_process(control_plane=plane, namespace=ns) as product:
            fleet = Fleet(kube=kube, namespace=ns, pools=pools, instances=product.instances)
            await create_pools(kube=kube, namespace=ns, pools=pools)
            await fleet.converge(timeout=90)
            relists = product.relists()
            before = product.requests()
            loop = asyncio.get_running_loop()
            began = loop.time()
            # a change, history compacted past every informer's resume point, a restart
            fleet.pools = {name: (1 if i % 2 else 3) for i, name in enumerate(pools)}
            await scale(kube=kube, namespace=ns, pools=fleet.pools)
            await plane.compact_etcd()
            await plane.kill_apiserver()
            await plane.start_apiserver()
            recovery = await fleet.converge(timeout=120)
            used = minus(product.requests(), before)
            record(
                "etcd compacted, watches resume with 410",
                pools=len(pools), recovery_s=round(loop.time() - began, 2),
                converge_after_restart_s=round(recovery, 2), requests=used,
                relists_after_410=product.relists() - relists,
                problems=len(await fleet.problems()),
            )  # fmt: skip
            # the informers' re-watches were answered 410 Gone and they relisted
            assert product.relists() > relists
    finally:
        await delete_nodes(kube=kube, namespace=ns)
