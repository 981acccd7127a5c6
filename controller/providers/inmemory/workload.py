"""A :class:`~controller.providers.inmemory.nodes.NodeRegistrar` that writes real Nodes.

A group's ``cluster`` (``namespace/name``) is resolved as Cluster API resolves workload
clusters: the management-cluster Secret ``<name>-kubeconfig`` in ``<namespace>`` holds a
kubeconfig under the key ``value``. :class:`KubeNodeRegistrar` loads it into a
kubernetes_asyncio configuration and keeps one ``ApiClient`` per cluster.

It is also those Nodes' kubelet for pods: a real kubelet finishes the deletion of the pods
bound to its Node (once their containers stopped it deletes them with grace period 0), and
the local control plane has no kubelet. So while a cluster has live kubelets (Nodes
registered or set Ready, not yet marked Unknown), one pod informer per cluster (all
namespaces: the informer takes no field selector) watches for pods with a
``deletionTimestamp`` bound to one of them and deletes them with ``gracePeriodSeconds=0``
and a UID precondition. A stopped or failed instance's kubelet does nothing: ``mark_unknown``
takes its Node out of the live set first. Pods that become deleting while their Node is not
live are picked up when it becomes live. A failed pod deletion is retried with backoff while
the pod is still there and its Node live.

For the simulated cloud node lifecycle controller (:mod:`.nodelifecycle`) it lists a
cluster's Nodes and deletes one with a UID precondition (404 and 409 are "already gone").

Invariants: at most one client per cluster (a per-cluster lock serialises its creation); a
call that fails for any reason other than the Node being absent/present as expected drops
the cluster's client (and its pod informer, restarted with the next client), so the next
attempt re-reads the Secret (rotated credentials, a recreated cluster); every client and
task is closed by :meth:`KubeNodeRegistrar.aclose`. Limitation: the live set is in memory;
a simulator restarted with running instances learns their Nodes again only when it next
calls ``register``/``set_ready`` for them.

The kubeconfig is untrusted tenant input and follows the controller's rules
(:mod:`controller.runtime.kubeconfig`): the Secret is used only for an existing Cluster of
that name in the same namespace and only with type ``cluster.x-k8s.io/secret``; only the
server, inline CA/client certificate/key and token are used (exec plugins, auth providers,
token files, paths, proxies refused); credentials are loaded in memory (no temp files).

Failure: :class:`WorkloadClusterUnavailable` when the Cluster or Secret is missing or
unusable, with a fixed-text message that never holds Secret data; API and transport errors
propagate. The simulator logs both and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self

import structlog
from kubernetes_asyncio import client

from controller.api.kinds import CLUSTER
from controller.providers.inmemory.nodes import (
    NodeRegistration,
    ReadyStatus,
    node_object,
    node_status,
)
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import (
    NODES,
    PODS,
    SECRETS,
    WORKLOAD_HOST,
    ApiError,
    KubeClient,
    RestMetrics,
    resource_path,
)
from controller.runtime.kubeconfig import (
    KubeconfigError,
    KubeconfigSecretError,
    credentials_from_secret,
    workload_api_client,
)
from controller.runtime.store import object_key

__all__ = ["KubeNodeRegistrar", "WorkloadClusterUnavailable"]

_log = structlog.get_logger(__name__)

#: Nodes per list request of :meth:`KubeNodeRegistrar.list_nodes`.
_LIST_PAGE = 500


class WorkloadClusterUnavailable(RuntimeError):
    """The workload cluster's kubeconfig Secret is missing or unusable."""


class KubeNodeRegistrar:
    """Writes Nodes into workload clusters found through kubeconfig Secrets; also the
    simulated cloud's :class:`~.nodelifecycle.WorkloadNodes` (it lists and deletes Nodes)."""

    def __init__(
        self,
        *,
        management: KubeClient,
        request_timeout: float = 10.0,
        rest_metrics: RestMetrics | None = None,
        allow_insecure: bool = False,
    ) -> None:
        self._management = management
        self._allow_insecure = allow_insecure
        self._request_timeout = request_timeout
        self._rest_metrics = rest_metrics
        self._clients: dict[str, tuple[client.ApiClient, KubeClient]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Nodes whose kubelet runs, per cluster (shared with that cluster's pod kubelet).
        self._live: dict[str, set[str]] = {}
        self._kubelets: dict[str, _PodKubelet] = {}

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
        self._live.clear()

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
        self._kubelet_up(cluster=cluster, name=node.name, kube=kube)

    async def set_ready(self, *, cluster: str, name: str) -> None:
        await self._patch_ready(cluster=cluster, name=name, ready="True")
        kube = self._clients.get(cluster)
        if kube is not None:
            self._kubelet_up(cluster=cluster, name=name, kube=kube[1])

    async def mark_unknown(self, *, cluster: str, name: str) -> None:
        # The instance is gone: its kubelet stops finishing pods before anything else.
        self._live.get(cluster, set()).discard(name)
        await self._patch_ready(cluster=cluster, name=name, ready="Unknown")

    # ------------------------------------------------------------- the cloud's side

    async def list_nodes(self, *, cluster: str) -> list[dict[str, Any]]:
        """Every Node of ``cluster`` (for the simulated cloud node lifecycle controller)."""
        kube = await self._kube(cluster)
        nodes: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                page = await kube.list(NODES, limit=_LIST_PAGE, continue_token=token)
                nodes.extend(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue") or None
                if token is None:
                    return nodes
        except BaseException:
            await self._drop(cluster)
            raise

    async def delete_node(self, *, cluster: str, name: str, uid: str) -> bool:
        """Delete Node ``name`` if its UID is ``uid``; False if it is gone or was replaced."""
        kube = await self._kube(cluster)
        try:
            await kube.delete(NODES, name=name, uid=uid or None)
        except ApiError as exc:
            if exc.not_found or exc.conflict:
                return False
            await self._drop(cluster)
            raise
        except BaseException:
            await self._drop(cluster)
            raise
        self._live.get(cluster, set()).discard(name)
        return True

    def live_nodes(self, *, cluster: str) -> frozenset[str]:
        """Nodes of ``cluster`` whose simulated kubelet runs (for tests and diagnostics)."""
        return frozenset(self._live.get(cluster, ()))

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
            api = await self._api_client(cluster)
            kube = KubeClient(
                api=api,
                request_timeout=self._request_timeout,
                metrics=self._rest_metrics,
                metrics_host=WORKLOAD_HOST,  # the address is the tenant's: not a label value
                field_manager="inmemory-kubelet",
                on_write=self._management.on_write,  # its writes count as the management's
            )
            self._clients[cluster] = (api, kube)
            _log.info("workload cluster client created", cluster=cluster)
            live = self._live.get(cluster)
            if live and cluster not in self._kubelets:  # a dropped client's kubelet resumes
                self._kubelets[cluster] = _PodKubelet(cluster=cluster, kube=kube, live=live)
            return kube

    def _kubelet_up(self, *, cluster: str, name: str, kube: KubeClient) -> None:
        live = self._live.setdefault(cluster, set())
        live.add(name)
        kubelet = self._kubelets.get(cluster)
        if kubelet is None:
            kubelet = self._kubelets[cluster] = _PodKubelet(cluster=cluster, kube=kube, live=live)
        kubelet.node_live(name)

    async def _drop(self, cluster: str) -> None:
        kubelet = self._kubelets.pop(cluster, None)
        if kubelet is not None:
            await kubelet.aclose()
        found = self._clients.pop(cluster, None)
        if found is not None:
            await found[0].close()

    async def _api_client(self, cluster: str) -> client.ApiClient:
        namespace, sep, name = cluster.partition("/")
        if not sep or not namespace or not name:
            raise WorkloadClusterUnavailable(f"cluster {cluster!r} is not namespace/name")
        try:  # as Cluster API: the kubeconfig Secret of an existing Cluster, nothing else
            await self._management.get(CLUSTER, namespace=namespace, name=name)
        except ApiError as exc:
            if exc.not_found:
                raise WorkloadClusterUnavailable(f"Cluster {namespace}/{name} not found") from exc
            raise
        secret_name = f"{name}-kubeconfig"
        try:
            secret = await self._management.get(SECRETS, namespace=namespace, name=secret_name)
        except ApiError as exc:
            if exc.not_found:
                raise WorkloadClusterUnavailable(
                    f"Secret {namespace}/{secret_name} not found"
                ) from exc
            raise
        try:
            credentials = await asyncio.to_thread(
                credentials_from_secret, secret, allow_insecure=self._allow_insecure
            )
            return await workload_api_client(credentials)
        except (KubeconfigError, KubeconfigSecretError) as exc:  # fixed text, no Secret data
            raise WorkloadClusterUnavailable(
                f"Secret {namespace}/{secret_name}: cannot load kubeconfig: {exc}"
            ) from exc


class _PodKubelet:
    """One cluster's pod informer, finishing the deletion of pods on live Nodes."""

    def __init__(
        self,
        *,
        cluster: str,
        kube: KubeClient,
        live: set[str],
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self._cluster = cluster
        self._kube = kube
        self._live = live
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._informer = Informer(kube=kube, resource=PODS)
        self._informer.add_handler(self._on_event)
        self._finishing: dict[str, asyncio.Task[None]] = {}
        self._task = asyncio.create_task(self._informer.run(), name=f"pod kubelet {cluster}")

    def node_live(self, name: str) -> None:
        """``name``'s kubelet (re)started: finish what was deleted while it was not running."""
        for pod in self._informer.store.values():
            if (pod.get("spec") or {}).get("nodeName") == name:
                self._consider(pod)

    async def aclose(self) -> None:
        tasks = [self._task, *self._finishing.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finishing.clear()

    def _on_event(self, event: InformerEvent) -> None:
        if event.type != "DELETED":
            self._consider(event.obj)

    def _consider(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        if not meta.get("deletionTimestamp"):
            return
        if (pod.get("spec") or {}).get("nodeName") not in self._live:
            return
        key = object_key(pod)
        if key in self._finishing:
            return
        task = asyncio.create_task(self._finish(key, pod), name=f"finish pod {key}")
        self._finishing[key] = task
        task.add_done_callback(lambda _: self._finishing.pop(key, None))

    async def _finish(self, key: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        node = pod["spec"]["nodeName"]
        delay = self._retry_initial
        while True:
            try:
                await self._kube.request(
                    method="DELETE",
                    path=resource_path(PODS, namespace=meta["namespace"], name=meta["name"]),
                    body={
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": meta["uid"]},
                    },
                )
            except ApiError as exc:
                if exc.not_found or exc.conflict:  # gone, or replaced under the same name
                    return
                error = f"{exc.status} {exc.reason}: {exc.message}"
            except Exception as exc:  # transport trouble: try again
                error = f"{exc.__class__.__name__}: {exc}"
            else:
                _log.info("pod deleted by kubelet", cluster=self._cluster, node=node, pod=key)
                return
            _log.warning(
                "kubelet could not delete pod; will retry",
                cluster=self._cluster,
                pod=key,
                error=error,
                retry_in=round(delay, 3),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
            current = self._informer.store.get(key)
            if (
                current is None
                or current["metadata"].get("uid") != meta["uid"]
                or node not in self._live
            ):
                return
