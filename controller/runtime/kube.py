"""A small typed client for the Kubernetes REST API, returning plain dicts.

kubernetes_asyncio does authentication, TLS and kubeconfig loading; this module drives its
:class:`~kubernetes_asyncio.client.ApiClient` at the path level so every kind (built-in or
custom) is read and written the same way, without deserialising into generated models (dicts
are faster and keep every field, including ones this version of the code does not know).

Invariants:

- Every request has a deadline (``request_timeout``); a watch has a connect deadline and the
  caller enforces an inactivity timeout (see :mod:`controller.runtime.informer`).
- Writes are patches (JSON merge patch, optionally with a resourceVersion precondition, or
  server-side apply with a field manager) or creates; nothing here writes a whole object back.
- Every response is counted in ``rest_client_requests_total{code,method,host}``. ``host`` is
  the server's ``host:port`` for the management cluster, but a client of a workload cluster
  (whose address comes from a tenant's kubeconfig Secret) passes ``metrics_host=``
  :data:`WORKLOAD_HOST`: a label value never comes from tenant input, so a tenant cannot grow
  the series without bound. ``code`` is the HTTP status (a number below 600).
- Before each write request is sent (create, patch, apply, delete), the client calls its
  ``on_write`` hook (a :class:`WriteHook`) with the kind, namespace and name written, so
  whoever installed it (the manager: the work-priority policy of
  :mod:`controller.runtime.urgency`) knows of the write before a watch event for it can
  arrive. This module imports no policy; a client without a hook writes all the same.

Failure: a non-2xx answer raises :class:`ApiError` carrying the HTTP status, the Status
``reason`` and ``message``; transport failures surface as ``aiohttp.ClientError`` or
``TimeoutError`` for the caller's retry policy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from controller.runtime.metrics import REGISTRY, per_registry
from controller.runtime.store import Obj

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class WriteHook(Protocol):
    """Told of each write before its request is sent: the object's ``kind``, ``namespace``
    (None when cluster-scoped) and ``name`` (empty when a create leaves it to the server).
    It runs on the writer's task and must not raise or block: an exception would stop the
    write and reach the writer."""

    def __call__(self, *, kind: str, namespace: str | None, name: str) -> None: ...


class ResourceLike(Protocol):
    """Anything that says where a kind lives in the REST API (a :class:`Resource`, or the
    API package's kind descriptors)."""

    @property
    def group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def plural(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def namespaced(self) -> bool: ...
    @property
    def api_version(self) -> str: ...


def resource_path(
    resource: ResourceLike,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a collection, an object or an object's subresource."""
    if resource.group:
        base = f"/apis/{resource.group}/{resource.version}"
    else:
        base = f"/api/{resource.version}"
    if resource.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{resource.plural}"
    if name is not None:
        base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
    return base


def resource_name(resource: ResourceLike) -> str:
    """``plural.group`` (``plural`` for the core group), as kubectl names resources."""
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a built-in kind lives in the REST API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base

    def __str__(self) -> str:
        return resource_name(self)


# Built-in kinds the runtime itself needs.
NAMESPACES = Resource(
    group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False
)
NODES = Resource(group="", version="v1", plural="nodes", kind="Node", namespaced=False)
SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret")
EVENTS = Resource(group="events.k8s.io", version="v1", plural="events", kind="Event")
LEASES = Resource(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease")
PODS = Resource(group="", version="v1", plural="pods", kind="Pod")


#: The longest message an :class:`ApiError` takes from a ``Status`` answer.
MAX_ERROR_MESSAGE = 500


class ApiError(Exception):
    """The API server answered with a non-2xx status."""

    def __init__(self, *, status: int, reason: str, message: str, body: Obj | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        """Throttling and server-side trouble: worth retrying with backoff."""
        return self.status in (429, 500, 502, 503, 504)

    @classmethod
    def from_status(cls, *, status: int, text: str) -> ApiError:
        """The error for a non-2xx answer.

        Only a Kubernetes ``Status`` object lends its reason and message (cut to
        :data:`MAX_ERROR_MESSAGE` characters). Any other body is not quoted: a workload
        cluster's server is a tenant's choice, and an error message ends up in conditions,
        so quoting an arbitrary answer would let a kubeconfig aimed at some internal HTTPS
        service read that service's answers back.
        """
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            reason = str(parsed.get("reason") or "") or "Unknown"
            message = str(parsed.get("message") or "")[:MAX_ERROR_MESSAGE]
            return cls(status=status, reason=reason, message=message, body=parsed)
        message = f"the answer ({len(text)} bytes) is not a Kubernetes Status"
        return cls(status=status, reason="Unknown", message=message)


#: The ``host`` label of every workload cluster client (see the module docstring).
WORKLOAD_HOST = "workload"


class RestMetrics:
    """``rest_client_requests_total`` as client-go/controller-runtime export it.

    Every ``RestMetrics`` of one registry shares the same counter, so any number of clients
    (the management cluster's, each workload cluster's) can count into one registry.
    """

    def __init__(self, *, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = _requests_counter(registry)


@per_registry
def _requests_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "rest_client_requests_total",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        ["code", "method", "host"],
        registry=registry,
    )


def rest_metrics_for(registry: CollectorRegistry = REGISTRY) -> RestMetrics:
    """Request metrics on ``registry`` (shared with every other client counting there)."""
    return RestMetrics(registry=registry)


def default_rest_metrics() -> RestMetrics:
    return RestMetrics(registry=REGISTRY)


class KubeClient:
    """Path-level Kubernetes API calls on a kubernetes_asyncio ApiClient (which the caller owns)."""

    def __init__(
        self,
        *,
        api: client.ApiClient,
        field_manager: str = "machinepool-controller",
        request_timeout: float = 30.0,
        metrics: RestMetrics | None = None,
        metrics_host: str | None = None,
        on_write: WriteHook | None = None,
    ) -> None:
        """``metrics_host``: the ``host`` label of this client's requests (default: the
        server's ``host:port``); give :data:`WORKLOAD_HOST` for a server a tenant named.
        ``on_write``: called before each write is sent (see the module docstring); it may
        also be set later, as the manager does on the client it is given."""
        self.api = api
        self.on_write = on_write
        self.field_manager = field_manager
        self.request_timeout = request_timeout
        self._metrics = metrics or default_rest_metrics()
        self._host = (
            metrics_host if metrics_host is not None else urlsplit(api.configuration.host).netloc
        )

    # ------------------------------------------------------------------ core

    def _before_write(self, resource: ResourceLike, *, namespace: str | None, name: str) -> None:
        if self.on_write is not None:
            self.on_write(kind=resource.kind, namespace=namespace, name=name)

    async def _send(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
        request_timeout: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        params = [(k, _q(v)) for k, v in (query or {}).items()]
        try:
            resp: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(
                    request_timeout if request_timeout is not None else self.request_timeout
                ),
            )
        except ApiException as exc:  # pragma: no cover - only raised with _preload_content=True
            raise ApiError(
                status=exc.status or 0, reason=str(exc.reason), message=str(exc.body)
            ) from exc
        self._metrics.requests.labels(str(resp.status), method, self._host).inc()
        if resp.status >= 400:
            try:
                text = await resp.text()
            finally:
                resp.release()
            raise ApiError.from_status(status=resp.status, text=text)
        return resp

    async def request(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> Obj:
        resp = await self._send(
            method=method, path=path, query=query, body=body, content_type=content_type
        )
        try:
            data = await resp.read()
        finally:
            resp.release()
        if not data:
            return {}
        parsed = json.loads(data)
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    # ------------------------------------------------------------- verbs

    async def get(self, resource: ResourceLike, *, name: str, namespace: str | None = None) -> Obj:
        return await self.request(
            method="GET", path=resource_path(resource, namespace=namespace, name=name)
        )

    async def list(
        self,
        resource: ResourceLike,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        query: dict[str, str | int | bool] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        if limit:
            query["limit"] = limit
        if continue_token:
            query["continue"] = continue_token
        return await self.request(
            method="GET", path=resource_path(resource, namespace=namespace), query=query
        )

    async def create(
        self, resource: ResourceLike, *, body: Obj, namespace: str | None = None
    ) -> Obj:
        """Create ``body`` (``apiVersion`` and ``kind`` default to ``resource``'s)."""
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **body}
        self._before_write(resource, namespace=namespace,
                           name=str((body.get("metadata") or {}).get("name") or ""))  # fmt: skip
        return await self.request(
            method="POST",
            path=resource_path(resource, namespace=namespace),
            body=body,
            query={"fieldManager": self.field_manager},
        )

    async def merge_patch(
        self,
        resource: ResourceLike,
        *,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        """JSON merge patch; with ``resource_version`` it fails with 409 if the object moved on."""
        if resource_version is not None:
            patch = {
                **patch,
                "metadata": {**patch.get("metadata", {}), "resourceVersion": resource_version},
            }
        self._before_write(resource, namespace=namespace, name=name)
        return await self.request(
            method="PATCH",
            path=resource_path(resource, namespace=namespace, name=name, subresource=subresource),
            body=patch,
            content_type=MERGE_PATCH,
            query={"fieldManager": self.field_manager},
        )

    async def json_patch(
        self,
        resource: ResourceLike,
        *,
        name: str,
        ops: Sequence[Obj],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        self._before_write(resource, namespace=namespace, name=name)
        return await self.request(
            method="PATCH",
            path=resource_path(resource, namespace=namespace, name=name, subresource=subresource),
            body=list(ops),
            content_type=JSON_PATCH,
            query={"fieldManager": self.field_manager},
        )

    async def apply(
        self,
        resource: ResourceLike,
        *,
        name: str,
        body: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
        force: bool = True,
        field_manager: str | None = None,
    ) -> Obj:
        """Server-side apply of ``body`` (apiVersion/kind/metadata.name included).

        ``field_manager`` defaults to the client's. Mind server-side apply's rule: what a
        manager applies is its whole intent, and fields it applied before but omits now are
        removed, so give each partial intent (a finalizer, say) a manager of its own.
        """
        self._before_write(resource, namespace=namespace, name=name)
        return await self.request(
            method="PATCH",
            path=resource_path(resource, namespace=namespace, name=name, subresource=subresource),
            body=body,
            content_type=APPLY_PATCH,
            query={"fieldManager": field_manager or self.field_manager, "force": force},
        )

    async def delete(
        self,
        resource: ResourceLike,
        *,
        name: str,
        namespace: str | None = None,
        uid: str | None = None,
        propagation: Literal["Foreground", "Background", "Orphan"] | None = None,
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}
        if propagation:
            body["propagationPolicy"] = propagation
        self._before_write(resource, namespace=namespace, name=name)
        return await self.request(
            method="DELETE", path=resource_path(resource, namespace=namespace, name=name), body=body
        )

    async def watch(
        self,
        resource: ResourceLike,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        connect_timeout: float = 30.0,
    ) -> AsyncGenerator[Obj, None]:
        """Raw watch events (``{"type", "object"}``) until the server ends the stream.

        Lines are split here rather than by aiohttp's readline, which refuses lines longer
        than its buffer (a large object is one long line). The caller owns the inactivity
        timeout: each ``__anext__`` may wait as long as the server stays silent.
        """
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        resp = await self._send(
            method="GET",
            path=resource_path(resource, namespace=namespace),
            query=query,
            request_timeout=aiohttp.ClientTimeout(
                total=None, connect=connect_timeout, sock_connect=connect_timeout
            ),
        )
        buffer = b""
        try:
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    line, buffer = buffer[:newline], buffer[newline + 1 :]
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
            if buffer.strip():
                event = json.loads(buffer)
                if isinstance(event, dict):
                    yield event
        finally:
            resp.release()
            resp.close()


def _q(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
