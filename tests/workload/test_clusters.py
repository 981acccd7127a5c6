"""Workload cluster connections follow their kubeconfig Secrets and Clusters: start, stop,
restart, and a clear reason for a kubeconfig that cannot be used. A kubeconfig is untrusted
tenant input: its exec plugin never runs, its tokenFile is never read, its certificates never
land in the temp dir, and only an existing Cluster's Secret of Cluster API's type is used."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NODES, SECRETS, WORKLOAD_HOST, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.certs import Pki
from controller.testing.proxy import TcpProxy
from controller.testing.waiting import until
from controller.workload.clusters import ClusterKey, WorkloadClusters


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


def _secret(
    *, cluster: str, kubeconfig: bytes, type_: str = "cluster.x-k8s.io/secret"
) -> dict[str, object]:
    return {
        "metadata": {
            "name": f"{cluster}-kubeconfig",
            "labels": {"cluster.x-k8s.io/cluster-name": cluster},
        },
        "type": type_,
        "data": {"value": base64.b64encode(kubeconfig).decode()},
    }


async def _cluster(kube: KubeClient, namespace: str, name: str) -> None:
    await kube.create(CLUSTER, namespace=namespace, body={"metadata": {"name": name}, "spec": {}})


async def _workload(
    kube: KubeClient, namespace: str, name: str, kubeconfig: dict[str, Any] | bytes
) -> None:
    """A Cluster and its kubeconfig Secret, as Cluster API writes them."""
    raw = kubeconfig if isinstance(kubeconfig, bytes) else yaml.safe_dump(kubeconfig).encode()
    await _cluster(kube, namespace, name)
    await kube.create(SECRETS, namespace=namespace, body=_secret(cluster=name, kubeconfig=raw))


async def _until(predicate: Callable[[], bool]) -> None:
    await until(predicate, timeout=20)


@contextlib.asynccontextmanager
async def following_secrets(
    kube: KubeClient,
    namespace: str,
    events: list[tuple[ClusterKey, InformerEvent]],
    *,
    allow_insecure: bool = False,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[WorkloadClusters]:
    clusters = WorkloadClusters(
        on_node_event=lambda key, ev: events.append((key, ev)),
        rest_metrics=RestMetrics(registry=registry or CollectorRegistry()),
        allow_insecure=allow_insecure,
    )
    secrets = Informer(
        kube=kube,
        resource=SECRETS,
        namespace=namespace,
        label_selector=WorkloadClusters.secret_label_selector(),
    )
    secrets.add_handler(clusters.handle_secret_event)
    cluster_objects = Informer(kube=kube, resource=CLUSTER, namespace=namespace)
    cluster_objects.add_handler(clusters.handle_cluster_event)
    tasks = [
        asyncio.create_task(secrets.run()),
        asyncio.create_task(cluster_objects.run()),
        asyncio.create_task(clusters.run()),
    ]
    try:
        yield clusters
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_node_informer_follows_the_kubeconfig_secret(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    events: list[tuple[ClusterKey, InformerEvent]] = []
    key = ClusterKey(namespace, "wl")
    kubeconfig = yaml.safe_dump(control_plane.kubeconfig()).encode()
    node_name = f"node-{uuid.uuid4().hex[:8]}"
    provider_id = f"inmemory:///zone-a/{node_name}"
    async with following_secrets(kube, namespace, events) as clusters:
        await _workload(kube, namespace, "wl", kubeconfig)
        await _until(lambda: (c := clusters.get(key)) is not None and c.nodes.synced)
        await kube.create(
            NODES, body={"metadata": {"name": node_name}, "spec": {"providerID": provider_id}}
        )
        await _until(lambda: any(ev.obj["metadata"]["name"] == node_name for _, ev in events))
        assert {k for k, ev in events if ev.obj["metadata"]["name"] == node_name} == {key}
        cluster = clusters.get(key)
        assert cluster is not None
        found = cluster.node_for_provider_id(provider_id)
        assert found is not None
        assert found["metadata"]["name"] == node_name

        await kube.delete(SECRETS, namespace=namespace, name="wl-kubeconfig")
        await _until(lambda: clusters.get(key) is None)
        # The connection is dropped from the map first, then its informer task is cancelled
        # and awaited: the task ends (it does not linger), which may be a moment later.
        task = cluster.task
        assert task is not None
        await _until(task.done)

        await kube.create(
            SECRETS, namespace=namespace, body=_secret(cluster="wl", kubeconfig=kubeconfig)
        )
        await _until(lambda: clusters.get(key) is not None)
        replaced = clusters.get(key)
        assert replaced is not None

        # The Cluster goes: its connection stops, and the Secret left behind is not used.
        await kube.delete(CLUSTER, namespace=namespace, name="wl")
        await _until(lambda: clusters.get(key) is None)
        replaced_task = replaced.task
        assert replaced_task is not None
        await _until(replaced_task.done)
        assert (error := clusters.error(key)) is not None
        assert error.reason == "KubeconfigWithoutCluster"
    await kube.delete(NODES, name=node_name)


async def test_a_bad_kubeconfig_is_reported_not_raised(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    key = ClusterKey(namespace, "broken")
    async with following_secrets(kube, namespace, []) as clusters:
        await _workload(kube, namespace, "broken", b"- not a map")
        await _until(lambda: clusters.error(key) is not None)
        assert clusters.get(key) is None
        error = clusters.error(key)
        assert error is not None
        assert error.reason == "InvalidKubeconfig"
        assert "cannot load kubeconfig from Secret broken-kubeconfig" in error.message


async def test_an_exec_plugin_never_runs_and_never_delays_other_clusters(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The plugin would create a marker file (and then hang, which under a loader that runs
    it would also hold up every cluster after it)."""
    kube = _kube(api_client)
    marker = tmp_path / "exec-ran"
    config = control_plane.kubeconfig()
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; exec sleep 60"],
            "interactiveMode": "Never",
        }
    }
    bad, good = ClusterKey(namespace, "evil"), ClusterKey(namespace, "good")
    async with following_secrets(kube, namespace, []) as clusters:
        await _workload(kube, namespace, "evil", config)
        await _workload(kube, namespace, "good", control_plane.kubeconfig())
        await _until(lambda: (c := clusters.get(good)) is not None and c.nodes.synced)
        await _until(lambda: clusters.error(bad) is not None)
        assert not marker.exists()
        assert clusters.get(bad) is None
        error = clusters.error(bad)
        assert error is not None
        assert error.reason == "UnsupportedKubeconfig"
        assert "users[].user.exec" in error.message
    assert not marker.exists()


@contextlib.asynccontextmanager
async def _https_listener(tmp_path: Path, seen: list[str]) -> AsyncIterator[tuple[str, Pki]]:
    """A local HTTPS server (its own CA) that records every request's Authorization header."""
    pki = Pki.generate()
    (tmp_path / "tls.crt").write_bytes(pki.serving_cert)
    (tmp_path / "tls.key").write_bytes(pki.serving_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"kind": "Status", "code": 403}, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"https://127.0.0.1:{port}", pki
    finally:
        await runner.cleanup()


async def test_a_token_file_is_never_read_nor_sent(
    api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """``tokenFile`` names a file on the controller's disk (here standing for its
    ServiceAccount token); the tenant's server must never receive it."""
    kube = _kube(api_client)
    token_file = tmp_path / "sa-token"
    token_file.write_text("controller-service-account-token")
    seen: list[str] = []
    key = ClusterKey(namespace, "thief")
    async with (
        _https_listener(tmp_path, seen) as (server, pki),
        following_secrets(kube, namespace, []) as clusters,
    ):
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(pki.ca_cert).decode(),
            }}],
            "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }  # fmt: skip
        await _workload(kube, namespace, "thief", config)
        await _until(lambda: clusters.error(key) is not None or bool(seen))
        assert not any("controller-service-account-token" in header for header in seen)
        assert seen == []
        assert clusters.get(key) is None
        error = clusters.error(key)
        assert error is not None
        assert error.reason == "UnsupportedKubeconfig"
        assert "users[].user.tokenFile" in error.message


async def test_only_an_existing_clusters_secret_of_the_cluster_api_type_is_used(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    kubeconfig = yaml.safe_dump(control_plane.kubeconfig()).encode()
    orphan, typeless = ClusterKey(namespace, "orphan"), ClusterKey(namespace, "opaque")
    async with following_secrets(kube, namespace, []) as clusters:
        await kube.create(
            SECRETS, namespace=namespace, body=_secret(cluster="orphan", kubeconfig=kubeconfig)
        )
        await _cluster(kube, namespace, "opaque")
        await kube.create(
            SECRETS,
            namespace=namespace,
            body=_secret(cluster="opaque", kubeconfig=kubeconfig, type_="Opaque"),
        )
        await _until(lambda: clusters.error(orphan) is not None)
        await _until(lambda: clusters.error(typeless) is not None)
        assert clusters.get(orphan) is None
        assert clusters.get(typeless) is None
        assert (e := clusters.error(orphan)) is not None
        assert e.reason == "KubeconfigWithoutCluster"
        assert (e := clusters.error(typeless)) is not None
        assert e.reason == "InvalidKubeconfigSecret"
        assert "cluster.x-k8s.io/secret" in e.message

        # The Cluster appears later (as after clusterctl move): the Secret is then used.
        await _cluster(kube, namespace, "orphan")
        await _until(lambda: clusters.get(orphan) is not None)
        assert clusters.error(orphan) is None


@pytest.mark.parametrize("allowed", [False, True])
async def test_insecure_skip_tls_verify_needs_the_flag(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, allowed: bool
) -> None:
    kube = _kube(api_client)
    config = control_plane.kubeconfig()
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    key = ClusterKey(namespace, "lax")
    async with following_secrets(kube, namespace, [], allow_insecure=allowed) as clusters:
        await _workload(kube, namespace, "lax", config)
        if allowed:
            await _until(lambda: (c := clusters.get(key)) is not None and c.nodes.synced)
            return
        await _until(lambda: clusters.error(key) is not None or clusters.get(key) is not None)
        assert clusters.get(key) is None
        assert (error := clusters.error(key)) is not None
        assert error.reason == "UnsupportedKubeconfig"
        assert "insecure-skip-tls-verify" in error.message


async def test_no_credential_file_is_left_in_the_temp_dir(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many clusters, each with its own certificate bytes (a comment line makes them unique,
    as rotated credentials would be): the temp dir stays empty."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    kube = _kube(api_client)
    names = [f"w{i}" for i in range(8)]
    async with following_secrets(kube, namespace, []) as clusters:
        for name in names:
            config = control_plane.kubeconfig()
            for section, field in (("clusters", "certificate-authority-data"),
                                   ("users", "client-certificate-data"),
                                   ("users", "client-key-data")):  # fmt: skip
                entry = config[section][0][section[:-1]]
                pem = base64.b64decode(entry[field]) + f"# {namespace} {name}\n".encode()
                entry[field] = base64.b64encode(pem).decode()
            await _workload(kube, namespace, name, config)
        await _until(
            lambda: all(
                (c := clusters.get(ClusterKey(namespace, n))) is not None and c.nodes.synced
                for n in names
            )
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_many_workload_servers_do_not_grow_the_host_label(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    """Each workload cluster's address is a tenant's choice (its kubeconfig Secret): six
    clusters behind six distinct addresses still count under one ``host`` label value."""
    kube = _kube(api_client)
    registry = CollectorRegistry()
    names = [f"wl{i}" for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(TcpProxy(upstream_port=control_plane.apiserver_port))
            for _ in names
        ]
        clusters = await stack.enter_async_context(
            following_secrets(kube, namespace, [], registry=registry)
        )
        for name, proxy in zip(names, proxies, strict=True):
            config = control_plane.kubeconfig()
            config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
            await _workload(kube, namespace, name, config)
        keys = [ClusterKey(namespace, name) for name in names]
        await _until(lambda: all((c := clusters.get(k)) is not None and c.nodes.synced
                                 for k in keys))  # fmt: skip
        assert all(proxy.connections_accepted > 0 for proxy in proxies)
    hosts = {
        sample.labels["host"]
        for metric in registry.collect()
        if metric.name == "rest_client_requests"
        for sample in metric.samples
    }
    assert hosts == {WORKLOAD_HOST}
