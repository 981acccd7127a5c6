"""The adapter protocol: what differs per infra pool kind, between its object and a cloud group.

The infrastructure reconciler (:mod:`controller.infrastructure.reconciler`) is generic; each
cloud subpackage gives it one :class:`PoolAdapter` per infra pool kind (how the object's spec
becomes a :class:`~controller.providers.base.GroupSpec`, its name, its bounds) and an
:class:`~controller.providers.base.InstanceGroupProvider` (the cloud calls).

Every hook a cloud *may* offer is a member of the protocol, so mypy checks each adapter
against it: an adapter that has nothing to say inherits the neutral default from
:class:`PoolAdapterDefaults` (no capacity hints, no extra status fields, no remembered
annotations, no bootstrap Secret watch). The reconciler never probes an adapter with
``getattr``/``hasattr``.

Invariants of the hooks (the reconciler relies on them):

- ``group_name`` is stable for the object's life (:mod:`controller.providers.naming`);
- ``owner_tags`` are a subset of the tags ``group_spec`` applies (see
  :mod:`controller.providers.base` for what they prove);
- ``capacity`` returns ``None`` for an instance type it does not know: nothing is published
  and nothing is removed;
- ``remembered_annotations`` returns only the annotation keys the adapter owns (an empty
  mapping writes nothing);
- the hooks do no I/O and raise only :class:`~controller.providers.base.PermanentError`
  (bad configuration), which the reconciler reports in the ``Ready`` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.api.kinds import Kind
from controller.providers.base import GroupSpec, GroupStatus
from controller.runtime.store import Obj

__all__ = [
    "CAPACITY_ANNOTATION_PREFIX",
    "NodeCapacity",
    "PoolAdapter",
    "PoolAdapterDefaults",
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


class PoolAdapter(Protocol):
    """What differs per infra kind; see the module docstring."""

    @property
    def kind(self) -> Kind:
        """The infra pool kind this adapter reconciles."""
        ...

    @property
    def finalizer(self) -> str: ...

    @property
    def machine_kind(self) -> Kind | None:
        """The per-instance infra machine kind (``status.infrastructureMachineKind``), or
        ``None`` when the provider makes no infra machines."""
        ...

    @property
    def watches_bootstrap_data(self) -> bool:
        """True when ``group_spec`` reads the MachinePool's bootstrap data Secret: a change
        of that Secret then re-queues the pool."""
        ...

    def group_name(self, *, infra: Obj) -> str:
        """The cloud group's name: stable for the object's life, unique in the account."""
        ...

    def owner_tags(self, *, infra: Obj, cluster: str | None) -> dict[str, str]:
        """The tags proving a group is this pool's (``cluster`` when known)."""
        ...

    def group_spec(self, *, infra: Obj, pool: Obj) -> GroupSpec: ...

    def delete_policy(self, *, infra: Obj) -> str: ...

    def size_bounds(self, *, infra: Obj) -> tuple[int, int | None]: ...

    def rolling_update(self, *, infra: Obj) -> tuple[int | str | None, int | str | None] | None:
        """``(maxSurge, maxUnavailable)`` when out-of-date instances are to be replaced,
        ``None`` to leave them alone."""
        ...

    def capacity(self, *, infra: Obj) -> NodeCapacity | None:
        """What a Node of the pool's instance type offers (cluster-autoscaler's scale from
        zero), or ``None`` when unknown."""
        ...

    def status_fields(self, *, infra: Obj, group: GroupStatus) -> Obj:
        """Provider-specific fields merged into the infra pool's status (AWS: the launch
        template); empty for none."""
        ...

    def remembered_annotations(self, *, infra: Obj, applied: bool) -> dict[str, str]:
        """Annotations recording on the infra pool what ``ensure_group`` applies, written
        before the call (``applied=False``) and after it succeeded (``applied=True``)."""
        ...


class PoolAdapterDefaults:
    """The neutral answer of every optional hook of :class:`PoolAdapter`; an adapter
    inherits it and overrides what its cloud offers."""

    #: Set by adapters whose ``group_spec`` reads the bootstrap data Secret.
    watches_bootstrap_data: bool = False

    def capacity(self, *, infra: Obj) -> NodeCapacity | None:
        return None

    def status_fields(self, *, infra: Obj, group: GroupStatus) -> Obj:
        return {}

    def remembered_annotations(self, *, infra: Obj, applied: bool) -> dict[str, str]:
        return {}
