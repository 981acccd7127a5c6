"""Who may read ``/metrics``: the caller's bearer token, checked by the management API server.

The same rules as controller-runtime's ``WithAuthenticationAndAuthorization`` filter:

1. Authentication: the ``Authorization: Bearer <token>`` header is sent in a TokenReview.
   No token, a malformed header or a token the API server does not accept → **401**.
2. Authorization: a SubjectAccessReview for the authenticated user (name, uid, groups,
   extra) on the non-resource URL (the request path, e.g. ``/metrics``) with the request's
   method in lower case as the verb (``get``). Not allowed → **403**. RBAC grants it with
   ``nonResourceURLs: [/metrics], verbs: [get]`` (the chart's ``metrics-reader`` ClusterRole).
3. The API server cannot answer (an error status, a timeout, no connection) → **500** with a
   fixed message; the cause goes to the log, never to the caller.

Invariants:

- Results are cached so a Prometheus scraping every 15 s costs no API call most of the time:
  a TokenReview by the SHA-256 of the token (the token itself is not kept), a
  SubjectAccessReview by (user, path, verb). Positive answers live ``ttl`` seconds (60),
  negative ones ``deny_ttl`` (10), so a revoked binding stops working within a minute. Each
  cache holds at most ``max_entries`` answers, the least recently used going first, so
  callers with ever new tokens cannot grow memory.
- At most ``max_in_flight`` reviews run at once (others wait), each with a deadline of
  ``timeout`` seconds: unauthenticated callers cannot turn the metrics port into a flood of
  API calls.
- Nothing here logs or returns a token, or the API server's message about it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from controller.runtime.kube import ApiError, KubeClient

__all__ = ["Identity", "MetricsAuth", "ReviewUnavailable"]

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

_log = structlog.get_logger(__name__)
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class ReviewUnavailable(RuntimeError):
    """The API server did not answer a review (the caller gets a 500)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user, as a TokenReview returns it."""

    user: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


class _Cache(Generic[_K, _V]):
    """A bounded map whose entries expire; least recently used first out when full."""

    def __init__(self, *, max_entries: int, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[_K, tuple[float, _V]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def get(self, key: _K) -> tuple[bool, _V | None]:
        found = self._entries.get(key)
        if found is None:
            return False, None
        expires, value = found
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: _K, value: _V, *, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _identity(status: dict[str, Any]) -> Identity | None:
    if status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    extra = user.get("extra") or {}
    return Identity(
        user=str(user.get("username") or ""),
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra=tuple(sorted((str(k), tuple(str(x) for x in v or ())) for k, v in extra.items())),
    )


class MetricsAuth:
    """TokenReview + SubjectAccessReview on the management cluster; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        ttl: float = 60.0,
        deny_ttl: float = 10.0,
        max_entries: int = 1024,
        max_in_flight: int = 4,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._ttl = ttl
        self._deny_ttl = deny_ttl
        self._timeout = timeout
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._tokens: _Cache[bytes, Identity | None] = _Cache(max_entries=max_entries, clock=clock)
        self._decisions: _Cache[tuple[Identity, str, str], bool] = _Cache(
            max_entries=max_entries, clock=clock
        )
        #: Reviews sent to the API server (TokenReviews, SubjectAccessReviews).
        self.reviews = 0

    async def _post(self, *, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._in_flight:
            self.reviews += 1
            try:
                async with asyncio.timeout(self._timeout):
                    answer = await self._kube.request(method="POST", path=path, body=body)
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                _log.warning("metrics access review failed", review=path.rsplit("/", 1)[-1],
                             error=exc.__class__.__name__,
                             status=getattr(exc, "status", None))  # fmt: skip
                raise ReviewUnavailable("authorization unavailable") from None
        status = answer.get("status")
        return status if isinstance(status, dict) else {}

    async def authenticate(self, token: str) -> Identity | None:
        """The user ``token`` belongs to, or None if the API server does not accept it."""
        key = hashlib.sha256(token.encode()).digest()
        hit, identity = self._tokens.get(key)
        if hit:
            return identity
        status = await self._post(
            path=TOKEN_REVIEWS,
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        identity = _identity(status)
        self._tokens.put(key, identity, ttl=self._ttl if identity else self._deny_ttl)
        return identity

    async def authorize(self, identity: Identity, *, path: str, verb: str) -> bool:
        """Whether ``identity`` may ``verb`` the non-resource URL ``path``."""
        key = (identity, path, verb)
        hit, allowed = self._decisions.get(key)
        if hit:
            return bool(allowed)
        spec: dict[str, Any] = {
            "user": identity.user,
            "groups": list(identity.groups),
            "nonResourceAttributes": {"path": path, "verb": verb},
        }
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra}
        status = await self._post(
            path=SUBJECT_ACCESS_REVIEWS,
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
        )
        allowed = status.get("allowed") is True and status.get("denied") is not True
        self._decisions.put(key, allowed, ttl=self._ttl if allowed else self._deny_ttl)
        return allowed

    async def check(self, request: web.Request) -> web.Response | None:
        """None when ``request`` may go on, else the 401/403/500 answer to give."""
        token = bearer_token(request.headers.get("Authorization"))
        try:
            identity = await self.authenticate(token) if token else None
            if identity is None:
                return web.Response(status=401, text="Unauthorized\n")
            if request.match_info.http_exception is not None:
                return None  # 404/405: nothing to authorize, the router answers
            if not await self.authorize(identity, path=request.path, verb=request.method.lower()):
                return web.Response(status=403, text="Forbidden\n")
        except ReviewUnavailable:
            return web.Response(
                status=500, text="Internal Server Error: cannot check authorization\n"
            )
        return None

    def middleware(self) -> Middleware:
        """An aiohttp middleware putting :meth:`check` in front of every handler."""

        @web.middleware
        async def authenticate_and_authorize(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            refused = await self.check(request)
            return refused if refused is not None else await handler(request)

        return authenticate_and_authorize
