"""``InMemoryProvider`` against ``SimulatorServer`` over real loopback HTTP: every protocol
call, every error mapping, and the provider metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller.providers.base import (
    GroupNotFoundError,
    GroupSpec,
    InstanceGroupProvider,
    PermanentError,
    RetryableError,
    ThrottledError,
)
from controller.providers.inmemory.client import InMemoryProvider
from controller.providers.inmemory.server import SimulatorServer
from controller.providers.inmemory.simulator import Simulator
from controller.providers.metrics import MAX_CODES, OTHER_CODE
from controller.testing.ports import free_port
from controller.testing.waiting import until

from .helpers import CLUSTER, group_spec


@dataclass
class Stack:
    sim: Simulator
    server: SimulatorServer
    provider: InMemoryProvider
    registry: CollectorRegistry

    def count(self, operation: str, code: str) -> float:
        value = self.registry.get_sample_value(
            "machinepool_provider_requests_total",
            {"provider": "inmemory", "operation": operation, "code": code},
        )
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def served(*, timeout: float = 5.0) -> AsyncIterator[Stack]:
    registry = CollectorRegistry()
    async with (
        Simulator(seed=11) as sim,
        SimulatorServer(simulator=sim) as server,
        InMemoryProvider(base_url=server.url, timeout=timeout, registry=registry) as provider,
    ):
        yield Stack(sim=sim, server=server, provider=provider, registry=registry)


def fast(name: str = "pool", **kwargs: object) -> GroupSpec:
    return group_spec(name, boot=0.05, ready=0.05, **kwargs)  # type: ignore[arg-type]


async def test_every_protocol_call_round_trips() -> None:
    async with served() as s:
        p = s.provider
        created = await p.ensure_group(spec=fast(zones=("a", "b"), max_size=4))
        assert created.name == "pool"
        assert created.desired_capacity == 0
        assert created.template_version == "v1"
        again = await p.ensure_group(spec=fast(zones=("a", "b"), max_size=4))
        assert again == created  # idempotent

        await p.set_capacity(name="pool", desired=3)
        status = await p.describe_group(name="pool")
        assert status.desired_capacity == 3
        assert [i.zone for i in status.instances] == ["a", "b", "a"]
        assert all(
            i.provider_id == f"inmemory:///{i.zone}/{i.instance_id}" for i in status.instances
        )
        assert all(i.launched_at.tzinfo is not None for i in status.instances)

        async def all_running() -> bool:
            st = await p.describe_group(name="pool")
            return [i.state for i in st.instances] == ["running"] * 3

        await until(all_running, timeout=5, what="instances running")

        first, second = status.instances[0].instance_id, status.instances[1].instance_id
        await p.delete_instance(name="pool", instance_id=first, shrink=True)
        await p.delete_instance(name="pool", instance_id=first, shrink=True)  # retried: fine
        await p.delete_instance(name="pool", instance_id=second, shrink=False)
        status = await p.describe_group(name="pool")
        assert status.desired_capacity == 2
        ids = {i.instance_id for i in status.instances}
        assert first not in ids
        assert second not in ids
        assert len(ids) == 2

        await p.ensure_group(spec=fast("other"))
        assert [g.name for g in await p.list_groups()] == ["other", "pool"]

        await p.delete_group(name="pool", owner_tags={})
        await p.delete_group(name="pool", owner_tags={})  # idempotent
        with pytest.raises(GroupNotFoundError):
            await p.describe_group(name="pool")
        assert s.sim.group_names() == ["other"]

        assert s.count("ensure_group", "OK") == 3
        assert s.count("delete_group", "OK") == 2
        assert s.count("describe_group", "GroupNotFound") == 1
        duration = s.registry.get_sample_value(
            "machinepool_provider_request_duration_seconds_count",
            {"provider": "inmemory", "operation": "delete_instance"},
        )
        assert duration == 3


async def test_bootstrap_data_and_tags_survive_the_wire() -> None:
    async with served() as s:
        spec = GroupSpec(
            name="pool",
            cluster=CLUSTER,
            template={"bootDelaySeconds": 0, "nested": {"list": [1, 2]}},
            template_version="abc",
            bootstrap_data=b"\x00#cloud-config\n",
            tags={"owner": "me"},
        )
        await s.provider.ensure_group(spec=spec)
        record = s.sim._groups["pool"]
        assert record.bootstrap_data == b"\x00#cloud-config\n"
        assert record.tags == {"owner": "me"}
        assert record.template["nested"] == {"list": [1, 2]}


async def test_not_found_and_validation_errors_are_permanent() -> None:
    async with served() as s:
        p = s.provider
        with pytest.raises(GroupNotFoundError) as missing:
            await p.set_capacity(name="nope", desired=1)
        assert missing.value.code == "GroupNotFound"
        assert "nope" in missing.value.message

        await p.ensure_group(spec=fast(min_size=1, max_size=2))
        with pytest.raises(PermanentError) as outside:
            await p.set_capacity(name="pool", desired=3)
        assert outside.value.code == "ValidationError"
        assert not outside.value.retryable
        assert not isinstance(outside.value, GroupNotFoundError)
        assert "outside" in outside.value.message

        with pytest.raises(PermanentError) as no_instance:
            await p.delete_instance(name="pool", instance_id="ghost", shrink=True)
        assert no_instance.value.code == "InstanceNotFound"
        assert not isinstance(no_instance.value, GroupNotFoundError)

        with pytest.raises(PermanentError) as bad_spec:
            await p.ensure_group(spec=fast("bad", failure_rate=3))
        assert bad_spec.value.code == "ValidationError"

        with pytest.raises(PermanentError) as not_json:
            await p.ensure_group(spec=group_spec(unserialisable=object()))
        assert not_json.value.code == "ValidationError"
        assert s.count("set_capacity", "ValidationError") == 1


async def test_throttling_maps_to_throttled_error_with_retry_after() -> None:
    async with served() as s, aiohttp.ClientSession() as http:
        await s.provider.ensure_group(spec=fast())
        async with http.put(
            f"{s.server.url}/v1/faults", json={"throttleRate": 1.0, "retryAfterSeconds": 2.5}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["throttleRate"] == 1.0
        with pytest.raises(ThrottledError) as err:
            await s.provider.describe_group(name="pool")
        assert err.value.retry_after == 3.0  # whole seconds in the header, rounded up
        assert err.value.retryable
        assert err.value.code == "Throttling"
        async with http.get(f"{s.server.url}/v1/groups/pool") as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            assert (await resp.json())["retryAfter"] == 2.5
        assert s.count("describe_group", "Throttling") == 1


async def test_server_errors_are_retryable() -> None:
    async with served() as s, aiohttp.ClientSession() as http:
        await s.provider.ensure_group(spec=fast())
        async with http.put(f"{s.server.url}/v1/faults", json={"errorRate": 1.0}) as resp:
            assert resp.status == 200
        with pytest.raises(RetryableError) as err:
            await s.provider.set_capacity(name="pool", desired=1)
        assert err.value.code == "InternalError"
        assert not isinstance(err.value, ThrottledError)
        async with http.put(f"{s.server.url}/v1/faults", json={"errorRate": 2}) as resp:
            assert resp.status == 422
            assert (await resp.json())["code"] == "ValidationError"
        async with http.get(f"{s.server.url}/v1/faults") as resp:
            assert (await resp.json())["errorRate"] == 1.0


async def test_a_hung_call_times_out_as_retryable_and_shutdown_is_prompt() -> None:
    async with served(timeout=0.3) as s:
        await s.provider.ensure_group(spec=fast())
        s.sim.faults = s.sim.faults.__class__(hang=True)
        with pytest.raises(RetryableError) as err:
            await s.provider.describe_group(name="pool")
        assert err.value.code == "Timeout"
        assert s.count("describe_group", "Timeout") == 1


async def test_an_unreachable_simulator_is_retryable() -> None:
    async with InMemoryProvider(
        base_url=f"http://127.0.0.1:{free_port()}", registry=CollectorRegistry()
    ) as provider:
        with pytest.raises(RetryableError) as err:
            await provider.describe_group(name="pool")
        assert err.value.code == "ConnectionError"


async def test_calls_outside_the_context_are_refused() -> None:
    provider = InMemoryProvider(base_url="http://127.0.0.1:1", registry=CollectorRegistry())
    with pytest.raises(RuntimeError, match="async with"):
        await provider.describe_group(name="pool")
    with pytest.raises(ValueError, match="timeout"):
        InMemoryProvider(base_url="http://x", timeout=0)


async def test_bad_requests_and_unknown_routes_answer_json_errors() -> None:
    async with served() as s, aiohttp.ClientSession() as http:
        base = s.server.url
        async with http.put(f"{base}/v1/groups/pool", data=b"{nope") as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "BadRequest"
        async with http.put(f"{base}/v1/groups/pool", json={"cluster": 3}) as resp:
            assert resp.status == 400
        await s.provider.ensure_group(spec=fast())
        async with http.put(f"{base}/v1/groups/pool/capacity", json={"desired": "3"}) as resp:
            assert resp.status == 400
        async with http.delete(f"{base}/v1/groups/pool/instances/x?shrink=maybe") as resp:
            assert resp.status == 400
        async with http.get(f"{base}/v2/nothing") as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == "NotFound"
        async with http.get(f"{base}/healthz") as resp:
            assert await resp.text() == "ok"
        status = await s.provider.describe_group(name="pool")
        assert status.desired_capacity == 0


async def test_instances_can_be_crashed_through_the_api() -> None:
    async with served() as s, aiohttp.ClientSession() as http:
        await s.provider.ensure_group(spec=fast())
        await s.provider.set_capacity(name="pool", desired=1)
        (inst,) = (await s.provider.describe_group(name="pool")).instances
        async with http.post(
            f"{s.server.url}/v1/groups/pool/instances/{inst.instance_id}/fail"
        ) as resp:
            assert resp.status == 204
        states = {
            i.instance_id: i.state for i in (await s.provider.describe_group(name="pool")).instances
        }
        assert states[inst.instance_id] == "failed"
        assert len(states) == 2


@contextlib.asynccontextmanager
async def odd_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "code"),
    [
        (502, "bad gateway", {}, RetryableError, "HTTP502"),
        (
            503,
            '{"code":"ServiceUnavailable","message":"busy"}',
            {},
            RetryableError,
            "ServiceUnavailable",
        ),
        (429, "slow down", {}, ThrottledError, "Throttling"),
        (404, "not here", {}, GroupNotFoundError, "GroupNotFound"),
        (403, '{"code":"AccessDenied","message":"no"}', {}, PermanentError, "AccessDenied"),
        (409, "conflict", {}, PermanentError, "HTTP409"),
    ],
)
async def test_answers_from_anything_in_between_map_to_typed_errors(
    status: int,
    body: str,
    headers: dict[str, str],
    expected: type[Exception],
    code: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, headers=headers)

    async with (
        odd_server(handler) as url,
        InMemoryProvider(base_url=url, registry=CollectorRegistry()) as provider,
    ):
        with pytest.raises(expected) as err:
            await provider.describe_group(name="pool")
    assert type(err.value) is expected
    assert getattr(err.value, "code", None) == code


async def test_retry_after_as_an_http_date_and_malformed_answers() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)

    async def handler(request: web.Request) -> web.Response:
        if request.method == "PUT":
            return web.Response(
                status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}
            )
        if request.path.endswith("/garbage"):
            return web.Response(status=200, text="<html>")
        return web.json_response({"name": "pool"})

    async with (
        odd_server(handler) as url,
        InMemoryProvider(base_url=url, registry=CollectorRegistry()) as provider,
    ):
        with pytest.raises(ThrottledError) as throttled:
            await provider.set_capacity(name="pool", desired=1)
        assert throttled.value.retry_after is not None
        assert 25 <= throttled.value.retry_after <= 30
        with pytest.raises(RetryableError) as malformed:
            await provider.describe_group(name="pool")
        assert malformed.value.code == "InvalidResponse"
        with pytest.raises(RetryableError) as garbage:
            await provider.describe_group(name="garbage")
        assert garbage.value.code == "InvalidResponse"


def test_both_the_simulator_and_the_client_are_providers() -> None:
    # checked by mypy: both satisfy the protocol structurally
    providers: list[InstanceGroupProvider] = [
        Simulator(),
        InMemoryProvider(base_url="http://x", registry=CollectorRegistry()),
    ]
    assert len(providers) == 2


def test_metrics_register_once_per_registry() -> None:
    registry = CollectorRegistry()
    InMemoryProvider(base_url="http://x", registry=registry)
    InMemoryProvider(base_url="http://y", registry=registry)  # no duplicate registration


async def test_error_codes_from_the_endpoint_are_bounded_as_metric_labels() -> None:
    """The endpoint (a tenant could run one) chooses the ``code`` of an error: endless new
    codes, or codes that are not identifiers, count as ``other`` past the bound."""
    answered = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        code = f"Code{answered}" if answered % 2 else f"not a code {answered} \u2603"
        return web.json_response({"code": code, "message": "no"}, status=400)

    registry = CollectorRegistry()
    async with (
        odd_server(handler) as url,
        InMemoryProvider(base_url=url, registry=registry) as provider,
    ):
        for _ in range(3 * MAX_CODES):
            with pytest.raises(PermanentError):
                await provider.describe_group(name="pool")
    codes = {
        sample.labels["code"]
        for metric in registry.collect()
        if metric.name == "machinepool_provider_requests"
        for sample in metric.samples
    }
    assert len(codes) <= MAX_CODES
    assert OTHER_CODE in codes
    assert "Code1" in codes  # the first codes keep their names
    assert not any(" " in code for code in codes)
    total = sum(
        registry.get_sample_value(
            "machinepool_provider_requests_total",
            {"provider": "inmemory", "operation": "describe_group", "code": code},
        )
        or 0.0
        for code in codes
    )
    assert total == 3 * MAX_CODES  # every call still counted
