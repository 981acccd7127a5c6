"""The MachinePool feature gate: how it is set, and a controller run with it off.

With the gate off the controller must leave every MachinePool alone (no finalizer, no status,
no infrastructure) for longer than a full resync, and say why in its log and in
``/readyz?verbose``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.cli import build_parser
from controller.options import FEATURE_GATES, OptionError, RunOptions
from controller.runtime.featuregates import FeatureGateError, resolve
from controller.runtime.kube import KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.test_cli import spawned

# ---------------------------------------------------------------- resolution


def _gate(flag: str, env: dict[str, str]) -> tuple[bool, str]:
    gates = resolve(known=FEATURE_GATES, flag=flag, environ=env)
    return gates.enabled("MachinePool"), gates.sources["MachinePool"]


def test_default_is_on() -> None:
    assert _gate("", {}) == (True, "default")
    assert _gate("", {"EXP_MACHINE_POOL": ""}) == (True, "default")


def test_environment_variable_sets_the_gate() -> None:
    assert _gate("", {"EXP_MACHINE_POOL": "false"}) == (False, "from $EXP_MACHINE_POOL")
    assert _gate("", {"EXP_MACHINE_POOL": "TRUE"}) == (True, "from $EXP_MACHINE_POOL")


def test_the_flag_wins_over_the_environment() -> None:
    assert _gate("MachinePool=true", {"EXP_MACHINE_POOL": "false"}) == (
        True,
        "from --feature-gates",
    )
    assert _gate(" MachinePool = false ,", {"EXP_MACHINE_POOL": "true"}) == (
        False,
        "from --feature-gates",
    )


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        ("Bogus=true", {}, "unknown feature gate 'Bogus' (known: MachinePool)"),
        ("MachinePool=yes", {}, "--feature-gates MachinePool: 'yes' is not true or false"),
        ("MachinePool", {}, "'MachinePool' is not Name=true|false"),
        ("MachinePool=true,MachinePool=false", {}, "MachinePool is given twice"),
        ("", {"EXP_MACHINE_POOL": "1"}, "$EXP_MACHINE_POOL: '1' is not true or false"),
    ],
)
def test_bad_settings_are_errors(flag: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(FeatureGateError) as caught:
        resolve(known=FEATURE_GATES, flag=flag, environ=env)
    assert message in str(caught.value)


def test_run_options_carry_the_gate_and_the_watch_filter() -> None:
    args = build_parser().parse_args(["run", "--watch-filter", "team-a"])
    options = RunOptions.from_args(args, environ={"EXP_MACHINE_POOL": "false"})
    assert not options.machine_pool_enabled
    assert options.label_selector() == "cluster.x-k8s.io/watch-filter=team-a"
    args = build_parser().parse_args(["run", "--feature-gates", "MachinePool=maybe"])
    with pytest.raises(OptionError, match="'maybe' is not true or false"):
        RunOptions.from_args(args, environ={})
    args = build_parser().parse_args(["run", "--watch-filter", "not a label"])
    with pytest.raises(OptionError, match="is not a valid label value"):
        RunOptions.from_args(args, environ={})


# ---------------------------------------------------------------- gate off, for real


async def test_with_the_gate_off_a_machine_pool_is_left_alone(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await create_inmemory_pool(kube=kube, namespace=namespace, replicas=2)
    before = await kube.get(MACHINE_POOL, namespace=namespace, name="p1")
    infra_before = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name="p1")
    health, metrics = free_port(), free_port()
    sync_period = 1.0
    args = [
        "run", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", namespace,
        "--sync-period", f"{sync_period}s", "--metrics-bind-address", f"127.0.0.1:{metrics}",
        "--metrics-secure=false", "--health-probe-bind-address", f"127.0.0.1:{health}",
        "--log-format", "console",
    ]  # fmt: skip
    async with spawned(*args, env={"EXP_MACHINE_POOL": "false"}) as proc:
        readyz = ""

        async def ready() -> bool:
            nonlocal readyz
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{health}/readyz?verbose") as resp,
                ):
                    readyz = await resp.text()
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(ready, timeout=30, what="/readyz")
        assert (
            "[+]featureGates ok: MachinePool=false (from $EXP_MACHINE_POOL); "
            "MachinePools are not reconciled"
        ) in readyz
        # Nothing can be awaited here: the claim is that nothing happens. Wait out more
        # than two sync periods (a resync would replay every cached pool to a controller).
        await asyncio.sleep(2.5 * sync_period)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics}/metrics") as resp,
        ):
            exposition = await resp.text()
        # No controller was ever started: no per-controller series exist at all.
        assert "controller_runtime_max_concurrent_reconciles{" not in exposition
        assert 'controller="machinepool"' not in exposition
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
    log = err.decode()
    assert "the MachinePool feature gate is disabled" in log
    assert "nothing is deleted" in log
    after = await kube.get(MACHINE_POOL, namespace=namespace, name="p1")
    infra_after = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name="p1")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "finalizers" not in after["metadata"]
    assert "status" not in after
    assert infra_after["metadata"]["resourceVersion"] == infra_before["metadata"]["resourceVersion"]
