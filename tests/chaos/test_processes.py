"""The controller as deployed, killed: ``machinepool-controller simulator`` and
``machinepool-controller run`` are real processes against the session's control plane.

- SIGKILL at random points of a scale-out and of a deletion, then a restart: the fleet
  converges with nothing lost, duplicated or orphaned (the simulator keeps its state in a file
  and survives; the controller restarts from nothing but the API server).
- Two replicas with leader election: the leader is SIGKILLed; the standby takes the Lease
  (handover time recorded) and finishes a scale the dead leader had started.

The kill points are drawn from a seeded generator (``CHAOS_SEED``, default 1), so a failure
is reproducible; the long form (``CHAOS_LONG=1``) kills more often.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import MACHINE_POOL
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import KubeClient, Resource, RestMetrics
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.waiting import until
from tests.chaos._harness import (
    LONG,
    Fleet,
    create_pools,
    delete_nodes,
    minus,
    record,
    scale,
    scrape,
    scraped_requests,
    simulator_group,
    simulator_instances,
    spawned,
    workload_cluster,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration]

LEASES = Resource(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease")
SEED = int(os.environ.get("CHAOS_SEED", "1"))
KILLS = 4 if LONG else 2


def _run_args(kubeconfig: str, namespace: str, sim_port: int, metrics_port: int) -> list[str]:
    return [
        "run", "--kubeconfig", kubeconfig, "--namespace", namespace,
        "--inmemory-endpoint", f"http://127.0.0.1:{sim_port}",
        "--metrics-bind-address", f"127.0.0.1:{metrics_port}", "--metrics-secure=false",
        "--health-probe-bind-address", "0", "--log-level", "info",
        "--concurrency", "4", "--reconcile-timeout", "20s",
    ]  # fmt: skip


async def _metrics_up(port: int) -> bool:
    try:
        await scrape(port)
    except OSError:
        return False
    return True


async def _kill_restart_converge(
    *,
    kube: KubeClient,
    fleet: Fleet,
    args: list[str],
    log: Path,
    metrics_port: int,
    change: str,
    kill_window: float,
    rng: random.Random,
    act: Callable[[int], Awaitable[None]],
) -> None:
    """For each kill: start the controller, make the change (``act``), SIGKILL it after a
    random delay in ``kill_window``, restart it and require the fleet consistent."""
    loop = asyncio.get_running_loop()
    for kill in range(KILLS):
        async with spawned(args=args, log=log) as first:
            await until(lambda: _metrics_up(metrics_port), timeout=30, what="controller up")
            await act(kill)
            delay = rng.uniform(0.0, kill_window)
            await asyncio.sleep(delay)  # the random kill point
            await first.kill()
        began = loop.time()
        async with spawned(args=args, log=log):
            await until(lambda: _metrics_up(metrics_port), timeout=30, what="controller up")
            recovery = await fleet.converge(timeout=120)
            used = scraped_requests(await scrape(metrics_port))
            record(
                f"controller SIGKILLed during {change}",
                kill=kill + 1, kill_after_s=round(delay, 2), recovery_s=round(recovery, 2),
                restart_to_consistent_s=round(loop.time() - began, 2), requests=used,
                problems=len(await fleet.problems()),
            )  # fmt: skip


async def test_controller_sigkilled_during_scale_out_and_deletion(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    sim_port, metrics_port = free_port(), free_port()
    kubeconfig = str(control_plane.kubeconfig_path)
    args = _run_args(kubeconfig, namespace, sim_port, metrics_port)
    rng = random.Random(SEED)
    pools = {"a": 1, "b": 1, "c": 1}
    fleet = Fleet(
        kube=kube, namespace=namespace, pools=dict(pools),
        instances=lambda group: simulator_instances(sim_port, group),
    )  # fmt: skip
    try:
        async with spawned(
            args=["simulator", "--listen", f"127.0.0.1:{sim_port}",
                  "--state-file", str(tmp_path / "cloud.json"), "--kubeconfig", kubeconfig],
            log=tmp_path / "simulator.log",
        ):  # fmt: skip
            await create_pools(kube=kube, namespace=namespace, pools=pools)

            async def scale_out(kill: int) -> None:
                fleet.pools = {name: 2 + 2 * (kill + 1) for name in pools}
                await scale(kube=kube, namespace=namespace, pools=fleet.pools)

            await _kill_restart_converge(
                kube=kube, fleet=fleet, args=args, log=tmp_path / "controller.log",
                metrics_port=metrics_port, change="a scale-out", kill_window=1.5, rng=rng,
                act=scale_out,
            )  # fmt: skip
            # no instance was launched twice: ids are unique and as many as asked for
            for name, replicas in fleet.pools.items():
                group = await simulator_group(
                    sim_port, inmemory_group_name(namespace=namespace, name=name)
                )
                assert group["desiredCapacity"] == replicas

            victims = ["a", "b"]

            async def delete(kill: int) -> None:
                if kill == 0:
                    for name in victims:
                        await kube.delete(MACHINE_POOL, namespace=namespace, name=name)
                    for name in victims:
                        fleet.pools.pop(name)
                else:  # a second deletion mid-flight: scale the survivor in
                    fleet.pools = {"c": 1}
                    await scale(kube=kube, namespace=namespace, pools=fleet.pools)

            await _kill_restart_converge(
                kube=kube, fleet=fleet, args=args, log=tmp_path / "controller.log",
                metrics_port=metrics_port, change="a deletion", kill_window=1.5, rng=rng,
                act=delete,
            )  # fmt: skip
            for name in victims:
                assert (
                    await simulator_instances(
                        sim_port, inmemory_group_name(namespace=namespace, name=name)
                    )
                    == []
                )
                assert not await _exists(kube, namespace, name)
    finally:
        await delete_nodes(kube=kube, namespace=namespace)


async def _exists(kube: KubeClient, namespace: str, name: str) -> bool:
    listing = await kube.list(MACHINE_POOL, namespace=namespace)
    return any(o["metadata"]["name"] == name for o in listing["items"])


async def test_leader_killed_standby_takes_over(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    sim_port = free_port()
    kubeconfig = str(control_plane.kubeconfig_path)
    lease, renew, retry = 4.0, 3.0, 0.5
    election = [
        "--leader-elect", "--leader-election-namespace", namespace,
        "--leader-elect-lease-duration", f"{lease:g}s",
        "--leader-elect-renew-deadline", f"{renew:g}s",
        "--leader-elect-retry-period", f"{retry:g}s",
    ]  # fmt: skip
    ports = [free_port(), free_port()]
    pools = {"a": 2, "b": 2}
    fleet = Fleet(
        kube=kube, namespace=namespace, pools=dict(pools),
        instances=lambda group: simulator_instances(sim_port, group),
    )  # fmt: skip

    async def holder() -> str:
        try:
            obj = await kube.get(
                LEASES, namespace=namespace, name="machinepool-controller-leader-election"
            )
        except Exception:
            return ""
        return str((obj.get("spec") or {}).get("holderIdentity") or "")

    async def leading(port: int) -> bool:
        try:
            samples = await scrape(port)
        except OSError:
            return False
        return any(
            key.startswith("leader_election_master_status") and value == 1
            for key, value in samples.items()
        )

    try:
        async with (
            spawned(
                args=["simulator", "--listen", f"127.0.0.1:{sim_port}", "--kubeconfig", kubeconfig],
                log=tmp_path / "simulator.log",
            ),
            spawned(args=_run_args(kubeconfig, namespace, sim_port, ports[0]) + election,
                    log=tmp_path / "one.log") as one,
            spawned(args=_run_args(kubeconfig, namespace, sim_port, ports[1]) + election,
                    log=tmp_path / "two.log") as two,
        ):  # fmt: skip
            await create_pools(kube=kube, namespace=namespace, pools=pools)
            await fleet.converge(timeout=90)

            async def one_leads() -> bool:
                return await leading(ports[0]) or await leading(ports[1])

            await until(one_leads, timeout=30, what="a leader")
            leader, standby, standby_port = (
                (one, two, ports[1]) if await leading(ports[0]) else (two, one, ports[0])
            )
            old_holder = await holder()
            standby_before = scraped_requests(await scrape(standby_port))
            fleet.pools = {name: 4 for name in pools}
            await scale(kube=kube, namespace=namespace, pools=fleet.pools)
            loop = asyncio.get_running_loop()
            killed = loop.time()
            await leader.kill()

            async def taken_over() -> bool:
                return (await holder()) not in ("", old_holder) and await leading(standby_port)

            await until(taken_over, timeout=3 * lease, interval=0.1, what="the standby leading")
            handover = loop.time() - killed
            recovery = await fleet.converge(timeout=90) + handover
            used = minus(scraped_requests(await scrape(standby_port)), standby_before)
            record(
                "leader SIGKILLed, standby takes over",
                lease_s=lease, renew_s=renew, retry_s=retry, handover_s=round(handover, 2),
                recovery_s=round(recovery, 2), standby_requests=used,
                problems=len(await fleet.problems()),
            )  # fmt: skip
            assert standby.running
            # the Lease could only be taken once the dead leader's record expired
            assert handover <= lease + 2 * retry + 2.0
    finally:
        await delete_nodes(kube=kube, namespace=namespace)
