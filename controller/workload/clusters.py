"""Workload clusters: one API client and one Node informer per cluster with a kubeconfig.

A workload cluster is reached as Cluster API reaches it: through the Secret
``<cluster>-kubeconfig`` of an existing Cluster in the same namespace (type
``cluster.x-k8s.io/secret``, key ``value``, a kubeconfig), labelled
``cluster.x-k8s.io/cluster-name``. :class:`WorkloadClusters` follows those Secrets and the
Clusters (fed by management-cluster informers): a new or changed Secret of an existing Cluster
(re)starts that cluster's client and Node informer; a deleted Secret or Cluster stops them.

The kubeconfig is untrusted tenant input, loaded by :mod:`controller.runtime.kubeconfig`
(server, inline CA/client certificate/key and token only; exec plugins, auth providers,
token files, paths and proxies are refused). Nothing from the Secret reaches a log line or an
error message.

Invariants: at most one client and one Node informer per cluster (one worker task per
cluster applies its changes in order, the latest state winning); a replaced client is closed
only after its informer task has ended; :meth:`aclose` stops every worker and cluster.
Clusters start concurrently, each within ``start_timeout``, so one slow start never delays
another. A Secret that cannot be used (no Cluster, wrong type, refused or unreadable
kubeconfig, a start that timed out) leaves the cluster without a client and records a
:class:`WorkloadError` (a fixed condition reason and a message naming the cause, never a
value from the Secret; :meth:`WorkloadClusters.error`), which the reconcilers report as a
condition; it is retried when the Secret or the Cluster changes.

An unreachable cluster keeps its informer retrying with backoff (see
:mod:`controller.runtime.informer`); ``cluster.nodes.synced`` says whether its cache is usable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog
from kubernetes_asyncio import client

from controller.api.labels import CLUSTER_NAME_LABEL
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import (
    NODES,
    SECRETS,
    WORKLOAD_HOST,
    KubeClient,
    Resource,
    RestMetrics,
    WriteHook,
)
from controller.runtime.kubeconfig import (
    KUBECONFIG_SECRET_TYPE,
    KubeconfigError,
    KubeconfigSecretError,
    credentials_from_secret,
    workload_api_client,
)
from controller.runtime.store import Obj, by_provider_id

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


@dataclass(frozen=True)
class WorkloadError:
    """Why a cluster has no client: a fixed condition reason and a message (no Secret data)."""

    reason: str
    message: str


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
    """Starts and stops workload cluster connections as kubeconfig Secrets and Clusters come
    and go."""

    def __init__(
        self,
        *,
        on_node_event: NodeHandler | None = None,
        rest_metrics: RestMetrics | None = None,
        request_timeout: float = 10.0,
        inactivity_timeout: float = 70.0,
        backoff_initial: float = 0.8,
        start_timeout: float = 10.0,
        allow_insecure: bool = False,
        on_write: WriteHook | None = None,
    ) -> None:
        """``on_write``: the write hook of each workload cluster's client (give the
        management client's, so writes to workload clusters count as it does)."""
        self._node_handlers: list[NodeHandler] = [on_node_event] if on_node_event else []
        self._on_write = on_write
        self._rest_metrics = rest_metrics
        self._request_timeout = request_timeout
        self._inactivity_timeout = inactivity_timeout
        self._backoff_initial = backoff_initial
        self._start_timeout = start_timeout
        self._allow_insecure = allow_insecure
        self._clusters: dict[ClusterKey, WorkloadCluster] = {}
        self._errors: dict[ClusterKey, WorkloadError] = {}
        #: The latest kubeconfig Secret seen per cluster, and the Clusters that exist.
        self._secrets: dict[ClusterKey, Obj] = {}
        self._cluster_objects: set[ClusterKey] = set()
        self._pending: asyncio.Queue[ClusterKey] = asyncio.Queue()
        self._workers: dict[ClusterKey, asyncio.Task[None]] = {}
        self._again: set[ClusterKey] = set()

    def add_node_handler(self, handler: NodeHandler) -> None:
        """Also call ``handler`` for every Node event of every workload cluster."""
        self._node_handlers.append(handler)

    def _dispatch_node_event(self, key: ClusterKey, event: InformerEvent) -> None:
        for handler in self._node_handlers:
            handler(key, event)

    # ------------------------------------------------------------- queries

    def get(self, key: ClusterKey) -> WorkloadCluster | None:
        return self._clusters.get(key)

    def error(self, key: ClusterKey) -> WorkloadError | None:
        """Why the cluster has no client (an unusable kubeconfig Secret), if that is the case."""
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
        if event.type == "DELETED":
            self._secrets.pop(key, None)
        else:
            self._secrets[key] = event.obj
        self._pending.put_nowait(key)

    def handle_cluster_event(self, event: InformerEvent) -> None:
        """Informer handler for Clusters: only an existing Cluster's Secret is used."""
        meta = event.obj.get("metadata", {})
        key = ClusterKey(str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event.type == "DELETED":
            self._cluster_objects.discard(key)
        elif key in self._cluster_objects:
            return  # a Cluster's changes do not matter here, only that it exists
        else:
            self._cluster_objects.add(key)
        self._pending.put_nowait(key)

    async def run(self) -> None:
        """Apply changes until cancelled, one worker per cluster; then close everything."""
        try:
            while True:
                key = await self._pending.get()
                if key in self._workers:
                    self._again.add(key)  # the worker looks again when it is done
                else:
                    self._workers[key] = asyncio.create_task(
                        self._work(key), name=f"workload cluster {key}"
                    )
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for key in list(self._clusters):
            await self._stop(key)

    # ------------------------------------------------------------- lifecycle

    async def _work(self, key: ClusterKey) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self._sync(key)
                except Exception as exc:  # a bug; keep the other clusters going
                    _log.error(
                        "workload cluster start failed",
                        cluster=str(key),
                        error_type=type(exc).__name__,
                    )
                    self._fail(
                        key,
                        WorkloadError(
                            reason="WorkloadClusterNotConnected",
                            message=f"internal error starting the connection to cluster {key}; "
                            "see the controller log",
                        ),
                    )
                if key not in self._again:
                    return
        finally:
            self._workers.pop(key, None)
            self._again.discard(key)

    async def _sync(self, key: ClusterKey) -> None:
        secret = self._secrets.get(key)
        if secret is None:
            await self._stop(key)
            self._errors.pop(key, None)
            return
        secret_name = f"{key.name}{KUBECONFIG_SUFFIX}"
        if key not in self._cluster_objects:
            await self._stop(key)
            self._fail(
                key,
                WorkloadError(
                    reason="KubeconfigWithoutCluster",
                    message=f"Secret {secret_name} is not used: no Cluster {key.name} "
                    f"in namespace {key.namespace}",
                ),
            )
            return
        version = str(secret.get("metadata", {}).get("resourceVersion", ""))
        current = self._clusters.get(key)
        if current is not None and current.secret_version == version:
            return
        prefix = f"cannot load kubeconfig from Secret {secret_name}"
        error: WorkloadError | None = None
        api: client.ApiClient | None = None
        try:
            async with asyncio.timeout(self._start_timeout):
                credentials = await asyncio.to_thread(
                    credentials_from_secret, secret, allow_insecure=self._allow_insecure
                )
                api = await workload_api_client(credentials)
        except KubeconfigSecretError as exc:
            error = WorkloadError(reason="InvalidKubeconfigSecret", message=f"{prefix}: {exc}")
        except KubeconfigError as exc:
            error = WorkloadError(
                reason="UnsupportedKubeconfig" if exc.unsupported else "InvalidKubeconfig",
                message=f"{prefix}: {exc}",
            )
        except TimeoutError:
            error = WorkloadError(
                reason="WorkloadClusterNotConnected",
                message=f"{prefix}: timed out after {self._start_timeout:g}s",
            )
        if error is not None or api is None:
            await self._stop(key)
            self._fail(key, error or WorkloadError(reason="InvalidKubeconfig", message=prefix))
            return
        try:
            await self._stop(key)
        except BaseException:
            await api.close()
            raise
        self._errors.pop(key, None)
        kube = KubeClient(
            api=api,
            metrics=self._rest_metrics,
            metrics_host=WORKLOAD_HOST,  # the address is the tenant's: not a label value
            request_timeout=self._request_timeout,
            on_write=self._on_write,
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
        _log.info("workload cluster connected", cluster=str(key))

    def _fail(self, key: ClusterKey, error: WorkloadError) -> None:
        if self._errors.get(key) != error:  # log a change once, not every retry
            _log.warning(
                "workload cluster kubeconfig not usable",
                cluster=str(key),
                reason=error.reason,
                error=error.message,
            )
        self._errors[key] = error

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


__all__ = [
    "KUBECONFIG_SECRET_TYPE",
    "ClusterKey",
    "WorkloadCluster",
    "WorkloadClusters",
    "WorkloadError",
    "cluster_for_secret",
]
