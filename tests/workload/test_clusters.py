"""Workload cluster connections follow their kubeconfig Secrets: start, stop, restart, and a
clear reason for a kubeconfig that cannot be used."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NODES, SECRETS, WORKLOAD_HOST, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.proxy import TcpProxy
from controller.testing.waiting import until
from controller.workload.clusters import ClusterKey, WorkloadClusters


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


def _secret(*, cluster: str, kubeconfig: bytes) -> dict[str, object]:
    return {
        "metadata": {
            "name": f"{cluster}-kubeconfig",
            "labels": {"cluster.x-k8s.io/cluster-name": cluster},
        },
        "type": "cluster.x-k8s.io/secret",
        "data": {"value": base64.b64encode(kubeconfig).decode()},
    }


async def _until(predicate: Callable[[], bool]) -> None:
    await until(predicate, timeout=20)


@contextlib.asynccontextmanager
async def following_secrets(
    kube: KubeClient, namespace: str, events: list[tuple[ClusterKey, InformerEvent]]
) -> AsyncIterator[WorkloadClusters]:
    clusters = WorkloadClusters(
        on_node_event=lambda key, ev: events.append((key, ev)),
        rest_metrics=RestMetrics(registry=CollectorRegistry()),
    )
    secrets = Informer(
        kube=kube,
        resource=SECRETS,
        namespace=namespace,
        label_selector=WorkloadClusters.secret_label_selector(),
    )
    secrets.add_handler(clusters.handle_secret_event)
    tasks = [asyncio.create_task(secrets.run()), asyncio.create_task(clusters.run())]
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
        await kube.create(
            SECRETS, namespace=namespace, body=_secret(cluster="wl", kubeconfig=kubeconfig)
        )
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
        assert cluster.task is not None
        assert cluster.task.done()

        await kube.create(
            SECRETS, namespace=namespace, body=_secret(cluster="wl", kubeconfig=kubeconfig)
        )
        await _until(lambda: clusters.get(key) is not None)
    await kube.delete(NODES, name=node_name)


async def test_a_bad_kubeconfig_is_reported_not_raised(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    key = ClusterKey(namespace, "broken")
    async with following_secrets(kube, namespace, []) as clusters:
        await kube.create(
            SECRETS, namespace=namespace, body=_secret(cluster="broken", kubeconfig=b"- not a map")
        )
        await _until(lambda: clusters.error(key) is not None)
        assert clusters.get(key) is None
        assert "cannot load kubeconfig from Secret broken-kubeconfig" in (clusters.error(key) or "")


async def test_many_workload_servers_do_not_grow_the_host_label(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    """Each workload cluster's address is a tenant's choice (its kubeconfig Secret): six
    clusters behind six distinct addresses still count under one ``host`` label value."""
    kube = _kube(api_client)
    registry = CollectorRegistry()
    clusters = WorkloadClusters(on_node_event=lambda key, ev: None,
                                rest_metrics=RestMetrics(registry=registry))  # fmt: skip
    secrets = Informer(kube=kube, resource=SECRETS, namespace=namespace,
                       label_selector=WorkloadClusters.secret_label_selector())  # fmt: skip
    secrets.add_handler(clusters.handle_secret_event)
    names = [f"wl{i}" for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(TcpProxy(upstream_port=control_plane.apiserver_port))
            for _ in names
        ]
        tasks = [asyncio.create_task(secrets.run()), asyncio.create_task(clusters.run())]

        async def stop() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(stop)
        for name, proxy in zip(names, proxies, strict=True):
            config = control_plane.kubeconfig()
            config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
            body = _secret(cluster=name, kubeconfig=yaml.safe_dump(config).encode())
            await kube.create(SECRETS, namespace=namespace, body=body)
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
