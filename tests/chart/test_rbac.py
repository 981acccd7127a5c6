"""RBAC proof: the controller runs a MachinePool through its life with nothing but the
chart's own ServiceAccount and RBAC, and that identity cannot write outside its remit.

The chart is rendered for the test's namespace; its ServiceAccount, (Cluster)Role and
bindings are applied as they are; a token is minted for the ServiceAccount (TokenRequest)
and put in a kubeconfig; the controller runs as a process with exactly the Deployment's
args (after ``run``, the image's entrypoint) and env. A permission the code needs but the
chart lacks shows up as a pool that does not converge, a 403 counted in
``rest_client_requests_total``, or a forbidden line in the log; all three are checked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.runtime.kube import (
    EVENTS,
    LEASES,
    SECRETS,
    ApiError,
    KubeClient,
    Resource,
    RestMetrics,
)
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.scenario import create_inmemory_pool, create_workload_cluster
from controller.testing.waiting import until
from tests.chart.helm import Helm, find, kubectl, to_yaml

SERVICE_ACCOUNTS = Resource(group="", version="v1", plural="serviceaccounts", kind="ServiceAccount")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
FAST = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 0}


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


def _token_kubeconfig(control_plane: ControlPlane, token: str) -> dict[str, Any]:
    config = control_plane.kubeconfig()
    config["users"] = [{"name": "local-admin", "user": {"token": token}}]
    return config


@contextlib.asynccontextmanager
async def _controller(
    *, args: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The controller as its own process; output goes to ``log`` (a pipe could fill up)."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "run", *args,
            stdout=out, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env},
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _http_get(url: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status, await resp.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def _forbidden(call: Any) -> None:
    with pytest.raises(ApiError) as err:
        await call
    assert err.value.status == 403, err.value


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
async def test_controller_runs_a_pool_with_only_the_charts_rbac(
    helm: Helm,
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kubeconfig_path: str,
    namespace: str,
    tmp_path: Path,
    scope: str,
) -> None:
    admin = _kube(api_client)
    release = f"r{uuid.uuid4().hex[:6]}"
    metrics_port, health_port = free_port(), free_port()
    values: dict[str, Any] = {
        "metrics": {"port": metrics_port},
        "health": {"port": health_port},
        "logging": {"format": "console"},
    }
    if scope == "namespace":
        values["watchNamespace"] = namespace
    else:
        # Cluster-wide RBAC, but only this test's objects: other tests' pools stay untouched.
        values["extraArgs"] = [f"--namespace={namespace}"]
    docs = await helm.render(values=values, namespace=namespace, release=release)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    # Both scopes: namespace scope keeps one ClusterRole, reading CRDs (contract labels).
    assert {d["kind"] for d in rbac} == RBAC_KINDS
    done = await kubectl(
        "apply", "--server-side", "-f", "-", kubeconfig=kubeconfig_path, stdin=to_yaml(rbac)
    )
    assert done.code == 0, done.err

    account = find(docs, "ServiceAccount")["metadata"]["name"]
    token = await admin.request(
        method="POST",
        path=SERVICE_ACCOUNTS.path(namespace=namespace, name=account, subresource="token"),
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    sa_kubeconfig = tmp_path / "sa.kubeconfig"
    sa_kubeconfig.write_text(
        yaml.safe_dump(_token_kubeconfig(control_plane, token["status"]["token"]))
    )
    sa_kubeconfig.chmod(0o600)

    container = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {"POD_NAMESPACE": namespace, "KUBECONFIG": str(sa_kubeconfig)}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
    lease_name = f"{release}-machinepool-controller-leader-election"

    await create_workload_cluster(kube=admin, control_plane=control_plane, namespace=namespace)
    await admin.create(
        SECRETS,
        namespace=namespace,
        body={"metadata": {"name": "boot"}, "stringData": {"value": "x"}},
    )
    await admin.create(
        SECRETS,
        namespace=namespace,
        body={"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}},
    )
    log = tmp_path / "controller.log"
    async with _controller(args=container["args"], env=env, log=log) as proc:
        await until(lambda: _ready(health_port), timeout=60, what="/readyz of the controller")

        async def pool_at(n: int) -> bool:
            status = (await admin.get(MACHINE_POOL, namespace=namespace, name="p1")).get(
                "status", {}
            )
            return bool(
                status.get("phase") == "Running"
                and status.get("readyReplicas") == n
                and status.get("replicas") == n
            )

        await create_inmemory_pool(kube=admin, namespace=namespace, replicas=2, template=FAST)
        await until(lambda: pool_at(2), timeout=90, what="2 replicas Running")
        await admin.merge_patch(
            MACHINE_POOL, namespace=namespace, name="p1", subresource="scale",
            patch={"spec": {"replicas": 3}},
        )  # fmt: skip
        await until(lambda: pool_at(3), timeout=90, what="3 replicas Running")
        await admin.merge_patch(
            MACHINE_POOL, namespace=namespace, name="p1", subresource="scale",
            patch={"spec": {"replicas": 1}},
        )  # fmt: skip
        await until(lambda: pool_at(1), timeout=90, what="1 replica Running")
        await admin.delete(MACHINE_POOL, namespace=namespace, name="p1")

        async def gone() -> bool:
            for kind in (MACHINE_POOL, IN_MEMORY_MACHINE_POOL):
                try:
                    await admin.get(kind, namespace=namespace, name="p1")
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                else:
                    return False
            return True

        await until(gone, timeout=90, what="the pool and its InMemoryMachinePool deleted")

        lease = await admin.get(LEASES, namespace=namespace, name=lease_name)
        assert lease["spec"]["holderIdentity"]
        events = (await admin.list(EVENTS, namespace=namespace))["items"]
        # The scale-in drained and deleted Nodes through the pool's Machines, each step an
        # Event the controller created with the chart's RBAC.
        seen = {(e["regarding"]["kind"], e["reason"]) for e in events}
        assert {("Machine", "NodeDrained"), ("Machine", "NodeDeleted"),
                ("MachinePool", "MachineCreated")} <= seen, seen  # fmt: skip

        status, metrics = await _http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        requests = [
            ln for ln in metrics.splitlines() if ln.startswith("rest_client_requests_total{")
        ]
        assert requests
        assert not [ln for ln in requests if 'code="403"' in ln], requests

        async with control_plane.api_client(token=token["status"]["token"]) as sa_api:
            sa = _kube(sa_api)
            await _forbidden(sa.delete(SECRETS, namespace=namespace, name="unrelated"))
            await _forbidden(
                sa.create(SECRETS, namespace=namespace, body={"metadata": {"name": "x"}})
            )
            await _forbidden(
                sa.merge_patch(
                    CLUSTER,
                    namespace=namespace,
                    name="c1",
                    patch={"metadata": {"labels": {"x": "y"}}},
                )
            )
            await _forbidden(sa.get(LEASES, namespace=namespace, name="someone-elses-lease"))
            if scope == "namespace":
                await _forbidden(sa.list(MACHINE_POOL, namespace="default"))
                await _forbidden(sa.list(SECRETS))

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    text = log.read_text()
    assert "forbidden" not in text.lower(), text[-3000:]


async def _ready(port: int) -> bool:
    status, _ = await _http_get(f"http://127.0.0.1:{port}/readyz")
    return status == 200
