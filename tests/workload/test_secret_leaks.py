"""Nothing from a kubeconfig Secret leaks back to the tenant or into the logs: the controller
runs as deployed (``machinepool-controller run``, the in-memory simulator in process, whose
kubelets load the same Secret) against the real API server with a malformed kubeconfig that
holds a token; the token appears in no condition, no Event and no log line, in either log
format. A traceback in the console format shows no local variables (which may hold one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.runtime.kube import EVENTS, SECRETS, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.scenario import create_inmemory_pool
from controller.testing.waiting import until
from tests.test_cli import spawned

TOKEN = "tenant-token-5f3c9a1e7b2d4c60"


def _malformed_kubeconfig(control_plane: ControlPlane) -> str:
    """A real kubeconfig whose user block breaks YAML on the token's own line."""
    text = yaml.safe_dump(control_plane.kubeconfig())
    assert "client-certificate-data" in text
    return text.replace(
        "client-certificate-data:", f"token: {TOKEN}: [\n    client-certificate-data:", 1
    )


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    found = list(status.get("conditions") or [])
    found += list(((status.get("v1beta2") or {}).get("conditions")) or [])
    found += list(((status.get("deprecated") or {}).get("v1beta1") or {}).get("conditions") or [])
    return found


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_token_in_a_malformed_kubeconfig_is_never_echoed(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    fmt: str,
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await kube.create(CLUSTER, namespace=namespace, body={"metadata": {"name": "c1"}, "spec": {}})
    await kube.create(
        SECRETS,
        namespace=namespace,
        body={
            "metadata": {
                "name": "c1-kubeconfig",
                "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
            },
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": _malformed_kubeconfig(control_plane)},
        },
    )
    await create_inmemory_pool(kube=kube, namespace=namespace, replicas=1)
    log = tmp_path / "controller.log"

    async def pool() -> dict[str, Any]:
        return await kube.get(MACHINE_POOL, namespace=namespace, name="p1")

    async def reported() -> bool:
        conditions = _conditions(await pool())
        pool_says = any("c1-kubeconfig" in str(c.get("message")) for c in conditions)
        # The simulator's kubelet tried the Secret too (its error is logged).
        kubelet_says = f"{namespace}/c1-kubeconfig" in log.read_text(errors="replace")
        return pool_says and kubelet_says

    async with spawned(
        "run", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", namespace,
        "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
        "--log-format", fmt, "--log-level", "debug", log=log,
    ):  # fmt: skip
        await until(reported, timeout=60, what="the bad kubeconfig reported by pool and kubelet")
        pool_obj = await pool()
        infra = await kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name="p1")
        events = (await kube.list(EVENTS, namespace=namespace)).get("items", [])

    for obj in (pool_obj, infra):
        assert TOKEN not in str(_conditions(obj))
    assert TOKEN not in str([(e.get("reason"), e.get("message"), e.get("note")) for e in events])
    text = log.read_text(errors="replace")
    assert text.strip()
    assert TOKEN not in text
    reasons = {c.get("reason") for c in _conditions(pool_obj) if "c1-kubeconfig" in str(c)}
    assert reasons == {"InvalidKubeconfig"}


_TRACEBACK_SCRIPT = """
import structlog
from controller.runtime.logging import configure_logging

configure_logging(fmt={fmt!r}, level="info")

def load(kubeconfig):
    token = kubeconfig["token"]
    raise ValueError("unusable kubeconfig")

try:
    load({{"token": {token!r}}})
except ValueError:
    structlog.get_logger("t").exception("load failed")
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logged_tracebacks_show_no_local_variables(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TRACEBACK_SCRIPT.format(fmt=fmt, token=TOKEN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "unusable kubeconfig" in done.stderr  # the traceback is there
    assert "load" in done.stderr
    assert TOKEN not in done.stderr
