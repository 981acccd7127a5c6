"""What one reconcile of one MachinePool works on, and what it has decided so far.

A :class:`PoolScope` is built from cached objects at the start of a reconcile. Phases read
the typed ``pool`` and write their decisions into ``status`` (a working copy of the object's
status as a plain dict, so fields we do not model survive), ``spec_patch`` (the few spec
fields the controller owns: ``providerIDList``, ``replicas`` under replicas-managed-by), the
condition lists, Events to emit, and the soonest requeue. Nothing is written to the API
server until :mod:`.reconciler` compares the result with what was read: a reconcile that
learns nothing new writes nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.api.machinepool import MachinePool
from controller.runtime import conditions
from controller.runtime.conditions import Cond, Severity
from controller.runtime.store import Obj
from controller.workload.clusters import WorkloadCluster


@dataclass(frozen=True, slots=True)
class PendingEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class PoolScope:
    """One MachinePool's reconcile state; see the module docstring."""

    obj: Obj
    pool: MachinePool
    cluster: Obj | None = None
    infra: Obj | None = None
    workload: WorkloadCluster | None = None
    status: dict[str, Any] = field(default_factory=dict)
    spec_patch: dict[str, Any] = field(default_factory=dict)
    events: list[PendingEvent] = field(default_factory=list)
    requeue_after: float | None = None
    errors: list[str] = field(default_factory=list)
    #: One line per Machine being deleted (what its deletion waits for), for the conditions.
    deleting_machines: list[str] = field(default_factory=list)
    #: The infra pool's ``status.infrastructureMachineKind`` (MachinePool Machines opt-in).
    #: Kept here, not in ``status``: the MachinePool schema has no such field, so the API
    #: server would prune it and every reconcile would write it again.
    infra_machine_kind: str | None = None

    @classmethod
    def from_object(cls, obj: Obj) -> PoolScope:
        obj = copy.deepcopy(obj)
        return cls(
            obj=obj, pool=MachinePool.from_dict(obj), status=copy.deepcopy(obj.get("status", {}))
        )

    # ------------------------------------------------------------ identity

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def generation(self) -> int | None:
        value = self.obj["metadata"].get("generation")
        return int(value) if value is not None else None

    @property
    def deleting(self) -> bool:
        return bool(self.obj["metadata"].get("deletionTimestamp"))

    @property
    def desired_replicas(self) -> int:
        value = self.spec_patch.get("replicas", self.pool.spec.replicas)
        return 1 if value is None else int(value)

    @property
    def provider_ids(self) -> list[str]:
        ids = self.spec_patch.get("providerIDList", self.pool.spec.provider_id_list)
        return list(ids)

    # --------------------------------------------------------- decisions

    def condition(self, cond: Cond) -> None:
        """Set a v1beta2 condition on the working status."""
        self.status["conditions"] = conditions.set_v1beta2(
            self.status.get("conditions", []), cond, generation=self.generation
        )

    def v1beta1_condition(self, cond: Cond) -> None:
        v1 = self.status.setdefault("deprecated", {}).setdefault("v1beta1", {})
        v1["conditions"] = conditions.set_v1beta1(v1.get("conditions", []), cond)

    def not_ready(
        self, *, condition: str, v1beta1: str, reason: str, message: str, severity: Severity
    ) -> None:
        """A False v1beta2 ``condition`` and its v1beta1 twin; anything above Info is also a
        Warning Event, since a person must act on it."""
        self.condition(Cond(type=condition, status="False", reason=reason, message=message))
        self.v1beta1_condition(
            Cond(type=v1beta1, status="False", reason=reason, message=message, severity=severity)
        )
        if severity != "Info":
            self.event("Warning", reason, message)

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(PendingEvent(type=type_, reason=reason, message=message))

    def requeue(self, seconds: float) -> None:
        """Ask to be reconciled again within ``seconds`` (the soonest request wins)."""
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = max(seconds, 0.1)
