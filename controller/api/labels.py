"""Labels and annotations of the Cluster API contract that several layers read or write.

Only names and the pure helpers that build their values live here, so that the
infrastructure layer and the MachinePool layer agree without importing each other.
"""

from __future__ import annotations

import base64
import hashlib
import re

POOL_NAME_LABEL = "cluster.x-k8s.io/pool-name"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
#: On a Machine: remove this one first on scale-in (cluster-autoscaler sets it).
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
#: On a Machine: skip draining its Node on deletion.
EXCLUDE_NODE_DRAINING_ANNOTATION = "machine.cluster.x-k8s.io/exclude-node-draining"
#: Ours, on a Machine we delete: why (``ScaleIn``, ``Rollout``, ``Remediation``,
#: ``InstanceGone``, ``PoolDeleted``), or ``Deleted`` once a deletion by someone else has
#: lowered the pool's ``spec.replicas``. A deleting Machine without it is not accounted for.
DELETE_REASON_ANNOTATION = "machinepool.cluster.x-k8s.io/delete-reason"
PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"
#: ``--watch-filter``: a controller started with a value handles only objects labelled so;
#: the per-instance objects inherit the label from their pool.
WATCH_FILTER_LABEL = "cluster.x-k8s.io/watch-filter"
REPLICAS_MANAGED_BY_ANNOTATION = "cluster.x-k8s.io/replicas-managed-by"
#: The Machine finalizer, Cluster API's name: the Machine stays until its Node is drained,
#: its instance deleted and its Node removed.
MACHINE_FINALIZER = "machine.cluster.x-k8s.io"

_LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def pool_label_value(name: str) -> str:
    """The pool-name label value: the name when it is a valid label value, else a hash."""
    if len(name) <= 63 and _LABEL_VALUE.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).digest()[:8]
    return "hash_" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "_z"


def machine_name(*, pool: str, instance_id: str) -> str:
    """A stable, unique name for the per-instance objects (infra machine and Machine) of
    ``instance_id`` in the infra pool ``pool``: ``<pool>-<instance suffix>``, at most 63
    characters (a hash stands in for what does not fit). The suffix is the instance ID's
    last ``-`` segment when that is long enough to be unique in a group (AWS ``i-0abc…``,
    the simulator's ``<group>-<8 hex>``), else the whole ID."""
    ident = _NOT_NAME.sub("-", instance_id.lower()).strip("-") or "x"
    tail = ident.rsplit("-", 1)[-1]
    suffix = tail if len(tail) >= 6 else ident
    name = f"{pool}-{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(f"{pool}/{instance_id}".encode()).hexdigest()[:10]
    return f"{pool[: 63 - 11].rstrip('-.')}-{digest}"


__all__ = [
    "CLUSTER_NAME_LABEL",
    "DELETE_MACHINE_ANNOTATION",
    "DELETE_REASON_ANNOTATION",
    "EXCLUDE_NODE_DRAINING_ANNOTATION",
    "MACHINE_FINALIZER",
    "PAUSED_ANNOTATION",
    "POOL_NAME_LABEL",
    "REPLICAS_MANAGED_BY_ANNOTATION",
    "WATCH_FILTER_LABEL",
    "machine_name",
    "pool_label_value",
]
