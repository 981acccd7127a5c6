"""The objects a MachinePool references: its bootstrap config and its infrastructure pool.

References are Cluster API's contract-versioned ones (``apiGroup`` + ``kind`` + ``name``, in
the pool's namespace). Reads come from an informer cache when the kind has one (the kinds
this process also reconciles), else from the API server through discovery; either way a
missing object is ``None``, never an exception.

:func:`ensure_owned` makes the MachinePool the object's controller owner and labels it with
the cluster name, with one merge patch and only when something is missing.

Failure: an unknown kind raises :class:`~controller.runtime.discovery.UnknownKindError`
(reported by the caller as a condition); API errors propagate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.api.meta import ContractVersionedObjectReference
from controller.runtime.discovery import RestMapper, ServedResource
from controller.runtime.informer import Informer
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.store import Obj

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"


class ExternalObjects:
    """Reads and adopts referenced objects; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        mapper: RestMapper,
        informers: Mapping[tuple[str, str], Informer] | None = None,
    ) -> None:
        self.kube = kube
        self.mapper = mapper
        self._informers = dict(informers or {})

    async def resource(self, ref: ContractVersionedObjectReference) -> ServedResource:
        return await self.mapper.resource_for(group=ref.api_group, kind=ref.kind)

    async def get(self, *, namespace: str, ref: ContractVersionedObjectReference) -> Obj | None:
        informer = self._informers.get((ref.api_group, ref.kind))
        if informer is not None and informer.synced:
            return informer.store.get(f"{namespace}/{ref.name}")
        resource = await self.resource(ref)
        try:
            return await self.kube.get(resource, namespace=namespace, name=ref.name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def ensure_owned(
        self, *, obj: Obj, owner: Obj, cluster_name: str, ref: ContractVersionedObjectReference
    ) -> None:
        """Controller ownerRef to ``owner`` and the cluster-name label, patched if missing."""
        meta = obj.get("metadata", {})
        owner_meta = owner["metadata"]
        refs: list[dict[str, Any]] = list(meta.get("ownerReferences") or [])
        wanted = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner_meta["name"],
            "uid": owner_meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        has_owner = any(r.get("uid") == owner_meta["uid"] and r.get("controller") for r in refs)
        has_label = (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL) == cluster_name
        if has_owner and has_label:
            return
        patch: dict[str, Any] = {"metadata": {}}
        if not has_owner:
            others = [r for r in refs if r.get("uid") != owner_meta["uid"]]
            if any(r.get("controller") for r in others):
                raise ApiError(
                    status=409,
                    reason="AlreadyOwned",
                    message=f"{ref.kind} {ref.name} is controlled by another object",
                )
            patch["metadata"]["ownerReferences"] = [*others, wanted]
        if not has_label:
            patch["metadata"]["labels"] = {CLUSTER_NAME_LABEL: cluster_name}
        resource = await self.resource(ref)
        await self.kube.merge_patch(
            resource,
            namespace=meta.get("namespace"),
            name=meta["name"],
            patch=patch,
            resource_version=meta.get("resourceVersion") if not has_owner else None,
        )

    async def delete(self, *, namespace: str, ref: ContractVersionedObjectReference) -> bool:
        """Delete the object; True if it still existed (deletion may take a while)."""
        resource = await self.resource(ref)
        try:
            await self.kube.delete(resource, namespace=namespace, name=ref.name)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True
