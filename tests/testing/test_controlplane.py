"""The local control plane: it starts, serves our CRDs, authenticates as on a real cluster,
stops without leaving anything behind, and fails with one clear line when it cannot start."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.kube import SECRETS, ApiError, KubeClient, Resource, RestMetrics
from controller.testing import ControlPlane, ControlPlaneError, find_assets
from controller.testing.assets import Assets


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (the control plane's work directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


async def test_serves_our_crds_over_tls_with_rbac(control_plane: ControlPlane) -> None:
    async with control_plane.api_client() as api:
        data = await _kube(api).request(method="GET", path="/apis/cluster.x-k8s.io/v1beta2")
    names = {r["name"] for r in data["resources"]}
    assert {"machinepools", "machinepools/scale", "machinepools/status", "machines"} <= names
    assert control_plane.server.startswith("https://127.0.0.1:")
    assert control_plane.kubeconfig_path.stat().st_mode & 0o077 == 0


async def test_token_request_and_rbac_for_a_service_account(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    accounts = Resource(group="", version="v1", plural="serviceaccounts", kind="ServiceAccount")
    await kube.create(accounts, namespace=namespace, body={"metadata": {"name": "robot"}})
    token = await kube.request(
        method="POST",
        path=accounts.path(namespace=namespace, name="robot", subresource="token"),
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    async with control_plane.api_client(token=token["status"]["token"]) as robot_api:
        robot = _kube(robot_api)
        review = await robot.request(
            method="POST",
            path="/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{namespace}:robot"
        )
        with pytest.raises(ApiError) as err:
            await robot.list(SECRETS, namespace=namespace)
        assert err.value.status == 403


async def test_stops_everything_and_removes_its_workdir() -> None:
    async with ControlPlane(install_crds=False) as cp:
        workdir = cp.workdir
        assert len(_processes_mentioning(str(workdir))) == 2
    assert not workdir.exists()
    assert _processes_mentioning(str(workdir)) == []


class _SignalsApiserverStart(ControlPlane):
    """Sets an event when start-up reaches kube-apiserver (etcd already running)."""

    def __init__(self) -> None:
        super().__init__(install_crds=False)
        self.reached_apiserver = asyncio.Event()
        self.workdirs: list[Path] = []

    async def start_apiserver(self, *, deadline: float | None = None) -> None:
        self.workdirs.append(self.workdir)
        self.reached_apiserver.set()
        await super().start_apiserver(deadline=deadline)


async def test_cancelled_during_start_leaves_nothing_behind() -> None:
    cp = _SignalsApiserverStart()

    async def run() -> None:
        async with cp:
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await cp.reached_apiserver.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cp.workdirs
    assert not cp.workdirs[0].exists()
    assert _processes_mentioning(str(cp.workdirs[0])) == []


async def test_port_clash_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ControlPlaneError) as err:
            async with ControlPlane(apiserver_port=port, install_crds=False):
                pass
    message = str(err.value)
    assert message == (f"port {port} on 127.0.0.1 (wanted for kube-apiserver) is already in use")


async def test_crashing_etcd_is_one_clear_error(tmp_path: Path) -> None:
    real = find_assets()
    wrapper = tmp_path / "etcd"
    wrapper.write_text(f'#!/bin/sh\nexec {real.etcd} --no-such-flag "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(ControlPlaneError) as err:
        async with ControlPlane(
            assets=Assets(kube_apiserver=real.kube_apiserver, etcd=wrapper), install_crds=False
        ):
            pass
    message = str(err.value)
    assert message.startswith("etcd exited with code")
    assert "no-such-flag" in message
    assert "\n" not in message


async def test_unreachable_etcd_times_out_with_the_cause() -> None:
    async with ControlPlane(install_crds=False, start_timeout=8) as cp:
        await cp.stop_apiserver()
        await cp.kill_etcd()
        with pytest.raises(ControlPlaneError) as err:
            await cp.start_apiserver()
    message = str(err.value)
    assert message.startswith("kube-apiserver did not become ready within 8s")
    assert "\n" not in message


def test_missing_binaries_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError) as err:
        find_assets(tmp_path)
    assert "kube-apiserver and etcd not found" in str(err.value)
    assert "make envtest" in str(err.value)


def test_kubebuilder_assets_is_used_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("kube-apiserver", "etcd"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert find_assets().etcd == tmp_path / "etcd"


def test_pinned_versions_match_the_build_script() -> None:
    from controller.testing import assets

    env = dict(
        line.split("=", 1)
        for line in Path("hack/envtest/versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert (env["KUBE_VERSION"], env["ETCD_VERSION"]) == (
        assets.KUBE_VERSION,
        assets.ETCD_VERSION,
    )


def _run_build(*, env: dict[str, str]) -> tuple[int, str]:
    import subprocess

    proc = subprocess.run(
        ["./hack/envtest/build.sh"],
        env={k: v for k, v in {**os.environ, **env}.items() if k != "KUBEBUILDER_ASSETS"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stderr


def test_build_without_go_names_the_missing_toolchain(tmp_path: Path) -> None:
    code, stderr = _run_build(env={"MPC_ENVTEST_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert code == 1
    assert len(stderr.strip().splitlines()) == 1
    assert "the Go toolchain (go) is not on PATH" in stderr


def test_failed_build_is_one_line_with_the_log(tmp_path: Path) -> None:
    broken = tmp_path / "src"
    for name in ("kube-apiserver", "etcd"):
        (broken / name).mkdir(parents=True)
        (broken / name / "go.mod").write_text(f"module broken.invalid/{name}\n\ngo 1.24\n")
    cache = tmp_path / "cache"
    code, stderr = _run_build(env={"MPC_ENVTEST_CACHE": str(cache), "MPC_ENVTEST_SRC": str(broken)})
    assert code == 1
    lines = [ln for ln in stderr.splitlines() if ln.startswith("envtest:")]
    assert lines[-1].startswith("envtest: building kube-apiserver failed:")
    assert "full log:" in lines[-1]
    assert not any(p.name.endswith(".tmp") or p.name == "kube-apiserver" for p in cache.rglob("*"))
