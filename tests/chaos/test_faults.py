"""Faults outside the management cluster: the cloud misbehaves, the workload cluster goes away,
and people (or scripts) apply nonsense at volume.

The whole product runs in-process (:func:`tests.chaos._harness.in_process`) on the session's
control plane; every scenario ends with the fleet consistent (nothing lost, duplicated or
orphaned) and records how long that took after the fault and the requests it cost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.providers.inmemory.faults import Faults
from controller.runtime.kube import SECRETS, ApiError, KubeClient, ResourceLike, RestMetrics
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.proxy import TcpProxy
from controller.testing.waiting import until
from tests.api.strategies import machine_pools
from tests.chaos._harness import (
    LONG,
    Fleet,
    create_pools,
    delete_nodes,
    in_process,
    metric_total,
    minus,
    record,
    scale,
    workload_cluster,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration]

TIMEOUTS = "controller_runtime_reconcile_timeouts_total"
FAULTS = {
    "20% errors": Faults(error_rate=0.2),
    "20% replies lost after the call took effect": Faults(lost_reply_rate=0.2),
    "50% throttled, Retry-After 1 s": Faults(throttle_rate=0.5, retry_after=1.0),
    "2 s latency on every call": Faults(latency=2.0),
}


@pytest.mark.parametrize(
    "fault", list(FAULTS), ids=["errors", "lost-replies", "throttled", "latency"]
)
async def test_provider_faults(
    fault: str, control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    pools = {f"p{i}": 1 for i in range(4 if LONG else 2)}
    try:
        async with in_process(control_plane=control_plane, namespace=namespace) as product:
            fleet = Fleet(kube=kube, namespace=namespace, pools=pools, instances=product.instances)
            await create_pools(kube=kube, namespace=namespace, pools=pools)
            await fleet.converge(timeout=60)
            product.simulator.faults = FAULTS[fault]
            before = product.requests()
            fleet.pools = {name: 4 for name in pools}
            await scale(kube=kube, namespace=namespace, pools=fleet.pools)
            converged = await fleet.converge(timeout=120, what=f"convergence under {fault}")
            used = minus(product.requests(), before)
            product.simulator.faults = Faults()
            record(
                f"provider: {fault}", pools=len(pools), scale="1 -> 4",
                converge_under_fault_s=round(converged, 2), requests=used,
                errors=metric_total(product.registry, "controller_runtime_reconcile_errors_total"),
                panics=metric_total(product.registry, "controller_runtime_reconcile_panics_total"),
                problems=len(await fleet.problems()),
            )  # fmt: skip
            assert metric_total(product.registry, "controller_runtime_reconcile_panics_total") == 0
    finally:
        await delete_nodes(kube=kube, namespace=namespace)


async def test_hanging_provider_is_freed_by_the_reconcile_timeout(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    """One worker per controller; the cloud hangs every ``set_capacity``. The reconcile
    timeout must free the worker: another pool that needs no capacity change is still
    served while the hang lasts, and everything converges once the cloud answers again."""
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    pools = {"p0": 1}
    try:
        async with in_process(
            control_plane=control_plane, namespace=namespace, concurrency=1, reconcile_timeout=2
        ) as product:
            fleet = Fleet(kube=kube, namespace=namespace, pools=pools, instances=product.instances)
            await create_pools(kube=kube, namespace=namespace, pools=pools)
            await fleet.converge(timeout=60)
            product.simulator.faults = Faults(hang=True, operations=frozenset({"set_capacity"}))
            await scale(kube=kube, namespace=namespace, pools={"p0": 3})

            def timed_out() -> bool:
                name = "controller_runtime_reconcile_timeouts_total"
                return metric_total(product.registry, name) > 0

            await until(timed_out, timeout=30, what="a reconcile timeout")
            # served while p0 still hangs: a new pool at 0 needs no capacity change
            await create_pools(kube=kube, namespace=namespace, pools={"q": 0})

            async def q_running() -> bool:
                obj = await kube.get(MACHINE_POOL, namespace=namespace, name="q")
                return bool((obj.get("status") or {}).get("phase") == "Running")

            await until(q_running, timeout=30, what="pool q served during the hang")
            assert product.simulator.faults.hang  # the hang was on the whole time
            before = product.requests()
            product.simulator.faults = Faults()
            fleet.pools = {"p0": 3, "q": 0}
            recovery = await fleet.converge(timeout=90)
            record(
                "provider hangs (set_capacity), reconcile timeout 2 s",
                recovery_s=round(recovery, 2), requests=minus(product.requests(), before),
                timeouts=metric_total(product.registry, TIMEOUTS),
                problems=len(await fleet.problems()),
            )  # fmt: skip
    finally:
        await delete_nodes(kube=kube, namespace=namespace)


class _DirectKubeconfig(KubeClient):
    """The simulated kubelets' management client: they run inside the workload cluster and
    reach its API server directly, so the kubeconfig they read names the server itself
    rather than the proxy only the management side goes through."""

    proxied = ""
    direct = ""

    async def get(self, resource: ResourceLike, *, name: str, namespace: str | None = None) -> Obj:
        obj = await super().get(resource, name=name, namespace=namespace)
        if resource is SECRETS and name.endswith("-kubeconfig") and self.proxied:
            text = base64.b64decode(obj["data"]["value"]).decode()
            text = text.replace(self.proxied, self.direct)
            obj["data"]["value"] = base64.b64encode(text.encode()).decode()
        return obj


async def test_workload_cluster_unreachable_for_a_while(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(
            TcpProxy(upstream_port=control_plane.apiserver_port)
        )
        proxied = f"https://localhost:{proxy.port}"
        kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
        await workload_cluster(
            kube=kube, control_plane=control_plane, namespace=namespace, server=proxied
        )
        kubelet_api = await stack.enter_async_context(control_plane.api_client())
        kubelets = _DirectKubeconfig(
            api=kubelet_api, metrics=RestMetrics(registry=CollectorRegistry())
        )
        kubelets.proxied, kubelets.direct = proxied, control_plane.server
        pools = {"p0": 2, "p1": 2}
        try:
            async with in_process(
                control_plane=control_plane, namespace=namespace, kubelet_kube=kubelets
            ) as product:
                fleet = Fleet(
                    kube=kube, namespace=namespace, pools=pools, instances=product.instances
                )
                await create_pools(kube=kube, namespace=namespace, pools=pools)
                await fleet.converge(timeout=60)
                outage = 20.0 if LONG else 8.0
                proxy.refuse()
                proxy.cut()
                # while Nodes can't be read or deleted: one pool shrinks, one grows
                fleet.pools = {"p0": 1, "p1": 3}
                await scale(kube=kube, namespace=namespace, pools=fleet.pools)
                await asyncio.sleep(outage)  # the outage itself: nothing to await
                still_wrong = await fleet.problems()
                before = product.requests()
                proxy.accept()
                recovery = await fleet.converge(timeout=90)
                record(
                    "workload cluster unreachable (connections refused and cut)",
                    outage_s=outage, recovery_s=round(recovery, 2),
                    requests=minus(product.requests(), before),
                    inconsistent_during_outage=len(still_wrong),
                    problems=len(await fleet.problems()),
                )  # fmt: skip
        finally:
            await delete_nodes(kube=kube, namespace=namespace)


# ---------------------------------------------------------------------- bad input


def _generated(count: int) -> list[dict[str, Any]]:
    """``count`` MachinePools the CRD accepts, drawn by hypothesis (deterministic)."""
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=count, database=None, derandomize=True, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck), deadline=None,
    )  # fmt: skip
    @given(st.lists(machine_pools(), min_size=1, max_size=1))
    def collect(pools: list[dict[str, Any]]) -> None:
        out.extend(pools)

    collect()
    return out


def _nonsensical(
    raw: dict[str, Any], *, index: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A generated MachinePool made to clash with the namespace: a third point at an infra
    pool whose min/max forbid their replicas, a third at the healthy cluster with a missing
    infra pool, the rest keep their made-up cluster and references. Returns the pool and the
    infra pool to create, if any."""
    name = f"bad-{index:03d}"
    body = {
        "metadata": {k: v for k, v in raw["metadata"].items() if k in ("labels", "annotations")}
        | {"name": name},
        "spec": raw["spec"],
    }
    spec = body["spec"]
    infra: dict[str, Any] | None = None
    if index % 3 != 2:
        spec["clusterName"] = spec["template"]["spec"]["clusterName"] = "c1"
        spec["template"]["spec"]["infrastructureRef"] = {
            "apiGroup": IN_MEMORY_MACHINE_POOL.group,
            "kind": IN_MEMORY_MACHINE_POOL.kind,
            "name": f"infra-{name}",
        }
    if index % 3 == 0:
        replicas = int(spec.get("replicas", 1))
        bounds = (
            {"maxSize": 3} if replicas > 3 else {"minSize": replicas + 1, "maxSize": replicas + 2}
        )
        infra = {
            "metadata": {"name": f"infra-{name}"},
            "spec": {"template": {"version": "1", "bootDelaySeconds": 0}, **bounds},
        }
    return body, infra


async def test_bad_input_at_volume(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    bad_count, healthy_count = (200, 50) if LONG else (60, 10)
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    healthy = {f"h-{i:02d}": 1 + i % 3 for i in range(healthy_count)}
    bad = [_nonsensical(raw, index=i) for i, raw in enumerate(_generated(bad_count))]
    try:
        async with in_process(control_plane=control_plane, namespace=namespace) as product:
            fleet = Fleet(
                kube=kube, namespace=namespace, pools=healthy, instances=product.instances
            )
            loop = asyncio.get_running_loop()
            began = loop.time()
            rejected = 0
            waiting = list(healthy)
            every = max(bad_count // healthy_count, 1)
            for index, (body, infra) in enumerate(bad):
                if infra is not None:
                    await kube.create(IN_MEMORY_MACHINE_POOL, namespace=namespace, body=infra)
                try:
                    await kube.create(MACHINE_POOL, namespace=namespace, body=body)
                except ApiError:  # the CRD's CEL rules may still refuse a combination
                    rejected += 1
                if index % every == 0 and waiting:
                    name = waiting.pop(0)
                    await create_pools(kube=kube, namespace=namespace, pools={name: healthy[name]})
            for name in waiting:
                await create_pools(kube=kube, namespace=namespace, pools={name: healthy[name]})
            converged = await fleet.converge(timeout=180, what="the healthy pools")
            healthy_seconds = loop.time() - began

            async def bad_have_conditions() -> bool:
                listing = (await kube.list(MACHINE_POOL, namespace=namespace))["items"]
                bad_objs = [o for o in listing if o["metadata"]["name"].startswith("bad-")]
                return len(bad_objs) == bad_count - rejected and all(
                    any(c.get("status") != "True" or c.get("type") == "Paused"
                        for c in (o.get("status") or {}).get("conditions") or [])
                    for o in bad_objs
                )  # fmt: skip

            await until(bad_have_conditions, timeout=60, what="a condition on every bad pool")
            window = 10.0 if LONG else 5.0
            reconciles_before = metric_total(product.registry, "controller_runtime_reconcile_total")
            before = product.requests()
            await asyncio.sleep(window)  # the rate is measured over a window of time
            rate = (
                metric_total(product.registry, "controller_runtime_reconcile_total")
                - reconciles_before
            ) / window
            used = minus(product.requests(), before)
            panics = metric_total(product.registry, "controller_runtime_reconcile_panics_total")
            record(
                "bad input at volume (hypothesis)", bad=bad_count, rejected_by_crd=rejected,
                healthy=len(fleet.pools), healthy_converged_s=round(healthy_seconds, 2),
                last_check_s=round(converged, 2), reconciles_per_s_after=round(rate, 2),
                requests_in_window=used, panics=panics,
                problems=len(await fleet.problems()),
            )  # fmt: skip
            assert panics == 0
            assert not product.task.done()  # the manager runs on
            # bounded: a hot loop would be hundreds a second; the backoff keeps it low
            assert rate <= 0.5 * bad_count, rate
    finally:
        await delete_nodes(kube=kube, namespace=namespace)
