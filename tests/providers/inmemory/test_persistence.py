"""The simulator's state outlives a restart: instances mid-boot keep booting, nothing is
duplicated, the file is written atomically and a broken file stops the start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controller.providers.inmemory.clock import LoopWallClock
from controller.providers.inmemory.persistence import StateFileError, write_state_document
from controller.providers.inmemory.simulator import Simulator

from .helpers import FakeRegistrar, group_spec

pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]


async def test_a_restart_mid_boot_continues_the_boots(tmp_path: Path) -> None:
    state = tmp_path / "state" / "sim.json"
    clock = LoopWallClock()  # one timeline for both "processes"
    nodes = FakeRegistrar()
    async with Simulator(registrar=nodes, clock=clock, state_file=state, seed=5) as first:
        await first.ensure_group(spec=group_spec(boot=10, ready=2, zones=("a", "b")))
        await first.set_capacity(name="pool", desired=3)
        await first.ensure_group(spec=group_spec(name="other", boot=1, ready=1))
        await first.set_capacity(name="other", desired=1)
        await asyncio.sleep(4)  # "other" is up and Ready; "pool" is still booting
        before = first.inspect(name="pool")
        assert before is not None
        assert {i.phase for i in before.instances} == {"pending"}
    assert json.loads(state.read_text())["formatVersion"] == 1
    assert [p.name for p in state.parent.iterdir()] == ["sim.json"]  # no temporary files
    registrations = nodes.count("register")
    assert registrations == 1

    await asyncio.sleep(3)  # the "controller" is down for a while
    async with Simulator(registrar=nodes, clock=clock, state_file=state, seed=6) as second:
        after = second.inspect(name="pool")
        assert after is not None
        assert after == before  # same instances, same zones, same deadlines: no duplicates
        await asyncio.sleep(5.5)  # launched at 0, booting for 10 s ± 20%
        after = second.inspect(name="pool")
        assert after is not None
        assert [i.instance_id for i in after.instances] == [i.instance_id for i in before.instances]
        assert {i.phase for i in after.instances} == {"running"}
        await asyncio.sleep(2.5)
        assert all(nodes.ready_of(i.node_name) == "True" for i in after.instances)
        # the node that was already registered and Ready was not registered again
        other = second.inspect(name="other")
        assert other is not None
        assert other.instances[0].node == "ready"
        assert nodes.count("register") == registrations + 3


async def test_state_is_written_shortly_after_a_change(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    async with Simulator(state_file=state, save_debounce=0.5) as sim:
        await sim.ensure_group(spec=group_spec())
        for desired in range(1, 6):
            await sim.set_capacity(name="pool", desired=desired)
        await asyncio.sleep(1)
        document = json.loads(state.read_text())
        (group,) = document["groups"]
        assert group["desired"] == 5
        assert len(group["instances"]) == 5


async def test_terminated_instances_still_owed_an_unknown_node_survive_a_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "sim.json"
    clock = LoopWallClock()
    nodes = FakeRegistrar()
    async with Simulator(registrar=nodes, clock=clock, state_file=state) as first:
        await first.ensure_group(spec=group_spec(boot=1, ready=1))
        await first.set_capacity(name="pool", desired=1)
        await asyncio.sleep(3)
        nodes.unreachable = True
        await first.set_capacity(name="pool", desired=0)
        await asyncio.sleep(1)
        assert len(first.terminated()) == 1
    nodes.unreachable = False
    async with Simulator(registrar=nodes, clock=clock, state_file=state) as second:
        await asyncio.sleep(0.5)
        assert second.terminated() == []
        assert [n.ready for n in nodes.nodes.values()] == ["Unknown"]


async def test_a_broken_state_file_stops_the_start(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    state.write_text("{not json")
    with pytest.raises(StateFileError, match="not valid JSON"):
        async with Simulator(state_file=state):
            pass
    write_state_document(state, {"formatVersion": 99})
    with pytest.raises(StateFileError, match="unsupported state format"):
        async with Simulator(state_file=state):
            pass
    write_state_document(state, {"formatVersion": 1, "groups": [{"name": "x"}]})
    with pytest.raises(StateFileError, match="malformed"):
        async with Simulator(state_file=state):
            pass
    assert state.read_text() == json.dumps(
        {"formatVersion": 1, "groups": [{"name": "x"}]}, separators=(",", ":")
    )


async def test_a_repeated_ensure_does_not_rewrite_the_state(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    async with Simulator(state_file=state, save_debounce=0.1) as sim:
        await sim.ensure_group(spec=group_spec())
        await asyncio.sleep(1)
        written = state.stat().st_mtime_ns
        state.write_text(state.read_text())  # a marker: any rewrite would change the mtime
        marker = state.stat().st_mtime_ns
        assert marker >= written
        for _ in range(10):
            await sim.ensure_group(spec=group_spec())
        await asyncio.sleep(1)
        assert state.stat().st_mtime_ns == marker
        await sim.ensure_group(spec=group_spec(version="v2"))
        await asyncio.sleep(1)
        assert json.loads(state.read_text())["groups"][0]["templateVersion"] == "v2"
