"""Deleting an object with a note of why: the annotations first, then the delete.

Other controllers read the note when they see the object going (for a Machine: whether its
deletion must lower its pool's ``spec.replicas``), so it is written before the delete, with
the cached ``resourceVersion`` as a precondition: a stale cache gets a 409 (the caller
retries on fresh data) rather than a note on an object that changed meanwhile. An object
already gone is not an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.runtime.kube import ApiError, KubeClient, ResourceLike
from controller.runtime.store import Obj


async def delete_with_annotations(
    *, kube: KubeClient, resource: ResourceLike, obj: Obj, annotations: Mapping[str, str]
) -> None:
    meta = obj["metadata"]
    present = meta.get("annotations") or {}
    try:
        if any(present.get(k) != v for k, v in annotations.items()):
            await kube.merge_patch(
                resource, namespace=meta.get("namespace"), name=meta["name"],
                patch={"metadata": {"annotations": dict(annotations)}},
                resource_version=meta["resourceVersion"],
            )  # fmt: skip
        await kube.delete(resource, namespace=meta.get("namespace"), name=meta["name"])
    except ApiError as exc:
        if not exc.not_found:
            raise


__all__ = ["delete_with_annotations"]
