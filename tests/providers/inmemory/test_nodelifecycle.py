"""The simulated cloud's node lifecycle controller in virtual time (looptime): the not-Ready
Node of a gone instance is deleted within a node-monitor period; Nodes of live instances,
Ready Nodes, excluded Nodes and other clouds' Nodes stay; API errors are retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.providers.inmemory.nodelifecycle import EXCLUDE_LABEL
from controller.providers.inmemory.simulator import GroupView, Simulator
from controller.testing.waiting import until

from .helpers import CLUSTER, FakeRegistrar, FakeWorkloadNodes, group_spec, raw_node

pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]

PERIOD = 5.0


@contextlib.asynccontextmanager
async def cloud(**options: Any) -> AsyncIterator[tuple[Simulator, FakeWorkloadNodes]]:
    registrar = FakeRegistrar()
    workload = FakeWorkloadNodes(registrar=registrar)
    options.setdefault("node_monitor_period", PERIOD)
    async with Simulator(registrar=registrar, cloud_nodes=workload, seed=1, **options) as sim:
        yield sim, workload


def view(sim: Simulator, name: str = "pool") -> GroupView:
    found = sim.inspect(name=name)
    assert found is not None
    return found


def now() -> float:
    return asyncio.get_running_loop().time()


async def one_ready_instance(sim: Simulator, workload: FakeWorkloadNodes) -> str:
    """A group of one instance whose Node is Ready; its name."""
    await sim.ensure_group(spec=group_spec(boot=1, ready=1))
    await sim.set_capacity(name="pool", desired=1)
    (inst,) = view(sim).instances
    await until(
        lambda: workload.registrar.ready_of(inst.node_name) == "True",
        timeout=10,
        what="the Node Ready",
    )
    return inst.node_name


async def test_the_not_ready_node_of_a_gone_instance_is_deleted_within_a_period() -> None:
    async with cloud() as (sim, workload):
        name = await one_ready_instance(sim, workload)
        (inst,) = view(sim).instances
        await sim.delete_instance(name="pool", instance_id=inst.instance_id, shrink=True)
        gone_at = now()
        await until(
            lambda: workload.node(name) is None, timeout=PERIOD + 1, what="the Node deleted"
        )
        assert now() - gone_at <= PERIOD + 0.1
        assert workload.deleted == [(CLUSTER, name)]
        assert sim.nodes_deleted == 1
        # Deleted once: later passes find nothing more to do, and the simulator carries on.
        await asyncio.sleep(3 * PERIOD)
        assert sim.nodes_deleted == 1
        assert sim.terminated() == []


async def test_nodes_of_live_instances_stay_even_when_not_ready() -> None:
    async with cloud(failed_retention=30) as (sim, workload):
        await sim.ensure_group(spec=group_spec(boot=1, ready=1000))
        await sim.set_capacity(name="pool", desired=2)
        first, second = view(sim).instances
        await until(
            lambda: all(workload.node(i.node_name) for i in (first, second)),
            timeout=10,
            what="both Nodes registered",
        )
        assert workload.registrar.ready_of(first.node_name) == "False"  # not Ready for long
        # A crashed instance is still the cloud's (listed as failed) until it leaves its group.
        await sim.fail_instance(name="pool", instance_id=second.instance_id)
        await until(
            lambda: workload.registrar.ready_of(second.node_name) == "Unknown",
            timeout=1,
            what="the crashed instance's Node Unknown",
        )
        crashed_at = now()
        await asyncio.sleep(5 * PERIOD)
        assert workload.node(first.node_name) is not None
        assert workload.node(second.node_name) is not None
        assert workload.deleted == []
        # Once it has left its group (failed_retention), its Node goes within a period.
        await until(
            lambda: workload.node(second.node_name) is None,
            timeout=30 + PERIOD,
            what="the crashed instance's Node deleted",
        )
        assert now() - crashed_at <= 30 + PERIOD + 0.1
        assert workload.node(first.node_name) is not None
        assert sim.nodes_deleted == 1


async def test_other_clouds_ready_and_excluded_nodes_are_never_touched() -> None:
    async with cloud() as (sim, workload):
        await sim.ensure_group(spec=group_spec())
        keep = {
            "aws": raw_node("aws", provider_id="aws:///zone-a/i-0123", ready="Unknown"),
            "none": raw_node("none", provider_id=None, ready=None),
            "empty": raw_node("empty", provider_id="", ready="False"),
            "ready": raw_node("ready", provider_id="inmemory:///a/pool-ffffffff", ready="True"),
            "excluded": raw_node(
                "excluded", provider_id="inmemory:///a/pool-eeeeeeee", **{EXCLUDE_LABEL: ""}
            ),
        }
        ghosts = {
            # this cloud's scheme, an instance it does not have, not Ready (or no condition)
            "ghost": raw_node("ghost", provider_id="inmemory:///a/pool-dddddddd"),
            "silent": raw_node("silent", provider_id="inmemory:///b/pool-cccccccc", ready=None),
        }
        for name, node in {**keep, **ghosts}.items():
            workload.extra[CLUSTER, name] = node
        # Nodes in a cluster no group names are not this simulator's business.
        workload.extra["other/cluster", "elsewhere"] = raw_node(
            "elsewhere", provider_id="inmemory:///a/pool-bbbbbbbb"
        )
        await until(
            lambda: all(workload.node(n) is None for n in ghosts),
            timeout=PERIOD + 1,
            what="the ghosts deleted",
        )
        await asyncio.sleep(3 * PERIOD)
        assert sorted(name for _, name in workload.extra) == sorted([*keep, "elsewhere"])
        assert sorted(workload.deleted) == sorted((CLUSTER, n) for n in ghosts)
        assert sim.nodes_deleted == 2


async def test_api_errors_are_retried_next_period_and_never_stop_the_cloud() -> None:
    async with cloud() as (sim, workload):
        await sim.ensure_group(spec=group_spec())
        workload.extra[CLUSTER, "ghost"] = raw_node("ghost", provider_id="inmemory:///a/pool-1")
        workload.list_failures = 2
        workload.delete_failures = 1
        start = now()
        # Two failed lists, one failed delete: the fourth pass deletes it.
        await until(
            lambda: workload.node("ghost") is None, timeout=4 * PERIOD, what="the ghost deleted"
        )
        assert 3 * PERIOD - 0.1 <= now() - start <= 3 * PERIOD + 0.1
        assert workload.lists == 4
        # The cloud kept working meanwhile.
        await sim.set_capacity(name="pool", desired=1)
        assert len(view(sim).instances) == 1
        assert sim.nodes_deleted == 1


async def test_a_deleted_groups_cluster_is_swept_until_its_nodes_are_gone() -> None:
    async with cloud() as (sim, workload):
        name = await one_ready_instance(sim, workload)
        assert sim.watched_clusters() == {CLUSTER}
        await sim.delete_group(name="pool", owner_tags={})
        await until(
            lambda: workload.node(name) is None, timeout=PERIOD + 1, what="the Node deleted"
        )
        await until(
            lambda: not sim.watched_clusters(), timeout=PERIOD + 1, what="the cluster forgotten"
        )
        lists = workload.lists
        await asyncio.sleep(3 * PERIOD)
        assert workload.lists == lists


async def test_without_a_way_to_list_nodes_nothing_is_deleted() -> None:
    registrar = FakeRegistrar()  # a kubelet's calls only: no list, no delete
    async with Simulator(registrar=registrar, seed=1, node_monitor_period=1) as sim:
        await sim.ensure_group(spec=group_spec(boot=1, ready=1))
        await sim.set_capacity(name="pool", desired=1)
        (inst,) = view(sim).instances
        await until(lambda: registrar.ready_of(inst.node_name) == "True", what="Node Ready")
        await sim.delete_instance(name="pool", instance_id=inst.instance_id, shrink=True)
        await asyncio.sleep(10)
        assert registrar.ready_of(inst.node_name) == "Unknown"  # left in place
        assert sim.nodes_deleted == 0
        assert sim.watched_clusters() == frozenset()
