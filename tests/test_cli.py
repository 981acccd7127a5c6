"""The command line as people use it: real subprocesses, real signals, real kubectl."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.runtime.kube import LEASES, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until

CLI = [sys.executable, "-m", "controller"]
LEASE_NAME = "machinepool-controller-leader-election"  # --leader-election-id's default


async def _spawn(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> asyncio.subprocess.Process:
    # A long-running controller logs without end: into a file, never into a pipe nobody
    # reads (a full pipe blocks its event loop, and then it cannot even handle SIGTERM).
    out: int | IO[bytes] = asyncio.subprocess.PIPE
    if log is not None:
        out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT if log is not None else asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        if not isinstance(out, int):
            out.close()


@contextlib.asynccontextmanager
async def spawned(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await _spawn(*args, env=env, log=log)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    async with spawned(*args, env=env) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


async def test_bad_flag_is_one_line_and_exit_2() -> None:
    code, _, err = await _run("run", "--concurrency", "0", env={"KUBECONFIG": ""})
    assert code == 2
    assert err.strip() == "machinepool-controller: error: --concurrency must be at least 1, got 0"
    code, _, err = await _run("run", "--sync-period", "soon")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "'soon' is not a duration" in err


async def test_unreachable_api_server_is_one_line_and_exit_1(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = control_plane.kubeconfig()
    port = free_port()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    code, _, err = await _run("run", "--kubeconfig", str(path), "--metrics-bind-address", "0",
                              "--health-probe-bind-address", "0")  # fmt: skip
    assert code == 1
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert len(lines) == 1
    assert lines[0].startswith(
        f"machinepool-controller: error: cannot reach the Kubernetes API server at "
        f"https://127.0.0.1:{port}"
    )


async def _metrics(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        return await resp.text()


async def _leader_status(port: int) -> float | None:
    try:
        text = await _metrics(port)
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith("leader_election_master_status{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _tails(logs: list[Path], *, chars: int = 2500) -> str:
    return "\n".join(
        f"--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}"
        for log in logs
        if log.exists()
    )


async def test_two_replicas_elect_one_leader_and_hand_over_when_it_dies(
    kubeconfig_path: str, namespace: str, tmp_path: Path
) -> None:
    # Short but not twitchy timings: a renewal may take a second or two on a loaded 2-core CI
    # machine, and a leader that misses its renew deadline rightly exits. The replicas watch
    # only the test's namespace: on the session's shared control plane, all namespaces hold
    # every earlier test's pools, and reconciling those starved the leader's renewals.
    lease, renew, retry = 5.0, 4.0, 0.5
    ports = [(free_port(), free_port()) for _ in range(2)]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def args(i: int) -> list[str]:
        metrics, health = ports[i]
        return [
            "run", "--kubeconfig", kubeconfig_path, "--namespace", namespace, "--leader-elect",
            "--leader-election-namespace", namespace,
            "--leader-elect-lease-duration", f"{lease:g}s",
            "--leader-elect-renew-deadline", f"{renew:g}s",
            "--leader-elect-retry-period", f"{int(retry * 1000)}ms",
            "--metrics-bind-address", f"127.0.0.1:{metrics}", "--metrics-secure=false",
            "--health-probe-bind-address", f"127.0.0.1:{health}",
        ]  # fmt: skip

    async with (
        spawned(*args(0), log=logs[0]) as first,
        spawned(*args(1), log=logs[1]) as second,
    ):
        procs = [first, second]
        statuses: list[float | None] = [None, None]

        def alive() -> None:
            for proc, log in zip(procs, logs, strict=True):
                if proc.returncode is not None:
                    raise AssertionError(
                        f"{log.name}: exited with {proc.returncode}\n{_tails(logs)}"
                    )

        async def sample() -> bool:
            alive()
            for i in range(2):
                statuses[i] = await _leader_status(ports[i][0])
            assert statuses != [1.0, 1.0], "two leaders at once"
            return sorted(s or 0.0 for s in statuses) == [0.0, 1.0] and None not in statuses

        try:
            await until(sample, timeout=60, what="one leader and one standby")
        except TimeoutError as e:
            raise AssertionError(f"{e}; statuses {statuses}\n{_tails(logs)}") from None
        leader = statuses.index(1.0)
        standby = 1 - leader
        os.killpg(procs[leader].pid, signal.SIGKILL)
        await procs[leader].wait()
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def took_over() -> bool:
            if procs[standby].returncode is not None:
                raise AssertionError(f"the standby exited\n{_tails(logs)}")
            return await _leader_status(ports[standby][0]) == 1.0

        await until(took_over, timeout=30, interval=0.1, what="the standby to take over")
        handover = loop.time() - killed_at
        # At most one lease duration after the leader's last renewal, plus a retry period
        # with its jitter and a scrape interval.
        assert handover < lease + 1.2 * retry + 1.0, _tails(logs)


async def test_sigterm_exits_cleanly_and_a_second_signal_at_once(
    kubeconfig_path: str, tmp_path: Path
) -> None:
    metrics, health = free_port(), free_port()
    log = tmp_path / "run.log"
    async with spawned(
        "run", "--kubeconfig", kubeconfig_path,
        "--metrics-bind-address", f"127.0.0.1:{metrics}",
        "--health-probe-bind-address", f"127.0.0.1:{health}",
        log=log,
    ) as proc:  # fmt: skip

        async def ready() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{health}/readyz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(ready, timeout=30, what="readyz")
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 45)  # within the 30 s grace period
        except TimeoutError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert code == 0


@pytest.mark.usefixtures("control_plane")
async def test_local_cluster_serves_kubectl_until_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "local.kubeconfig"
    async with spawned("local-cluster", "--kubeconfig-out", str(kubeconfig)) as proc:
        assert proc.stderr is not None
        async with asyncio.timeout(60):
            while b"control plane ready" not in (line := await proc.stderr.readline()):
                assert line, "local-cluster exited before it was ready"
        kubectl = Path(sys.executable).parent / "kubectl"
        out = await asyncio.create_subprocess_exec(
            str(kubectl), "get", "crds", "-o", "name",
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await out.communicate()
        assert out.returncode == 0
        assert "customresourcedefinition.apiextensions.k8s.io/machinepools.cluster.x-k8s.io" in (
            stdout.decode()
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not kubeconfig.exists()


async def test_crds_prints_every_generated_crd() -> None:
    code, out, _ = await _run("crds")
    assert code == 0
    names = {doc["metadata"]["name"] for doc in yaml.safe_load_all(out) if doc}
    assert {
        "machinepools.cluster.x-k8s.io",
        "machines.cluster.x-k8s.io",
        "clusters.cluster.x-k8s.io",
        "inmemorymachinepools.infrastructure.cluster.x-k8s.io",
        "inmemorymachines.infrastructure.cluster.x-k8s.io",
    } <= names


async def test_a_huge_pool_is_refused_while_the_leader_keeps_its_lease_and_others_converge(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kubeconfig_path: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Issue #14 §4: a tenant's ``replicas: 2147483647`` on an InMemoryMachinePool without
    ``maxSize`` (the old controller hung its event loop launching them) is refused with
    ``ReplicasOutOfRange`` before any cloud call, while the controller keeps its Lease under
    short timings and a normal pool beside it converges."""
    lease, renew, retry = 4.0, 3.0, 0.5
    metrics, health = free_port(), free_port()
    log = tmp_path / "controller.log"
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    args = [
        "run", "--kubeconfig", kubeconfig_path, "--namespace", namespace, "--leader-elect",
        "--leader-election-namespace", namespace,
        "--leader-elect-lease-duration", f"{lease:g}s",
        "--leader-elect-renew-deadline", f"{renew:g}s",
        "--leader-elect-retry-period", f"{int(retry * 1000)}ms",
        "--metrics-bind-address", f"127.0.0.1:{metrics}", "--metrics-secure=false",
        "--health-probe-bind-address", f"127.0.0.1:{health}",
    ]  # fmt: skip
    async with spawned(*args, log=log) as proc:

        async def leading() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"exited with {proc.returncode}\n{_tails([log])}")
            return await _leader_status(metrics) == 1.0

        await until(leading, timeout=60, what="the controller to lead")
        first = await kube.get(LEASES, namespace=namespace, name=LEASE_NAME)
        holder = first["spec"]["holderIdentity"]
        await create_inmemory_pool(kube=kube, namespace=namespace, name="huge",
                                   replicas=2**31 - 1)  # fmt: skip
        await create_inmemory_pool(kube=kube, namespace=namespace, name="small", replicas=2)

        async def settled() -> bool:
            assert await leading(), f"leadership lost\n{_tails([log])}"
            huge = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name="huge")
            small = await kube.get(MACHINE_POOL, namespace=namespace, name="small")
            ready = [
                c for c in (huge.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready"
            ]  # fmt: skip
            return (
                bool(ready)
                and ready[0]["status"] == "False"
                and ready[0]["reason"] == "ReplicasOutOfRange"
                and "--max-replicas-per-pool" in ready[0]["message"]
                and (small.get("status") or {}).get("readyReplicas") == 2
            )

        try:
            await until(settled, timeout=120, what="the huge pool refused, the small one ready")
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{_tails([log])}") from None
        huge = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name="huge")
        assert not (huge.get("spec") or {}).get("providerIDList")  # no cloud group, no launch
        last = await kube.get(LEASES, namespace=namespace, name=LEASE_NAME)
        assert last["spec"]["holderIdentity"] == holder
        assert last["spec"]["leaseTransitions"] == first["spec"]["leaseTransitions"]
        assert "leadership lost" not in log.read_text(errors="replace")
