"""Scale-from-zero hints for cluster-autoscaler, published on the infrastructure pool.

A pool at zero replicas has no Node for cluster-autoscaler to copy, so it needs to be told
what a new Node would offer. An adapter that knows its instance types implements
:class:`CapacityHints`; the infrastructure reconciler then calls :func:`publish_capacity`,
which writes the same facts two ways on the infra pool:

- the ``capacity.cluster-autoscaler.kubernetes.io/{cpu,memory,ephemeral-disk,maxPods,gpu-type,
  gpu-count}`` annotations (a person reads them with ``kubectl get -o yaml``; copy them onto the
  MachinePool, where cluster-autoscaler reads annotations, to override the type's values);
- ``status.capacity`` (a resource list: ``cpu``, ``memory``, ``ephemeral-storage``, ``pods``,
  ``<gpu-type>``), which is where cluster-autoscaler looks on the object a MachinePool's
  ``infrastructureRef`` names.

Invariants: only the annotation keys the adapter knows are written, so a person's own
capacity annotations for facts we do not know survive; an unknown instance type (``None``
from the hook) writes nothing and removes nothing; a pool whose annotations already match
costs no write. Adapters without the hook are left alone (it is optional: :func:`hints_of`).

Failure: the annotation patch raises :class:`~controller.runtime.kube.ApiError` like any
write; the reconciler retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controller.api.kinds import Kind
from controller.runtime.kube import KubeClient
from controller.runtime.store import Obj

__all__ = [
    "CAPACITY_ANNOTATION_PREFIX",
    "CapacityHints",
    "NodeCapacity",
    "hints_of",
    "publish_capacity",
]


CAPACITY_ANNOTATION_PREFIX = "capacity.cluster-autoscaler.kubernetes.io/"


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What one Node of an instance type offers; quantities in Kubernetes notation."""

    cpu: str
    memory: str
    ephemeral_disk: str | None = None
    max_pods: int | None = None
    gpu_type: str | None = None
    gpu_count: int | None = None

    def annotations(self) -> dict[str, str]:
        """The cluster-autoscaler capacity annotations for these facts."""
        values = {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-disk": self.ephemeral_disk,
            "maxPods": None if self.max_pods is None else str(self.max_pods),
            "gpu-type": self.gpu_type,
            "gpu-count": None if self.gpu_count is None else str(self.gpu_count),
        }
        return {CAPACITY_ANNOTATION_PREFIX + k: v for k, v in values.items() if v is not None}

    def resources(self) -> dict[str, str]:
        """The same facts as a Node-style resource list (``status.capacity``)."""
        out = {"cpu": self.cpu, "memory": self.memory}
        if self.ephemeral_disk is not None:
            out["ephemeral-storage"] = self.ephemeral_disk
        if self.max_pods is not None:
            out["pods"] = str(self.max_pods)
        if self.gpu_type and self.gpu_count:
            out[self.gpu_type] = str(self.gpu_count)
        return out


@runtime_checkable
class CapacityHints(Protocol):
    """The optional adapter hook: the capacity of the pool's instance type, if known."""

    def capacity(self, *, infra: Obj) -> NodeCapacity | None: ...


def hints_of(adapter: object) -> CapacityHints | None:
    """The adapter as :class:`CapacityHints`, or None when it has no such hook."""
    return adapter if isinstance(adapter, CapacityHints) else None


async def publish_capacity(
    *, kube: KubeClient, kind: Kind, adapter: object, infra: Obj, status: Obj
) -> None:
    """Annotate ``infra`` and set ``status["capacity"]`` (written by the caller)."""
    hints = hints_of(adapter)
    capacity = hints.capacity(infra=infra) if hints is not None else None
    if capacity is None:
        return
    status["capacity"] = capacity.resources()
    meta = infra["metadata"]
    current: Mapping[str, str] = meta.get("annotations") or {}
    wanted = capacity.annotations()
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not changed:
        return
    updated = await kube.merge_patch(
        kind,
        namespace=meta["namespace"],
        name=meta["name"],
        patch={"metadata": {"annotations": changed}},
    )
    meta["annotations"] = updated["metadata"].get("annotations") or {}
    meta["resourceVersion"] = updated["metadata"]["resourceVersion"]
