"""What a simulated instance does to its workload cluster: the Node its kubelet would keep.

:class:`NodeRegistrar` is the simulator's only way into workload clusters (one per
``GroupSpec.cluster``, ``namespace/name``). Its three calls mirror a kubelet's life:

- ``register``: the instance has booted; its kubelet registers the Node (created if absent,
  kept if a Node of that name exists) with ``spec.providerID``, the zone and instance-type
  labels, the ``node.cluster.x-k8s.io/uninitialized:NoSchedule`` taint that kubeadm-
  bootstrapped Nodes carry until Cluster API removes it, ``status.nodeInfo`` and a
  ``Ready=False`` condition;
- ``set_ready``: the kubelet reports ``Ready=True``;
- ``mark_unknown``: the instance is gone and the kubelet has stopped posting status; the Node
  is left in place with ``Ready=Unknown`` (reason ``NodeStatusUnknown``), as the node
  lifecycle controller would mark it. Deleting it is the MachinePool controller's job, and
  the simulated cloud's node lifecycle controller's (:mod:`.nodelifecycle`) once the
  instance is gone.

Every call is idempotent, and a missing Node is success for ``set_ready`` and
``mark_unknown`` (someone deleted it; a real kubelet would not bring it back either). A call
that fails raises; the simulator logs it and retries with backoff.

The helpers below build the object and status bodies, so any registrar writes the same Node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.api.meta import ConditionStatus as ReadyStatus

__all__ = [
    "UNINITIALIZED_TAINT",
    "ZONE_LABEL",
    "NodeRegistrar",
    "NodeRegistration",
    "ReadyStatus",
    "node_object",
    "node_status",
]

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
UNINITIALIZED_TAINT: dict[str, str] = {
    "key": "node.cluster.x-k8s.io/uninitialized",
    "effect": "NoSchedule",
}


_READY_REASONS: dict[ReadyStatus, tuple[str, str]] = {
    "False": ("KubeletNotReady", "container runtime network not ready: cni plugin not initialized"),
    "True": ("KubeletReady", "kubelet is posting ready status"),
    "Unknown": ("NodeStatusUnknown", "Kubelet stopped posting node status."),
}


@dataclass(frozen=True, slots=True)
class NodeRegistration:
    """The Node an instance's kubelet registers."""

    name: str
    provider_id: str
    zone: str
    kubelet_version: str
    instance_type: str | None = None


class NodeRegistrar(Protocol):
    """Writes simulated kubelets' Nodes into workload clusters; see the module docstring."""

    async def register(self, *, cluster: str, node: NodeRegistration) -> None: ...

    async def set_ready(self, *, cluster: str, name: str) -> None: ...

    async def mark_unknown(self, *, cluster: str, name: str) -> None: ...


def node_object(node: NodeRegistration) -> dict[str, Any]:
    """The Node as its kubelet creates it (``status`` is written separately)."""
    labels = {
        ZONE_LABEL: node.zone,
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    if node.instance_type:
        labels[INSTANCE_TYPE_LABEL] = node.instance_type
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels},
        "spec": {"providerID": node.provider_id, "taints": [dict(UNINITIALIZED_TAINT)]},
    }


def node_status(
    *, ready: ReadyStatus, node: NodeRegistration | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """A ``status`` merge patch: the Ready condition, plus nodeInfo and addresses if ``node``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reason, message = _READY_REASONS[ready]
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ]
    }
    if node is not None:
        digest = hashlib.sha256(node.provider_id.encode()).hexdigest()
        status["nodeInfo"] = {
            "kubeletVersion": node.kubelet_version,
            "kubeProxyVersion": "",
            "machineID": digest[:32],
            "systemUUID": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-"
            f"{digest[20:32]}",
            "bootID": digest[32:64],
            "kernelVersion": "6.8.0-inmemory",
            "osImage": "In-memory Linux",
            "containerRuntimeVersion": "containerd://2.0.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
        }
        octets = bytes.fromhex(digest[:6])
        status["addresses"] = [
            {"type": "InternalIP", "address": f"10.{octets[0]}.{octets[1]}.{octets[2] or 1}"},
            {"type": "Hostname", "address": node.name},
        ]
    return status
