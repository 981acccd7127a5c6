"""Injected faults, applied per API call of the simulator, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from controller.providers.base import RetryableError, ThrottledError
from controller.providers.inmemory.faults import Faults
from controller.providers.inmemory.simulator import Simulator

from .helpers import group_spec

pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]


async def test_throttling_carries_retry_after_and_changes_nothing() -> None:
    async with Simulator(seed=1) as sim:
        await sim.ensure_group(spec=group_spec())
        sim.faults = Faults(throttle_rate=1.0, retry_after=3)
        with pytest.raises(ThrottledError) as err:
            await sim.set_capacity(name="pool", desired=2)
        assert err.value.retry_after == 3
        assert err.value.code == "Throttling"
        sim.faults = Faults()
        assert (await sim.describe_group(name="pool")).desired_capacity == 0


async def test_errors_before_and_lost_replies_after_the_call() -> None:
    async with Simulator(seed=1) as sim:
        await sim.ensure_group(spec=group_spec())
        sim.faults = Faults(error_rate=1.0)
        with pytest.raises(RetryableError) as err:
            await sim.set_capacity(name="pool", desired=2)
        assert err.value.code == "InternalError"
        assert not isinstance(err.value, ThrottledError)
        sim.faults = Faults(lost_reply_rate=1.0)
        with pytest.raises(RetryableError):
            await sim.set_capacity(name="pool", desired=2)
        sim.faults = Faults()
        assert (await sim.describe_group(name="pool")).desired_capacity == 2  # it took effect


async def test_rates_are_rates_with_a_seed() -> None:
    async with Simulator(seed=9) as sim:
        await sim.ensure_group(spec=group_spec())
        sim.faults = Faults(error_rate=0.3)
        failures = 0
        for _ in range(200):
            try:
                await sim.describe_group(name="pool")
            except RetryableError:
                failures += 1
        assert 40 <= failures <= 80


async def test_latency_delays_every_call() -> None:
    async with Simulator() as sim:
        sim.faults = Faults(latency=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await sim.ensure_group(spec=group_spec())
        assert loop.time() - t0 == pytest.approx(5, abs=0.01)


async def test_a_hang_never_answers_until_lifted_and_then_fails() -> None:
    async with Simulator() as sim:
        await sim.ensure_group(spec=group_spec())
        sim.faults = Faults(hang=True)
        call = asyncio.create_task(sim.set_capacity(name="pool", desired=3))
        await asyncio.sleep(3600)
        assert not call.done()
        sim.faults = Faults()
        with pytest.raises(RetryableError) as err:
            await call
        assert err.value.code == "ServiceUnavailable"
        assert (await sim.describe_group(name="pool")).desired_capacity == 0

        sim.faults = Faults(hang=True)
        hung = asyncio.create_task(sim.describe_group(name="pool"))
        await asyncio.sleep(1)
    with pytest.raises(RetryableError):  # closing the simulator releases hung calls
        await hung


async def test_faults_can_target_some_operations() -> None:
    async with Simulator() as sim:
        sim.faults = Faults(error_rate=1.0, operations=frozenset({"set_capacity"}))
        await sim.ensure_group(spec=group_spec())
        await sim.describe_group(name="pool")
        with pytest.raises(RetryableError):
            await sim.set_capacity(name="pool", desired=1)
