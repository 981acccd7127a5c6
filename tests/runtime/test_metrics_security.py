"""``/metrics`` behind HTTPS, TokenReview and SubjectAccessReview, scraped for real.

Against the local API server (which signs ServiceAccount tokens and authorizes with RBAC):
a ServiceAccount bound to a ``nonResourceURLs: [/metrics]`` ClusterRole scrapes 200, one
without the binding gets 403, no token or a bad one 401; probes stay plain HTTP; answers are
cached; an API server that cannot be reached means 500 with a fixed message. And the ``run``
command: secure by default, plain HTTP with ``--metrics-secure=false``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.options import OptionError, RunOptions, add_run_arguments
from controller.runtime.kube import KubeClient, Resource, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.metricsauth import MetricsAuth
from controller.runtime.server import ProbeServer
from controller.runtime.servingcert import (
    CERT_FILE,
    KEY_FILE,
    CertificateError,
    ServingCertificate,
    self_signed,
    self_signed_pem,
)
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.waiting import until
from tests.test_cli import spawned

SERVICE_ACCOUNTS = Resource(group="", version="v1", plural="serviceaccounts",
                            kind="ServiceAccount")  # fmt: skip
CLUSTER_ROLES = Resource(group="rbac.authorization.k8s.io", version="v1", plural="clusterroles",
                         kind="ClusterRole", namespaced=False)  # fmt: skip
CLUSTER_ROLE_BINDINGS = Resource(group="rbac.authorization.k8s.io", version="v1",
                                 plural="clusterrolebindings", kind="ClusterRoleBinding",
                                 namespaced=False)  # fmt: skip


async def _token(kube: KubeClient, *, namespace: str, name: str) -> str:
    """A new ServiceAccount's token, from the TokenRequest API."""
    await kube.create(SERVICE_ACCOUNTS, namespace=namespace, body={"metadata": {"name": name}})
    answer = await kube.request(
        method="POST",
        path=SERVICE_ACCOUNTS.path(namespace=namespace, name=name, subresource="token"),
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])


@contextlib.asynccontextmanager
async def metrics_reader(kube: KubeClient, *, namespace: str, account: str) -> AsyncIterator[None]:
    """The chart's ``metrics-reader`` rule, bound to ``account`` (removed on exit)."""
    name = f"metrics-reader-{namespace}"
    await kube.create(CLUSTER_ROLES, body={
        "metadata": {"name": name},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    })  # fmt: skip
    await kube.create(CLUSTER_ROLE_BINDINGS, body={
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    })  # fmt: skip
    try:
        yield
    finally:
        await kube.delete(CLUSTER_ROLE_BINDINGS, name=name)
        await kube.delete(CLUSTER_ROLES, name=name)


async def _scrape(
    url: str, *, authorization: str | None = None, tls: ssl.SSLContext | bool = False
) -> tuple[int, str]:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=tls) as resp,
    ):
        return resp.status, await resp.text()


@contextlib.asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[None]:
    shutdown = asyncio.Event()
    task = asyncio.create_task(manager.run(shutdown=shutdown))
    try:
        await until(lambda: manager.probes.metrics_port is not None or task.done(), timeout=10)
        assert not task.done(), task.result()
        yield
    finally:
        shutdown.set()
        await asyncio.wait_for(task, 30)


async def test_an_allowed_account_scrapes_and_others_are_refused(
    api_client: client.ApiClient, namespace: str
) -> None:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    reader = await _token(kube, namespace=namespace, name="prometheus")
    stranger = await _token(kube, namespace=namespace, name="stranger")
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="127.0.0.1:0", health_address="127.0.0.1:0", metrics_secure=True
        ),
    )
    auth = manager.metrics_auth
    assert auth is not None
    async with metrics_reader(kube, namespace=namespace, account="prometheus"), running(manager):
        url = f"https://127.0.0.1:{manager.probes.metrics_port}/metrics"

        status, body = await _scrape(url, authorization=f"Bearer {reader}")
        assert status == 200, body
        assert "rest_client_requests_total{" in body
        reviews = auth.reviews
        assert reviews == 2  # one TokenReview, one SubjectAccessReview
        status, _ = await _scrape(url, authorization=f"Bearer {reader}")
        assert status == 200
        assert auth.reviews == reviews  # cached: the next scrape costs no API call

        status, body = await _scrape(url, authorization=f"Bearer {stranger}")
        assert (status, body) == (403, "Forbidden\n")
        for refused in (None, "Bearer not-a-token", f"Basic {reader}", "Bearer", f"{reader}"):
            status, body = await _scrape(url, authorization=refused)
            assert (status, body) == (401, "Unauthorized\n"), refused
        # Unknown paths are refused before anything else, too.
        status, _ = await _scrape(url.replace("/metrics", "/debug"))
        assert status == 401

        # Only HTTPS: plain HTTP on the metrics port gets no answer.
        with pytest.raises(aiohttp.ClientError):
            await _scrape(url.replace("https://", "http://"), authorization=f"Bearer {reader}")
        # Probes stay plain HTTP without a token.
        status, _ = await _scrape(f"http://127.0.0.1:{manager.probes.health_port}/healthz")
        assert status == 200


async def test_an_api_server_that_cannot_answer_means_500_without_details() -> None:
    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    async with client.ApiClient(configuration=cfg) as api:
        auth = MetricsAuth(
            kube=KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))
        )
        probes = ProbeServer(metrics_address="127.0.0.1:0", health_address="0",
                             registry=CollectorRegistry(), metrics_tls=self_signed(),
                             metrics_auth=auth)  # fmt: skip
        async with probes:
            url = f"https://127.0.0.1:{probes.metrics_port}/metrics"
            secret = "s3cr3t-token-value"
            status, body = await _scrape(url, authorization=f"Bearer {secret}")
    assert (status, body) == (500, "Internal Server Error: cannot check authorization\n")


async def test_a_certificate_directory_is_served_and_trusted_by_its_ca(
    api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    cert, key = self_signed_pem()
    (tmp_path / CERT_FILE).write_bytes(cert)
    (tmp_path / KEY_FILE).write_bytes(key)
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    reader = await _token(kube, namespace=namespace, name="prometheus")
    manager = Manager(kube=kube, registry=registry, options=ManagerOptions(
        metrics_address="127.0.0.1:0", health_address="0", metrics_secure=True,
        metrics_cert_dir=tmp_path, metrics_cert_reload_period=0.1,
    ))  # fmt: skip
    verify = ssl.create_default_context(cadata=cert.decode())
    async with metrics_reader(kube, namespace=namespace, account="prometheus"), running(manager):
        url = f"https://localhost:{manager.probes.metrics_port}/metrics"
        status, _ = await _scrape(url, authorization=f"Bearer {reader}", tls=verify)
        assert status == 200

        # Rotation (cert-manager renewing the Secret): the new pair is served without a
        # restart, and the old CA no longer verifies it.
        rotated, rotated_key = self_signed_pem()
        (tmp_path / "next.key").write_bytes(rotated_key)
        (tmp_path / "next.crt").write_bytes(rotated)
        (tmp_path / "next.key").replace(tmp_path / KEY_FILE)
        (tmp_path / "next.crt").replace(tmp_path / CERT_FILE)
        verify_rotated = ssl.create_default_context(cadata=rotated.decode())

        async def serves_rotated() -> bool:
            try:
                return (await _scrape(url, authorization=f"Bearer {reader}",
                                      tls=verify_rotated))[0] == 200  # fmt: skip
            except aiohttp.ClientError:
                return False

        await until(serves_rotated, timeout=10, what="the rotated certificate served")
        with pytest.raises(aiohttp.ClientError):
            await _scrape(url, authorization=f"Bearer {reader}", tls=verify)


def _options(*args: str) -> RunOptions:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_run_arguments(parser)
    return RunOptions.from_args(parser.parse_args(list(args)), environ={})


def test_metrics_secure_flag_is_on_by_default_and_takes_gos_boolean_forms(tmp_path: Path) -> None:
    assert _options().metrics_secure is True
    assert _options("--metrics-secure").metrics_secure is True
    assert _options("--metrics-secure=false").metrics_secure is False
    assert _options("--metrics-secure=true").metrics_secure is True
    with pytest.raises(OptionError, match=r"--metrics-cert-path .*: no tls\.crt or tls\.key"):
        _options("--metrics-cert-path", str(tmp_path))
    (tmp_path / CERT_FILE).write_text("x")
    (tmp_path / KEY_FILE).write_text("x")
    assert _options("--metrics-cert-path", str(tmp_path)).metrics_cert_path == tmp_path
    with pytest.raises(OptionError, match="--metrics-cert-path needs --metrics-secure"):
        _options("--metrics-secure=false", "--metrics-cert-path", str(tmp_path))


def test_an_unloadable_certificate_is_one_line_naming_the_directory(tmp_path: Path) -> None:
    (tmp_path / CERT_FILE).write_text("not a certificate")
    (tmp_path / KEY_FILE).write_text("not a key: s3cr3t")
    with pytest.raises(CertificateError) as err:
        ServingCertificate(directory=tmp_path)
    assert str(err.value) == (
        f"--metrics-cert-path {tmp_path}: cannot load tls.crt/tls.key (SSLError)"
    )


# ---------------------------------------------------------------- `run`, for real


async def _answers(url: str, *, authorization: str | None = None) -> int | None:
    try:
        status, _ = await _scrape(url, authorization=authorization)
    except aiohttp.ClientError:
        return None
    return status


async def _up(url: str) -> bool:
    return await _answers(url) is not None


async def test_run_serves_metrics_securely_by_default_and_plainly_when_asked(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    reader = await _token(kube, namespace=namespace, name="prometheus")
    stranger = await _token(kube, namespace=namespace, name="stranger")
    async with metrics_reader(kube, namespace=namespace, account="prometheus"):
        for extra in ([], ["--metrics-secure=false"]):
            metrics = free_port()
            args = [
                "run", "--kubeconfig", str(control_plane.kubeconfig_path),
                "--namespace", namespace, "--controllers", "machinepool",
                "--metrics-bind-address", f"127.0.0.1:{metrics}",
                "--health-probe-bind-address", "0", *extra,
            ]  # fmt: skip
            log = tmp_path / f"run-{uuid.uuid4().hex[:6]}.log"
            async with spawned(*args, log=log) as proc:
                https, http = (
                    f"https://127.0.0.1:{metrics}/metrics",
                    f"http://127.0.0.1:{metrics}/metrics",
                )
                if not extra:
                    bearer = f"Bearer {reader}"
                    await until(functools.partial(_up, https), timeout=30, what="https /metrics")
                    assert await _answers(https, authorization=bearer) == 200
                    assert await _answers(https, authorization=f"Bearer {stranger}") == 403
                    assert await _answers(https) == 401
                    assert await _answers(http) is None
                else:
                    await until(functools.partial(_up, http), timeout=30, what="http /metrics")
                    assert await _answers(http) == 200  # no token needed, as asked
                    assert await _answers(https) is None
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 40) == 0, log.read_text()[-2000:]
