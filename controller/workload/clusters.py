"""Workload clusters: one API client and one Node informer per cluster with a kubeconfig.

A workload cluster is reached exactly as Cluster API reaches it: through the Secret
``<cluster>-kubeconfig`` in the Cluster's namespace (key ``value``, a kubeconfig), labelled
``cluster.x-k8s.io/cluster-name``. :class:`WorkloadClusters` follows those Secrets (fed by a
management-cluster Secret informer): a new or changed Secret (re)starts that cluster's client
and Node informer; a deleted Secret stops them.

Invariants: at most one client and one Node informer per cluster; a replaced client is
closed only after its informer task has ended; :meth:`aclose` stops everything. A Secret
whose kubeconfig cannot be parsed leaves the cluster without a client and records the reason
(:meth:`WorkloadClusters.error`), which the reconciler reports as a condition; it is retried
when the Secret changes.

An unreachable cluster keeps its informer retrying with backoff (see
:mod:`controller.runtime.informer`); ``cluster.nodes.synced`` says whether its cache is usable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import (
    NODES,
    SECRETS,
    WORKLOAD_HOST,
    KubeClient,
    Resource,
    RestMetrics,
)
from controller.runtime.store import Obj, by_provider_id

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
KUBECONFIG_SUFFIX = "-kubeconfig"
PROVIDER_ID_INDEX = "providerID"
OWNER_INDEX = "owner"
OWNER_KIND_ANNOTATION = "cluster.x-k8s.io/owner-kind"
OWNER_NAME_ANNOTATION = "cluster.x-k8s.io/owner-name"
OWNER_NAMESPACE_ANNOTATION = "cluster.x-k8s.io/cluster-namespace"


def by_owner_annotation(node: Obj) -> list[str]:
    """Index: ``<kind>/<namespace>/<name>`` of the owner a Node's annotations name."""
    annotations = node.get("metadata", {}).get("annotations") or {}
    kind = annotations.get(OWNER_KIND_ANNOTATION)
    name = annotations.get(OWNER_NAME_ANNOTATION)
    namespace = annotations.get(OWNER_NAMESPACE_ANNOTATION)
    return [f"{kind}/{namespace}/{name}"] if kind and name and namespace else []


_log = structlog.get_logger(__name__)


class ClusterKey(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def cluster_for_secret(secret: Obj) -> ClusterKey | None:
    """The cluster a kubeconfig Secret belongs to, or None when it is not one."""
    meta = secret.get("metadata", {})
    name = str(meta.get("name", ""))
    cluster = (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL)
    if not cluster or name != f"{cluster}{KUBECONFIG_SUFFIX}":
        return None
    return ClusterKey(str(meta.get("namespace", "")), str(cluster))


@dataclass
class WorkloadCluster:
    """A running connection to one workload cluster."""

    key: ClusterKey
    api: client.ApiClient
    kube: KubeClient
    nodes: Informer
    secret_version: str
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def node_for_provider_id(self, provider_id: str) -> Obj | None:
        found = self.nodes.store.by_index(name=PROVIDER_ID_INDEX, value=provider_id)
        return found[0] if found else None

    def nodes_owned_by(self, *, kind: str, namespace: str, name: str) -> list[Obj]:
        """Nodes whose owner annotations name this object (written when they were matched)."""
        return self.nodes.store.by_index(name=OWNER_INDEX, value=f"{kind}/{namespace}/{name}")


NodeHandler = Callable[[ClusterKey, InformerEvent], None]


class WorkloadClusters:
    """Starts and stops workload cluster connections as kubeconfig Secrets come and go."""

    def __init__(
        self,
        *,
        on_node_event: NodeHandler,
        rest_metrics: RestMetrics | None = None,
        request_timeout: float = 10.0,
        inactivity_timeout: float = 70.0,
        backoff_initial: float = 0.8,
    ) -> None:
        self._node_handlers: list[NodeHandler] = [on_node_event]
        self._rest_metrics = rest_metrics
        self._request_timeout = request_timeout
        self._inactivity_timeout = inactivity_timeout
        self._backoff_initial = backoff_initial
        self._clusters: dict[ClusterKey, WorkloadCluster] = {}
        self._errors: dict[ClusterKey, str] = {}
        self._pending: asyncio.Queue[tuple[ClusterKey, Obj | None]] = asyncio.Queue()

    def add_node_handler(self, handler: NodeHandler) -> None:
        """Also call ``handler`` for every Node event of every workload cluster."""
        self._node_handlers.append(handler)

    def _dispatch_node_event(self, key: ClusterKey, event: InformerEvent) -> None:
        for handler in self._node_handlers:
            handler(key, event)

    # ------------------------------------------------------------- queries

    def get(self, key: ClusterKey) -> WorkloadCluster | None:
        return self._clusters.get(key)

    def error(self, key: ClusterKey) -> str | None:
        """Why the cluster has no client (a bad kubeconfig), if that is the case."""
        return self._errors.get(key)

    def keys(self) -> list[ClusterKey]:
        return list(self._clusters)

    # ------------------------------------------------------------- wiring

    @staticmethod
    def secret_label_selector() -> str:
        """The label selector for the management-cluster Secret informer."""
        return CLUSTER_NAME_LABEL

    @staticmethod
    def secrets_resource() -> Resource:
        return SECRETS

    def handle_secret_event(self, event: InformerEvent) -> None:
        """Informer handler for kubeconfig Secrets; the work happens in :meth:`run`."""
        key = cluster_for_secret(event.obj)
        if key is None:
            return
        self._pending.put_nowait((key, None if event.type == "DELETED" else event.obj))

    async def run(self) -> None:
        """Apply Secret changes one at a time until cancelled; then close every cluster."""
        try:
            while True:
                key, secret = await self._pending.get()
                if secret is None:
                    await self._stop(key)
                    self._errors.pop(key, None)
                else:
                    await self._start(key, secret)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        for key in list(self._clusters):
            await self._stop(key)

    # ------------------------------------------------------------- lifecycle

    async def _start(self, key: ClusterKey, secret: Obj) -> None:
        version = str(secret.get("metadata", {}).get("resourceVersion", ""))
        current = self._clusters.get(key)
        if current is not None and current.secret_version == version:
            return
        try:
            cfg = await self._configuration(secret)
        except Exception as exc:  # a bad kubeconfig is data, not a bug
            reason = f"cannot load kubeconfig from Secret {key.name}{KUBECONFIG_SUFFIX}: {exc}"
            self._errors[key] = reason
            _log.warning("workload cluster kubeconfig invalid", cluster=str(key), error=str(exc))
            await self._stop(key)
            return
        await self._stop(key)
        self._errors.pop(key, None)
        api = client.ApiClient(configuration=cfg)
        kube = KubeClient(
            api=api,
            metrics=self._rest_metrics,
            metrics_host=WORKLOAD_HOST,  # the address is the tenant's: not a label value
            request_timeout=self._request_timeout,
        )
        nodes = Informer(
            kube=kube,
            resource=NODES,
            inactivity_timeout=self._inactivity_timeout,
            backoff_initial=self._backoff_initial,
        )
        nodes.store.add_index(name=PROVIDER_ID_INDEX, func=by_provider_id)
        nodes.store.add_index(name=OWNER_INDEX, func=by_owner_annotation)
        nodes.add_handler(lambda event: self._dispatch_node_event(key, event))
        cluster = WorkloadCluster(key=key, api=api, kube=kube, nodes=nodes, secret_version=version)
        cluster.task = asyncio.create_task(nodes.run(), name=f"nodes {key}")
        self._clusters[key] = cluster
        _log.info("workload cluster connected", cluster=str(key), server=cfg.host)

    async def _stop(self, key: ClusterKey) -> None:
        cluster = self._clusters.pop(key, None)
        if cluster is None:
            return
        if cluster.task is not None:
            cluster.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cluster.task
        await cluster.api.close()
        _log.info("workload cluster disconnected", cluster=str(key))

    async def _configuration(self, secret: Obj) -> client.Configuration:
        raw = (secret.get("data") or {}).get("value")
        if not raw:
            raise ValueError("the Secret has no 'value' key")
        config = yaml.safe_load(base64.b64decode(raw))
        if not isinstance(config, dict):
            raise ValueError("'value' is not a kubeconfig")
        cfg = client.Configuration()
        # kubernetes_asyncio writes embedded certificates to temp files it caches by content
        # for the life of the process (and removes at exit); a private directory removed
        # earlier would leave that cache pointing at deleted files.
        loader = KubeConfigLoader(config_dict=config)
        await loader.load_and_set(cfg)
        return cfg
