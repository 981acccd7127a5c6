"""Adding and removing one finalizer without racing other writers.

Adding is a server-side apply of just ``metadata.finalizers: [ours]`` under a field manager
of its own (``<manager>/finalizer``, so this partial intent never competes with the
controller's other writes): ``finalizers`` is a set-type list, so the API server merges our
entry with everyone else's, and no resourceVersion precondition (which a cached object often
fails) is needed.
Removing is a JSON patch that tests the entry at its index and removes it, atomic on the
server; if the list moved under us the test fails (422) and the caller retries with a fresh
copy. Both are no-ops when there is nothing to do; an object already gone is not an error.
"""

from __future__ import annotations

from controller.runtime.kube import ApiError, KubeClient, ResourceLike
from controller.runtime.store import Obj


async def add_finalizer(
    *, kube: KubeClient, resource: ResourceLike, obj: Obj, finalizer: str
) -> bool:
    """Ensure ``finalizer`` is on ``obj``; True if a write was made."""
    meta = obj["metadata"]
    if finalizer in (meta.get("finalizers") or []):
        return False
    await kube.apply(
        resource,
        namespace=meta.get("namespace"),
        name=meta["name"],
        body={
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": meta["name"], "finalizers": [finalizer]},
        },
        field_manager=f"{kube.field_manager}/finalizer",
    )
    return True


async def remove_finalizer(
    *, kube: KubeClient, resource: ResourceLike, obj: Obj, finalizer: str
) -> bool:
    """Take ``finalizer`` off ``obj``; True if a write was made."""
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if finalizer not in finalizers:
        return False
    path = f"/metadata/finalizers/{finalizers.index(finalizer)}"
    try:
        await kube.json_patch(
            resource,
            namespace=meta.get("namespace"),
            name=meta["name"],
            ops=[{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}],
        )
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True
