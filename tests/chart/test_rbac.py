"""RBAC proof: the controller runs a MachinePool through its life with nothing but the
chart's own ServiceAccount and RBAC, and that identity cannot write outside its remit.

The chart is rendered for the test's namespace; its ServiceAccount, (Cluster)Role and
bindings are applied as they are; a token is minted for the ServiceAccount (TokenRequest)
and put in a kubeconfig; the controller runs as a process with exactly the Deployment's
args (after ``run``, the image's entrypoint) and env. A permission the code needs but the
chart lacks shows up as a pool that does not converge, a 403 counted in
``rest_client_requests_total``, or a forbidden line in the log; all three are checked.

With ``watchNamespaces`` (scope ``namespaces``) the pool lives in the second of two watched
namespaces, each with its own Role, and an attacker's kubeconfig Secret, Cluster and pool sit
in a third, unwatched namespace: the identity cannot read that Secret, and the controller
never tries (no 403, nothing forbidden in its log, the pool untouched)."""

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


async def _http_get(url: str, *, authorization: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": authorization} if authorization else {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers, ssl=False) as resp,
        ):
            return resp.status, await resp.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def _forbidden(call: Any) -> None:
    with pytest.raises(ApiError) as err:
        await call
    assert err.value.status == 403, err.value


@pytest.mark.parametrize("scope", ["cluster", "namespace", "namespaces"])
async def test_controller_runs_a_pool_with_only_the_charts_rbac(
    helm: Helm,
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kubeconfig_path: str,
    namespace: str,
    two_more_namespaces: tuple[str, str],
    tmp_path: Path,
    scope: str,
) -> None:
    admin = _kube(api_client)
    second, outside = two_more_namespaces
    # Where the pool lives: the release namespace, or the second watched namespace.
    pool_ns = second if scope == "namespaces" else namespace
    release = f"r{uuid.uuid4().hex[:6]}"
    metrics_port, health_port = free_port(), free_port()
    values: dict[str, Any] = {
        "metrics": {
            "port": metrics_port,
            "readerSubjects": [
                {"kind": "ServiceAccount", "name": "prometheus", "namespace": namespace}
            ],
        },
        "health": {"port": health_port},
        "logging": {"format": "console"},
    }
    if scope == "namespace":
        values["watchNamespace"] = namespace
    elif scope == "namespaces":
        values["watchNamespaces"] = [namespace, second]
    else:
        # Cluster-wide RBAC, but only this test's objects: other tests' pools stay untouched.
        values["extraArgs"] = [f"--namespace={namespace}"]
    docs = await helm.render(values=values, namespace=namespace, release=release)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in rbac} == RBAC_KINDS
    if scope != "cluster":  # cluster-scoped: the secure metrics endpoint and reading CRDs
        assert {d["metadata"]["name"] for d in rbac if d["kind"].startswith("Cluster")} == {
            f"{release}-machinepool-controller-metrics-auth",
            f"{release}-machinepool-controller-metrics-reader",
            f"{release}-machinepool-controller-crd-reader",
        }
    if scope == "namespaces":
        roles = [d for d in rbac if d["kind"] == "Role" and d["metadata"]["namespace"] == second]
        assert len(roles) == 1
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
    # Prometheus' identity, bound to the metrics-reader ClusterRole by metrics.readerSubjects.
    await admin.create(SERVICE_ACCOUNTS, namespace=namespace,
                       body={"metadata": {"name": "prometheus"}})  # fmt: skip
    scraper = await admin.request(
        method="POST",
        path=SERVICE_ACCOUNTS.path(namespace=namespace, name="prometheus", subresource="token"),
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )

    container = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {"POD_NAMESPACE": namespace, "KUBECONFIG": str(sa_kubeconfig)}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
    lease_name = f"{release}-machinepool-controller-leader-election"

    await create_workload_cluster(kube=admin, control_plane=control_plane, namespace=pool_ns)
    await admin.create(
        SECRETS,
        namespace=pool_ns,
        body={"metadata": {"name": "boot"}, "stringData": {"value": "x"}},
    )
    await admin.create(
        SECRETS,
        namespace=pool_ns,
        body={"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}},
    )
    if scope == "namespaces":
        # The attacker's namespace: a kubeconfig Secret (labelled as Cluster API labels it,
        # so a watching controller would cache and use it), its Cluster and a pool.
        await create_workload_cluster(kube=admin, control_plane=control_plane, namespace=outside)
        await create_inmemory_pool(kube=admin, namespace=outside, replicas=1, template=FAST)
    log = tmp_path / "controller.log"
    async with _controller(args=container["args"], env=env, log=log) as proc:
        await until(lambda: _ready(health_port), timeout=60, what="/readyz of the controller")

        async def pool_at(n: int) -> bool:
            status = (await admin.get(MACHINE_POOL, namespace=pool_ns, name="p1")).get("status", {})
            return bool(
                status.get("phase") == "Running"
                and status.get("readyReplicas") == n
                and status.get("replicas") == n
            )

        await create_inmemory_pool(kube=admin, namespace=pool_ns, replicas=2, template=FAST)
        await until(lambda: pool_at(2), timeout=90, what="2 replicas Running")
        await admin.merge_patch(
            MACHINE_POOL, namespace=pool_ns, name="p1", subresource="scale",
            patch={"spec": {"replicas": 3}},
        )  # fmt: skip
        await until(lambda: pool_at(3), timeout=90, what="3 replicas Running")
        await admin.merge_patch(
            MACHINE_POOL, namespace=pool_ns, name="p1", subresource="scale",
            patch={"spec": {"replicas": 1}},
        )  # fmt: skip
        await until(lambda: pool_at(1), timeout=90, what="1 replica Running")
        await admin.delete(MACHINE_POOL, namespace=pool_ns, name="p1")

        async def gone() -> bool:
            for kind in (MACHINE_POOL, IN_MEMORY_MACHINE_POOL):
                try:
                    await admin.get(kind, namespace=pool_ns, name="p1")
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                else:
                    return False
            return True

        await until(gone, timeout=90, what="the pool and its InMemoryMachinePool deleted")

        lease = await admin.get(LEASES, namespace=namespace, name=lease_name)
        assert lease["spec"]["holderIdentity"]
        events = (await admin.list(EVENTS, namespace=pool_ns))["items"]
        # The scale-in drained and deleted Nodes through the pool's Machines, each step an
        # Event the controller created with the chart's RBAC.
        seen = {(e["regarding"]["kind"], e["reason"]) for e in events}
        assert {("Machine", "NodeDrained"), ("Machine", "NodeDeleted"),
                ("MachinePool", "MachineCreated")} <= seen, seen  # fmt: skip

        # /metrics is HTTPS behind TokenReview + SubjectAccessReview, which the controller
        # makes with the chart's metrics-auth rules: Prometheus' token is let in, none is not.
        url = f"https://127.0.0.1:{metrics_port}/metrics"
        assert (await _http_get(url))[0] == 401
        status, metrics = await _http_get(url, authorization=f"Bearer {scraper['status']['token']}")
        assert status == 200, metrics
        requests = [
            ln for ln in metrics.splitlines() if ln.startswith("rest_client_requests_total{")
        ]
        assert requests
        assert not [ln for ln in requests if 'code="403"' in ln], requests

        async with control_plane.api_client(token=token["status"]["token"]) as sa_api:
            sa = _kube(sa_api)
            await _forbidden(sa.delete(SECRETS, namespace=pool_ns, name="unrelated"))
            await _forbidden(
                sa.create(SECRETS, namespace=pool_ns, body={"metadata": {"name": "x"}})
            )
            await _forbidden(
                sa.merge_patch(
                    CLUSTER,
                    namespace=pool_ns,
                    name="c1",
                    patch={"metadata": {"labels": {"x": "y"}}},
                )
            )
            await _forbidden(sa.get(LEASES, namespace=namespace, name="someone-elses-lease"))
            if scope != "cluster":
                await _forbidden(sa.list(MACHINE_POOL, namespace="default"))
                await _forbidden(sa.list(SECRETS))
            if scope == "namespaces":
                await _forbidden(sa.get(SECRETS, namespace=outside, name="c1-kubeconfig"))
                await _forbidden(sa.list(SECRETS, namespace=outside))
                await _forbidden(sa.list(MACHINE_POOL, namespace=outside))
                # Never tried either: the attacker's pool has no finalizer and no status.
                ignored = await admin.get(MACHINE_POOL, namespace=outside, name="p1")
                assert not ignored["metadata"].get("finalizers"), ignored["metadata"]
                assert "status" not in ignored

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    text = log.read_text()
    assert "forbidden" not in text.lower(), text[-3000:]


async def _ready(port: int) -> bool:
    status, _ = await _http_get(f"http://127.0.0.1:{port}/readyz")
    return status == 200
