"""The objects a MachinePool references: its bootstrap config and its infrastructure pool.

References are Cluster API's contract-versioned ones (``apiGroup`` + ``kind`` + ``name``, in
the pool's namespace), and resolve only to Cluster API contract kinds for their role
(:mod:`.contract`). Reads come from an informer cache when the kind has one (the kinds this
process also reconciles), else from the API server; either way a missing object is ``None``,
never an exception.

Ownership, the one thing that lets a pool delete what it names:

- :meth:`ExternalObjects.ensure_owned` makes the MachinePool the object's controller owner
  and labels it with the cluster name, with one merge patch and only when something is
  missing. An object already controlled by anything else is refused
  (:class:`OwnedByAnotherError`) and left untouched: a pool cannot take another pool's
  infra pool or config by naming it. Adoption carries a resourceVersion precondition, so two
  pools adopting at once cannot both win.
- :meth:`ExternalObjects.delete` deletes the object only when its controller owner reference
  carries this pool's uid, or when it has no controller yet (the pool was deleted before it
  adopted the object, which it could have: an unadopted infra pool has no cloud group), with
  a uid precondition (an object replaced under the same name is not deleted either). An
  object another owner controls is left alone and only logged.

Failure: a kind that is not served raises
:class:`~controller.runtime.discovery.UnknownKindError`, a served kind that is not a contract
kind for the role :class:`~controller.machinepool.contract.UnsupportedKindError` (both
reported by the caller as a condition); API errors propagate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from controller.api.labels import CLUSTER_NAME_LABEL
from controller.api.meta import ContractVersionedObjectReference
from controller.machinepool.contract import ContractKinds, Role
from controller.runtime.discovery import ServedResource
from controller.runtime.informer import Informer
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.store import Obj

_log = structlog.get_logger(__name__)


class OwnedByAnotherError(Exception):
    """The referenced object has a controller owner other than this pool."""

    def __init__(self, *, kind: str, name: str, controller: Mapping[str, Any]) -> None:
        super().__init__(
            f"{kind} {name} is controlled by {controller.get('kind')} "
            f"{controller.get('name')}; a pool needs its own"
        )


def controller_ref(obj: Obj) -> Mapping[str, Any] | None:
    """The object's controller owner reference, if it has one."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


class ExternalObjects:
    """Reads, adopts and deletes referenced objects; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        contract: ContractKinds,
        informers: Mapping[tuple[str, str], Informer] | None = None,
    ) -> None:
        self.kube = kube
        self.contract = contract
        self._informers = dict(informers or {})

    async def resource(
        self, ref: ContractVersionedObjectReference, *, role: Role
    ) -> ServedResource:
        return await self.contract.resource_for(ref=ref, role=role)

    async def get(
        self, *, namespace: str, ref: ContractVersionedObjectReference, role: Role
    ) -> Obj | None:
        resource = await self.resource(ref, role=role)
        informer = self._informers.get((ref.api_group, ref.kind))
        if informer is not None and informer.synced:
            return informer.store.get(f"{namespace}/{ref.name}")
        try:
            return await self.kube.get(resource, namespace=namespace, name=ref.name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def ensure_owned(
        self,
        *,
        obj: Obj,
        owner: Obj,
        cluster_name: str,
        ref: ContractVersionedObjectReference,
        role: Role,
    ) -> None:
        """Controller ownerRef to ``owner`` and the cluster-name label, patched if missing;
        :class:`OwnedByAnotherError` (nothing written) if another object controls it."""
        meta = obj.get("metadata", {})
        owner_meta = owner["metadata"]
        current = controller_ref(obj)
        if current is not None and current.get("uid") != owner_meta["uid"]:
            raise OwnedByAnotherError(kind=ref.kind, name=ref.name, controller=current)
        refs: list[dict[str, Any]] = list(meta.get("ownerReferences") or [])
        has_owner = current is not None
        has_label = (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL) == cluster_name
        if has_owner and has_label:
            return
        patch: dict[str, Any] = {"metadata": {}}
        if not has_owner:
            others = [r for r in refs if r.get("uid") != owner_meta["uid"]]
            wanted = {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner_meta["name"],
                "uid": owner_meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
            patch["metadata"]["ownerReferences"] = [*others, wanted]
        if not has_label:
            patch["metadata"]["labels"] = {CLUSTER_NAME_LABEL: cluster_name}
        resource = await self.resource(ref, role=role)
        await self.kube.merge_patch(
            resource,
            namespace=meta.get("namespace"),
            name=meta["name"],
            patch=patch,
            resource_version=meta.get("resourceVersion") if not has_owner else None,
        )

    async def delete(
        self, *, namespace: str, ref: ContractVersionedObjectReference, role: Role, owner_uid: str
    ) -> bool:
        """Delete the object if this pool (``owner_uid``) controls it, or if nothing does yet
        (a pool deleted before it adopted what it references: it may take what it may adopt,
        and an unadopted infra pool has no cloud group yet); True while such an object still
        exists (deletion may take a while). An object another owner controls is left alone."""
        resource = await self.resource(ref, role=role)
        try:
            obj = await self.kube.get(resource, namespace=namespace, name=ref.name)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        current = controller_ref(obj)
        if current is not None and current.get("uid") != owner_uid:
            by = f"{current.get('kind')} {current.get('name')}"
            _log.info(
                "referenced object not deleted: this pool does not control it",
                kind=ref.kind, name=f"{namespace}/{ref.name}",
                controlled_by=by,
            )  # fmt: skip
            return False
        if obj["metadata"].get("deletionTimestamp"):
            return True
        try:
            await self.kube.delete(
                resource, namespace=namespace, name=ref.name, uid=obj["metadata"].get("uid")
            )
        except ApiError as exc:
            if exc.not_found or exc.conflict:  # gone, or replaced by another under its name
                return False
            raise
        return True
