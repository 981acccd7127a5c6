"""Cloud names and ownership tags of infra pools: unambiguous across namespaces.

Names: :func:`group_name` is ``<namespace>-<name>`` (cut to fit the cloud's limit) then ``-``
and the first 16 hex digits of SHA-256 over ``<namespace>/<name>``. ``/`` can appear in
neither a namespace nor an object name, so two different pools always hash two different
strings: ``team-a/prod`` and ``team/a-prod`` share the readable prefix ``team-a-prod`` but not
the name. The prefix is for people; the hash is what keeps names apart. (Even a crafted hash
collision gains nothing: the ownership tags below still tell the two pools apart.)

Recording: the reconciler writes the name into the infra pool's ``status.groupName`` before
the first cloud call, and :func:`recorded_group_name` returns the recorded name whenever
there is one. So a later change of this naming scheme never orphans a group: a pool keeps
the name it was created with for its life.

Ownership tags (:func:`pool_owner_tags`): the pool's namespace and name, which bind a group
to exactly one pool of one management cluster's namespace. No UID: ``clusterctl move``
recreates the objects with new UIDs, and their groups must stay theirs. Providers add the
cluster's tag when the cluster is known. These tags are applied *after* a user's
``additionalTags``, so a spec can never overwrite them.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = [
    "GROUP_NAME_FIELD",
    "POOL_NAMESPACE_TAG",
    "POOL_NAME_TAG",
    "group_name",
    "pool_owner_tags",
    "recorded_group_name",
]

#: The infra pool status field that records the cloud group's name.
GROUP_NAME_FIELD = "groupName"
#: Tag keys binding a cloud object to one pool (values: the pool's namespace and name).
POOL_NAMESPACE_TAG = "machinepool.cluster.x-k8s.io/pool-namespace"
POOL_NAME_TAG = "machinepool.cluster.x-k8s.io/pool-name"

_HASH_LENGTH = 16


def group_name(*, namespace: str, name: str, max_length: int) -> str:
    """``<namespace>-<name>`` cut to fit, then ``-<16 hex digits of sha256(namespace/name)>``."""
    if max_length < _HASH_LENGTH + 2:
        raise ValueError(f"max_length {max_length} leaves no room for the hash")
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:_HASH_LENGTH]
    prefix = f"{namespace}-{name}"[: max_length - _HASH_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{digest}" if prefix else digest


def recorded_group_name(*, infra: dict[str, Any], max_length: int) -> str:
    """The name recorded in ``status.groupName``, else the one :func:`group_name` gives."""
    recorded = (infra.get("status") or {}).get(GROUP_NAME_FIELD)
    if isinstance(recorded, str) and recorded:
        return recorded
    meta = infra["metadata"]
    return group_name(
        namespace=str(meta["namespace"]), name=str(meta["name"]), max_length=max_length
    )


def pool_owner_tags(*, namespace: str, name: str) -> dict[str, str]:
    """The tags binding a cloud object to the pool ``namespace/name``."""
    return {POOL_NAMESPACE_TAG: namespace, POOL_NAME_TAG: name}
