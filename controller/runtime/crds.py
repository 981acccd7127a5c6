"""What a CustomResourceDefinition says about its kind: its labels and served versions.

:class:`CrdCatalog` answers "what does the CRD ``<plural>.<group>`` say?" with one GET per
CRD and caches the answer (a missing CRD too, for a shorter time), so callers that ask on
every reconcile cost one API call per CRD per ``ttl``. A CRD's labels changed after it was
read are seen when the cached answer expires.

Reading CRDs needs ``get`` on ``apiextensions.k8s.io/customresourcedefinitions`` (cluster
scope; CRDs are schema, not tenant data).

Failure: a CRD that does not exist (a built-in kind, an aggregated API) is ``None``; API and
transport errors propagate for the caller's retry policy and are not cached.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from controller.runtime.kube import ApiError, KubeClient, Resource

CRDS = Resource(
    group="apiextensions.k8s.io",
    version="v1",
    plural="customresourcedefinitions",
    kind="CustomResourceDefinition",
    namespaced=False,
)


@dataclass(frozen=True, slots=True)
class CrdInfo:
    name: str
    labels: Mapping[str, str]
    #: The versions the API server serves for this CRD.
    served_versions: frozenset[str]


class CrdCatalog:
    """Cached CRD lookups by name; see the module docstring."""

    def __init__(self, *, kube: KubeClient, ttl: float = 600.0, negative_ttl: float = 30.0) -> None:
        self._kube = kube
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache: dict[str, tuple[float, CrdInfo | None]] = {}

    async def get(self, *, group: str, plural: str) -> CrdInfo | None:
        name = f"{plural}.{group}"
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            crd = await self._kube.get(CRDS, name=name)
        except ApiError as exc:
            if not exc.not_found:
                raise
            self._cache[name] = (now + self._negative_ttl, None)
            return None
        meta = crd.get("metadata") or {}
        versions = (crd.get("spec") or {}).get("versions") or []
        info = CrdInfo(
            name=name,
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            served_versions=frozenset(
                str(v["name"]) for v in versions if v.get("served") and v.get("name")
            ),
        )
        self._cache[name] = (now + self._ttl, info)
        return info
