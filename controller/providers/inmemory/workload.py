"""A :class:`~controller.providers.inmemory.nodes.NodeRegistrar` that writes real Nodes.

A group's ``cluster`` (``namespace/name``) is resolved as Cluster API resolves workload
clusters: the management-cluster Secret ``<name>-kubeconfig`` in ``<namespace>`` holds a
kubeconfig under the key ``value``. :class:`KubeNodeRegistrar` loads it into a
kubernetes_asyncio configuration and keeps one ``ApiClient`` per cluster.

Invariants: at most one client per cluster (a per-cluster lock serialises its creation); a
call that fails for any reason other than the Node being absent/present as expected drops
the cluster's client, so the next attempt re-reads the Secret (rotated credentials, a
recreated cluster); every client is closed by :meth:`KubeNodeRegistrar.aclose`.

Certificate data is written to files by kubernetes_asyncio's loader, which caches those
files process-wide by content and removes them at exit; so no private directory is used
here (removing one on close would break every later loader given the same certificates).

Failure: :class:`WorkloadClusterUnavailable` when the Secret is missing or unusable; API and
transport errors propagate. The simulator logs both and retries with backoff.
"""

from __future__ import annotations

import asyncio
import base64
from types import TracebackType
from typing import Self

import structlog
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from controller.providers.inmemory.nodes import (
    NodeRegistration,
    ReadyStatus,
    node_object,
    node_status,
)
from controller.runtime.kube import NODES, SECRETS, ApiError, KubeClient, RestMetrics

__all__ = ["KubeNodeRegistrar", "WorkloadClusterUnavailable"]

_log = structlog.get_logger(__name__)


class WorkloadClusterUnavailable(RuntimeError):
    """The workload cluster's kubeconfig Secret is missing or unusable."""


class KubeNodeRegistrar:
    """Writes Nodes into workload clusters found through kubeconfig Secrets."""

    def __init__(
        self,
        *,
        management: KubeClient,
        request_timeout: float = 10.0,
        rest_metrics: RestMetrics | None = None,
    ) -> None:
        self._management = management
        self._request_timeout = request_timeout
        self._rest_metrics = rest_metrics
        self._clients: dict[str, tuple[client.ApiClient, KubeClient]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for cluster in list(self._clients):
            await self._drop(cluster)

    # ------------------------------------------------------------- registrar calls

    async def register(self, *, cluster: str, node: NodeRegistration) -> None:
        kube = await self._kube(cluster)
        try:
            try:
                await kube.create(NODES, body=node_object(node))
            except ApiError as exc:
                if not exc.conflict:
                    raise
            await kube.merge_patch(
                NODES,
                name=node.name,
                patch={"status": node_status(ready="False", node=node)},
                subresource="status",
            )
        except BaseException:
            await self._drop(cluster)
            raise

    async def set_ready(self, *, cluster: str, name: str) -> None:
        await self._patch_ready(cluster=cluster, name=name, ready="True")

    async def mark_unknown(self, *, cluster: str, name: str) -> None:
        await self._patch_ready(cluster=cluster, name=name, ready="Unknown")

    # ------------------------------------------------------------- internals

    async def _patch_ready(self, *, cluster: str, name: str, ready: ReadyStatus) -> None:
        kube = await self._kube(cluster)
        try:
            await kube.merge_patch(
                NODES,
                name=name,
                patch={"status": node_status(ready=ready)},
                subresource="status",
            )
        except ApiError as exc:
            if exc.not_found:
                _log.info("node already deleted", cluster=cluster, node=name)
                return
            await self._drop(cluster)
            raise
        except BaseException:
            await self._drop(cluster)
            raise

    async def _kube(self, cluster: str) -> KubeClient:
        found = self._clients.get(cluster)
        if found is not None:
            return found[1]
        lock = self._locks.setdefault(cluster, asyncio.Lock())
        async with lock:
            found = self._clients.get(cluster)
            if found is not None:
                return found[1]
            cfg = await self._configuration(cluster)
            api = client.ApiClient(configuration=cfg)
            kube = KubeClient(
                api=api,
                request_timeout=self._request_timeout,
                metrics=self._rest_metrics,
                field_manager="inmemory-kubelet",
            )
            self._clients[cluster] = (api, kube)
            _log.info("workload cluster client created", cluster=cluster, server=cfg.host)
            return kube

    async def _drop(self, cluster: str) -> None:
        found = self._clients.pop(cluster, None)
        if found is not None:
            await found[0].close()

    async def _configuration(self, cluster: str) -> client.Configuration:
        namespace, sep, name = cluster.partition("/")
        if not sep or not namespace or not name:
            raise WorkloadClusterUnavailable(f"cluster {cluster!r} is not namespace/name")
        secret_name = f"{name}-kubeconfig"
        try:
            secret = await self._management.get(SECRETS, namespace=namespace, name=secret_name)
        except ApiError as exc:
            if exc.not_found:
                raise WorkloadClusterUnavailable(
                    f"Secret {namespace}/{secret_name} not found"
                ) from exc
            raise
        raw = (secret.get("data") or {}).get("value")
        if not raw:
            raise WorkloadClusterUnavailable(f"Secret {namespace}/{secret_name} has no 'value'")
        try:
            document = yaml.safe_load(base64.b64decode(raw))
            if not isinstance(document, dict):
                raise ValueError("not a kubeconfig document")
            cfg = client.Configuration()
            loader = KubeConfigLoader(config_dict=document)
            await loader.load_and_set(cfg)
        except Exception as exc:
            raise WorkloadClusterUnavailable(
                f"Secret {namespace}/{secret_name}: cannot load kubeconfig: {exc}"
            ) from exc
        return cfg
