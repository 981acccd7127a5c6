"""The simulator's behaviour in virtual time (looptime): capacity, boots and failures, victims,
shrink versus replace, template versions, Node lifecycle, validation and retries."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.providers.base import GroupNotFoundError, GroupSpec, PermanentError
from controller.providers.inmemory.simulator import LAUNCH_BATCH, GroupView, Simulator
from controller.runtime.workqueue.clock import FakeClock

from .helpers import CLUSTER, FakeRegistrar, group_spec

pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]

PROVIDER_ID = re.compile(r"^inmemory:///(?P<zone>[^/]+)/(?P<id>[a-z0-9-]+)$")


@contextlib.asynccontextmanager
async def simulator(**options: Any) -> AsyncIterator[tuple[Simulator, FakeRegistrar]]:
    registrar = options.pop("registrar", None) or FakeRegistrar()
    async with Simulator(registrar=registrar, seed=options.pop("seed", 1), **options) as sim:
        yield sim, registrar


def view(sim: Simulator, name: str = "pool") -> GroupView:
    found = sim.inspect(name=name)
    assert found is not None
    return found


def phases(sim: Simulator, name: str = "pool") -> Counter[str]:
    return Counter(inst.phase for inst in view(sim, name).instances)


async def test_a_new_group_is_empty_then_scales_up_and_boots_with_jitter() -> None:
    async with simulator() as (sim, nodes):
        status = await sim.ensure_group(spec=group_spec(zones=("a", "b", "c")))
        assert status.desired_capacity == 0
        assert status.instances == []

        t0 = asyncio.get_running_loop().time()
        await sim.set_capacity(name="pool", desired=4)
        status = await sim.describe_group(name="pool")
        assert status.desired_capacity == 4
        assert [i.state for i in status.instances] == ["pending"] * 4
        assert [i.zone for i in status.instances] == ["a", "b", "c", "a"]
        for inst in status.instances:
            match = PROVIDER_ID.match(inst.provider_id)
            assert match is not None
            assert match["zone"] == inst.zone
            assert match["id"] == inst.instance_id
            assert inst.instance_id.startswith("pool-")
            assert inst.version == "v1"

        await asyncio.sleep(7.9)  # boot 10 s ± 20%: nothing is up yet
        assert phases(sim) == {"pending": 4}
        assert nodes.nodes == {}
        await asyncio.sleep(12.1 - 7.9)
        assert phases(sim) == {"running": 4}
        boots = {i.node_name for i in view(sim).instances}
        assert {name for _, name in nodes.nodes} == boots
        assert asyncio.get_running_loop().time() - t0 == pytest.approx(12.1, abs=0.01)


async def test_boots_are_spread_by_jitter_on_an_explicit_fake_clock() -> None:
    clock = FakeClock(start=1.7e9)
    registered_at: list[float] = []
    async with simulator(clock=clock) as (sim, nodes):
        await sim.ensure_group(spec=group_spec(boot=10))
        await sim.set_capacity(name="pool", desired=8)
        for _ in range(130):
            await clock.advance(0.1)
            registered_at.extend([clock.now()] * (len(nodes.nodes) - len(registered_at)))
    assert len(registered_at) == 8
    assert len({round(t, 1) for t in registered_at}) > 2
    assert all(1.7e9 + 8 <= t <= 1.7e9 + 12.1 for t in registered_at)


async def test_nodes_register_not_ready_then_turn_ready_after_the_ready_delay() -> None:
    async with simulator() as (sim, nodes):
        await sim.ensure_group(
            spec=group_spec(
                boot=2, ready=5, instanceType="small", kubernetesVersion="v1.34.1", zones=("z",)
            )
        )
        await sim.set_capacity(name="pool", desired=1)
        await asyncio.sleep(3)
        (inst,) = view(sim).instances
        node = nodes.nodes[CLUSTER, inst.node_name]
        assert node.provider_id == inst.provider_id
        assert node.zone == "z"
        assert node.kubelet_version == "v1.34.1"
        assert node.instance_type == "small"
        assert node.ready == "False"
        assert inst.node == "registered"
        await asyncio.sleep(4.9)
        assert node.ready == "True"
        assert view(sim).instances[0].node == "ready"


async def test_the_default_kubelet_version_and_delays() -> None:
    async with simulator() as (sim, nodes):
        await sim.ensure_group(
            spec=GroupSpec(name="pool", cluster=CLUSTER, template={}, template_version="")
        )
        await sim.set_capacity(name="pool", desired=1)
        await asyncio.sleep(1.25)  # default boot 1 s (± 20%)
        (inst,) = view(sim).instances
        assert inst.zone == "zone-a"
        node = nodes.nodes[CLUSTER, inst.node_name]
        assert node.kubelet_version == "v1.35.4"
        assert node.ready == "False"
        await asyncio.sleep(1.0)  # default ready 1 s
        assert node.ready == "True"


async def test_scale_down_picks_victims_and_their_nodes_stop_heartbeating() -> None:
    async with simulator() as (sim, nodes):
        await sim.ensure_group(spec=group_spec(zones=("a", "b")))
        await sim.set_capacity(name="pool", desired=4)
        await asyncio.sleep(20)
        before = view(sim).instances
        assert all(nodes.ready_of(i.node_name) == "True" for i in before)

        await sim.set_capacity(name="pool", desired=1)
        after = view(sim).instances
        assert len(after) == 1
        # zone balance first: one victim from each zone before the last of a zone goes
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(20)
        assert sorted(i.zone for i in view(sim).instances) == ["a", "b"]

        await asyncio.sleep(1)
        gone = [i for i in before if i.instance_id != after[0].instance_id]
        for inst in gone:
            assert nodes.ready_of(inst.node_name) == "Unknown"  # kept, not deleted
        assert nodes.ready_of(after[0].node_name) == "True"
        assert sim.terminated() == []


async def test_delete_instance_with_shrink_lowers_capacity_without_replacement() -> None:
    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec(min_size=1))
        await sim.set_capacity(name="pool", desired=3)
        await asyncio.sleep(15)
        victim = view(sim).instances[0].instance_id

        await sim.delete_instance(name="pool", instance_id=victim, shrink=True)
        status = await sim.describe_group(name="pool")
        assert status.desired_capacity == 2
        assert victim not in {i.instance_id for i in status.instances}
        assert len(status.instances) == 2

        # a retry of the same call (the reply was lost) changes nothing
        await sim.delete_instance(name="pool", instance_id=victim, shrink=True)
        assert (await sim.describe_group(name="pool")).desired_capacity == 2

        await sim.delete_instance(
            name="pool", instance_id=view(sim).instances[0].instance_id, shrink=True
        )
        with pytest.raises(PermanentError) as err:
            await sim.delete_instance(
                name="pool", instance_id=view(sim).instances[0].instance_id, shrink=True
            )
        assert err.value.code == "ValidationError"
        assert "minimum size 1" in err.value.message
        assert view(sim).desired == 1


async def test_delete_instance_without_shrink_is_replaced() -> None:
    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec())
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(15)
        victim = view(sim).instances[0].instance_id

        await sim.delete_instance(name="pool", instance_id=victim, shrink=False)
        after = view(sim)
        assert after.desired == 2
        assert victim not in {i.instance_id for i in after.instances}
        assert sorted(i.phase for i in after.instances) == ["pending", "running"]
        await asyncio.sleep(15)
        assert phases(sim) == {"running": 2}


async def test_unknown_instances_and_groups_are_typed_errors() -> None:
    async with simulator() as (sim, _):
        with pytest.raises(GroupNotFoundError) as missing:
            await sim.describe_group(name="nope")
        assert missing.value.code == "GroupNotFound"
        with pytest.raises(GroupNotFoundError):
            await sim.set_capacity(name="nope", desired=1)
        with pytest.raises(GroupNotFoundError):
            await sim.delete_instance(name="nope", instance_id="i", shrink=True)
        await sim.delete_group(name="nope", owner_tags={})  # already gone is fine

        await sim.ensure_group(spec=group_spec())
        with pytest.raises(PermanentError) as err:
            await sim.delete_instance(name="pool", instance_id="pool-00000000", shrink=False)
        assert err.value.code == "InstanceNotFound"
        assert not isinstance(err.value, GroupNotFoundError)


async def test_failure_rate_with_a_seed_is_deterministic_and_the_group_recovers() -> None:
    outcomes = []
    for _ in range(2):
        async with simulator(seed=42, failed_retention=30) as (sim, nodes):
            await sim.ensure_group(spec=group_spec(failure_rate=0.5))
            await sim.set_capacity(name="pool", desired=6)
            first = [i.instance_id for i in view(sim).instances]
            await asyncio.sleep(12.5)
            failed = [i for i in view(sim).instances if i.phase == "failed"]
            outcomes.append((first, [i.instance_id for i in failed]))
            assert 0 < len(failed) < 6
            # failed instances stay listed, replacements are already booting
            assert phases(sim)["running"] + phases(sim)["pending"] == 6
            assert all(nodes.ready_of(i.node_name) is None for i in failed)

            for _ in range(20):  # each round of replacements fails about half the time
                await asyncio.sleep(12.5)
                if phases(sim)["running"] == 6:
                    break
            assert phases(sim)["running"] == 6
            await asyncio.sleep(31)  # the retention has passed: failed instances are dropped
            assert phases(sim) == {"running": 6}
            # a failed instance that has left the group is deleted without complaint
            await sim.delete_instance(name="pool", instance_id=failed[0].instance_id, shrink=True)
            assert view(sim).desired == 6
    assert outcomes[0] == outcomes[1]


async def test_new_instances_use_the_current_template_version_and_old_ones_go_first() -> None:
    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec(version="v1"))
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(15)
        status = await sim.ensure_group(spec=group_spec(version="v2", boot=3))
        assert status.desired_capacity == 2  # ensure never changes capacity
        assert status.template_version == "v2"
        assert [i.version for i in status.instances] == ["v1", "v1"]

        await sim.set_capacity(name="pool", desired=3)
        assert [i.version for i in view(sim).instances] == ["v1", "v1", "v2"]
        old = view(sim).instances[0].instance_id
        await sim.delete_instance(name="pool", instance_id=old, shrink=False)
        assert sorted(i.version for i in view(sim).instances) == ["v1", "v2", "v2"]

        await asyncio.sleep(5)
        await sim.set_capacity(name="pool", desired=2)  # the outdated one is the victim
        assert [i.version for i in view(sim).instances] == ["v2", "v2"]


async def test_ensure_group_is_idempotent_and_clamps_capacity_into_new_bounds() -> None:
    async with simulator() as (sim, _):
        created = await sim.ensure_group(spec=group_spec(min_size=2, max_size=5))
        assert created.desired_capacity == 2  # a new group starts at its minimum
        again = await sim.ensure_group(spec=group_spec(min_size=2, max_size=5))
        assert [i.instance_id for i in again.instances] == [
            i.instance_id for i in created.instances
        ]
        await sim.set_capacity(name="pool", desired=5)
        lowered = await sim.ensure_group(spec=group_spec(min_size=0, max_size=3))
        assert lowered.desired_capacity == 3
        assert len(lowered.instances) == 3
        raised = await sim.ensure_group(spec=group_spec(min_size=4, max_size=None))
        assert raised.desired_capacity == 4
        assert len(raised.instances) == 4


@pytest.mark.parametrize(
    ("spec_args", "needle"),
    [
        ({"min_size": 3, "max_size": 2}, "maxSize"),
        ({"min_size": -1}, "minSize"),
        ({"failure_rate": 1.5}, "failureRate"),
        ({"boot": -1}, "bootDelaySeconds"),
        ({"cluster": "no-namespace"}, "namespace/name"),
        ({"name": "a/b"}, "no '/'"),
        ({"zones": ("ok", "bad/zone")}, "zone"),
        ({"kubernetesVersion": 135}, "kubernetesVersion"),
    ],
)
async def test_bad_specs_are_validation_errors(spec_args: dict[str, Any], needle: str) -> None:
    async with simulator() as (sim, _):
        with pytest.raises(PermanentError) as err:
            await sim.ensure_group(spec=group_spec(**spec_args))
        assert err.value.code == "ValidationError"
        assert needle in err.value.message
        assert sim.group_names() == []


async def test_capacity_outside_the_bounds_is_a_validation_error() -> None:
    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec(min_size=1, max_size=3))
        for desired in (0, 4, -1):
            with pytest.raises(PermanentError) as err:
                await sim.set_capacity(name="pool", desired=desired)
            assert err.value.code == "ValidationError"
        assert view(sim).desired == 1


async def test_delete_group_terminates_everything_and_nodes_go_unknown() -> None:
    async with simulator() as (sim, nodes):
        await sim.ensure_group(spec=group_spec())
        await sim.set_capacity(name="pool", desired=3)
        await asyncio.sleep(20)
        names = [i.node_name for i in view(sim).instances]
        await sim.delete_group(name="pool", owner_tags={})
        await sim.delete_group(name="pool", owner_tags={})
        assert sim.inspect(name="pool") is None
        await asyncio.sleep(0.1)
        assert [nodes.ready_of(n) for n in names] == ["Unknown"] * 3
        with pytest.raises(GroupNotFoundError):
            await sim.describe_group(name="pool")


async def test_an_unreachable_workload_cluster_is_retried_with_backoff() -> None:
    registrar = FakeRegistrar(unreachable=True)
    async with simulator(registrar=registrar, node_retry_initial=0.5, node_retry_max=4) as (
        sim,
        nodes,
    ):
        await sim.ensure_group(spec=group_spec(boot=1, ready=1))
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(20)
        assert phases(sim) == {"running": 2}  # the cloud side does not wait for the cluster
        assert nodes.nodes == {}
        # 0.5, 1, 2, 4, 4, ... : about 7 attempts per instance in 20 s, not a hot loop
        assert 10 <= nodes.failed_calls <= 20
        await sim.set_capacity(name="pool", desired=3)  # the API keeps working
        nodes.unreachable = False
        await asyncio.sleep(6)
        assert len(nodes.nodes) == 3
        assert all(node.ready == "True" for node in nodes.nodes.values())


async def test_ready_is_counted_from_registration() -> None:
    registrar = FakeRegistrar(unreachable=True)
    async with simulator(registrar=registrar, node_retry_initial=8, node_retry_max=8) as (
        sim,
        nodes,
    ):
        await sim.ensure_group(spec=group_spec(boot=1, ready=5))
        await sim.set_capacity(name="pool", desired=1)
        await asyncio.sleep(2)
        nodes.unreachable = False
        await asyncio.sleep(8)  # registered at ~9.2
        (node,) = nodes.nodes.values()
        assert node.ready == "False"
        await asyncio.sleep(5)
        assert node.ready == "True"


async def test_a_crashed_instance_is_replaced_and_its_node_goes_unknown() -> None:
    async with simulator(failed_retention=5) as (sim, nodes):
        await sim.ensure_group(spec=group_spec())
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(20)
        victim = view(sim).instances[0]
        await sim.fail_instance(name="pool", instance_id=victim.instance_id)
        await sim.fail_instance(name="pool", instance_id=victim.instance_id)  # no-op
        assert phases(sim) == {"failed": 1, "running": 1, "pending": 1}
        await asyncio.sleep(0.1)
        assert nodes.ready_of(victim.node_name) == "Unknown"
        await asyncio.sleep(20)
        assert phases(sim) == {"running": 2}


async def test_a_termination_delay_shows_terminating_instances() -> None:
    async with simulator(terminate_delay=3) as (sim, nodes):
        await sim.ensure_group(spec=group_spec())
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(20)
        victim = view(sim).instances[0]
        await sim.delete_instance(name="pool", instance_id=victim.instance_id, shrink=True)
        status = await sim.describe_group(name="pool")
        assert sorted(i.state for i in status.instances) == ["running", "terminating"]
        await sim.delete_instance(name="pool", instance_id=victim.instance_id, shrink=True)
        assert view(sim).desired == 1
        await asyncio.sleep(0.1)
        assert nodes.ready_of(victim.node_name) == "Unknown"
        await asyncio.sleep(3)
        assert phases(sim) == {"running": 1}


async def test_without_a_registrar_instances_still_boot() -> None:
    async with Simulator(seed=3) as sim:
        await sim.ensure_group(spec=group_spec(boot=1))
        await sim.set_capacity(name="pool", desired=2)
        await asyncio.sleep(2)
        assert phases(sim) == {"running": 2}
        await sim.delete_group(name="pool", owner_tags={})
        assert sim.terminated() == []


async def test_calls_before_start_are_refused() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError, match="not running"):
        await sim.describe_group(name="pool")


async def test_zones_come_from_the_spec_then_the_template_then_the_default() -> None:
    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec("spec", zones=("s1", "s2"), template_zones=["t"]))
        await sim.ensure_group(spec=group_spec("tmpl", template_zones=["t1", "t2"]))
        await sim.ensure_group(spec=group_spec("none"))
        for name in ("spec", "tmpl", "none"):
            await sim.set_capacity(name=name, desired=2)
        assert [i.zone for i in view(sim, "spec").instances] == ["s1", "s2"]
        assert [i.zone for i in view(sim, "tmpl").instances] == ["t1", "t2"]
        assert [i.zone for i in view(sim, "none").instances] == ["zone-a", "zone-a"]


async def test_instance_ids_are_dns_labels_whatever_the_group_name() -> None:
    label = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    async with simulator() as (sim, _):
        for name in ("Weird_Name.With.Dots", "x" * 200, "--", "ns:pool"):
            await sim.ensure_group(spec=group_spec(name))
            await sim.set_capacity(name=name, desired=2)
            ids = [i.instance_id for i in view(sim, name).instances]
            assert len(set(ids)) == 2
            assert all(label.match(i) for i in ids), ids
            assert all(i.node_name == i.instance_id for i in view(sim, name).instances)


async def test_a_huge_capacity_launches_in_batches_that_yield_to_the_loop() -> None:
    """8000 instances: no call or step launches more than a batch, other tasks keep running
    between batches, and scale-in picks its victims without a recount per victim (the old
    code blocked the loop for seconds both ways)."""
    huge = 8000
    gaps: list[float] = []

    async def ticker() -> None:  # real (not virtual) time between two turns of the loop
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with simulator() as (sim, _):
        await sim.ensure_group(spec=group_spec(zones=("a", "b", "c"), boot=1, ready=1))
        await sim.ensure_group(spec=group_spec("small", boot=1, ready=1))
        await sim.set_capacity(name="small", desired=2)
        tick = asyncio.create_task(ticker())
        try:
            await sim.set_capacity(name="pool", desired=huge)
            assert 0 < len(view(sim).instances) <= LAUNCH_BATCH  # the call launched one batch
            turns = len(gaps)
            while len(view(sim).instances) < huge:  # noqa: ASYNC110 - counting turns
                await asyncio.sleep(0)
            assert len(gaps) - turns >= huge // LAUNCH_BATCH - 1  # the loop ran between batches
        finally:
            tick.cancel()  # it never sleeps, so virtual time stands still while it runs
            with contextlib.suppress(asyncio.CancelledError):
                await tick
        await asyncio.sleep(5)
        assert phases(sim) == {"running": huge}
        assert phases(sim, "small") == {"running": 2}  # the other group converged too
        assert Counter(i.zone for i in view(sim).instances) == {"a": 2667, "b": 2667, "c": 2666}
        started = time.perf_counter()
        await sim.set_capacity(name="pool", desired=0)
        gaps.append(time.perf_counter() - started)
        assert view(sim).instances == ()
    # A generous bound on a noisy box: the old code blocked ~4 s (launch) and ~9 s (scale-in).
    assert max(gaps) < 1.5, f"the event loop was blocked for {max(gaps):.2f} s"
