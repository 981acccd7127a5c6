"""Resolve an API group and kind to a served resource, through the discovery API.

Cluster API references other objects by ``apiGroup`` + ``kind`` (its contract-versioned
references) and leaves the version to discovery. :class:`RestMapper` asks ``/apis/<group>``
for its versions and ``/apis/<group>/<version>`` (the preferred version first, then the
others, until one serves the kind) for the kind's plural and scope,
and caches answers (misses too, for a short time, so a typo in a manifest costs one lookup
per ``negative_ttl`` and not one per reconcile).

Failure: :class:`UnknownKindError` when the group is not served or does not have the kind;
API and transport errors propagate for the caller's retry policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from controller.runtime.kube import ApiError, KubeClient


@dataclass(frozen=True, slots=True)
class ServedResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class UnknownKindError(LookupError):
    """The API server does not serve this kind."""

    def __init__(self, *, group: str, kind: str, why: str) -> None:
        super().__init__(f"kind {kind} in API group {group!r} is not served: {why}")
        self.group = group
        self.kind = kind


class RestMapper:
    """Cached group/kind → resource lookups; see the module docstring."""

    def __init__(self, *, kube: KubeClient, ttl: float = 600.0, negative_ttl: float = 30.0) -> None:
        self._kube = kube
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache: dict[tuple[str, str], tuple[float, ServedResource | UnknownKindError]] = {}

    def known(self, resource: ServedResource) -> None:
        """Seed the cache with a kind this process already knows (no lookup needed)."""
        self._cache[(resource.group, resource.kind)] = (float("inf"), resource)

    async def resource_for(self, *, group: str, kind: str) -> ServedResource:
        now = time.monotonic()
        cached = self._cache.get((group, kind))
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], UnknownKindError):
                raise cached[1]
            return cached[1]
        try:
            found = await self._lookup(group=group, kind=kind)
        except UnknownKindError as exc:
            self._cache[(group, kind)] = (now + self._negative_ttl, exc)
            raise
        self._cache[(group, kind)] = (now + self._ttl, found)
        return found

    async def _lookup(self, *, group: str, kind: str) -> ServedResource:
        try:
            if group:
                info = await self._kube.request(method="GET", path=f"/apis/{group}")
                preferred = str(info["preferredVersion"]["version"])
                others = [str(v["version"]) for v in info.get("versions") or []]
                versions = [preferred, *(v for v in others if v != preferred)]
            else:
                versions = ["v1"]
        except ApiError as exc:
            if exc.not_found:
                raise UnknownKindError(group=group, kind=kind, why="no such API group") from exc
            raise
        # The preferred version first; a kind that only some versions of the group serve
        # (two providers sharing infrastructure.cluster.x-k8s.io) is found in the others.
        for version in versions:
            path = f"/apis/{group}/{version}" if group else "/api/v1"
            try:
                listing = await self._kube.request(method="GET", path=path)
            except ApiError as exc:
                if exc.not_found:
                    continue
                raise
            for res in listing.get("resources", []):
                if res.get("kind") == kind and "/" not in res.get("name", ""):
                    return ServedResource(
                        group=group,
                        version=version,
                        plural=str(res["name"]),
                        kind=kind,
                        namespaced=bool(res.get("namespaced", True)),
                    )
        raise UnknownKindError(group=group, kind=kind, why=f"no version of {group!r} has it")
