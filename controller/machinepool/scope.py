"""What one reconcile of one MachinePool works on, and what it has decided so far.

A :class:`PoolScope` is the MachinePool's :class:`~controller.runtime.scope.ObjectScope`
(the object as read, the working copy whose ``status`` phases write their decisions into,
conditions, Events, the soonest requeue, and the one commit) plus what the phases share:
the typed ``pool``, its Cluster, infra pool and workload cluster, and ``spec_patch`` (the
few spec fields the controller owns: ``providerIDList``, ``replicas`` under
replicas-managed-by), which :mod:`.reconciler` folds into the working spec before the
commit unless the pool is paused.

Writes of one reconcile (each only when something changed; the scope's commit sends at most
one request per subresource): the finalizer (and the reconcile stops there), the
cluster-autoscaler default of ``spec.replicas`` (:mod:`.autoscaler`, once in a pool's life)
and the Cluster label and owner reference (:mod:`.reconciler`) are written early, with a
resourceVersion precondition, because they replace what another writer may change at the
same time (``spec.replicas`` from ``kubectl scale``; the ``ownerReferences`` list whole)
and later phases read them; then the commit writes spec and status. A reconcile that
learns nothing new writes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.api.kinds import MACHINE_POOL
from controller.api.machinepool import MachinePool
from controller.runtime.conditions import Cond, Severity
from controller.runtime.events import EventRecorder
from controller.runtime.kube import KubeClient
from controller.runtime.scope import ObjectScope, PendingEvent
from controller.runtime.store import Obj
from controller.workload.clusters import WorkloadCluster

__all__ = ["PendingEvent", "PoolScope"]


class PoolScope(ObjectScope):
    """One MachinePool's reconcile state; see the module docstring."""

    def __init__(
        self, *, kube: KubeClient, obj: Obj, recorder: EventRecorder | None = None
    ) -> None:
        # The controller is the only writer of the status and of the spec fields it owns:
        # no precondition (the early writes above carry their own).
        super().__init__(kube=kube, resource=MACHINE_POOL, obj=obj, recorder=recorder)
        self.pool = MachinePool.from_dict(self.obj)
        self.cluster: Obj | None = None
        self.infra: Obj | None = None
        self.workload: WorkloadCluster | None = None
        self.spec_patch: dict[str, Any] = {}
        self.errors: list[str] = []
        #: One line per Machine being deleted (what its deletion waits for), for the conditions.
        self.deleting_machines: list[str] = []
        #: The infra pool's ``status.infrastructureMachineKind`` (MachinePool Machines
        #: opt-in). Kept here, not in ``status``: the MachinePool schema has no such field,
        #: so the API server would prune it and every reconcile would write it again.
        self.infra_machine_kind: str | None = None

    @classmethod
    def from_object(
        cls, obj: Obj, *, kube: KubeClient, recorder: EventRecorder | None = None
    ) -> PoolScope:
        return cls(kube=kube, obj=obj, recorder=recorder)

    def adopt(self, written: Obj) -> None:
        super().adopt(written)
        self.pool = MachinePool.from_dict(self.obj)

    async def commit_pool(self, *, succeeded: bool, paused: bool = False) -> None:
        """Fold ``spec_patch`` into the working spec (not while paused) and commit;
        ``observedGeneration`` only when the reconcile succeeded."""
        if not paused and self.spec_patch:
            self.obj.setdefault("spec", {}).update(copy.deepcopy(self.spec_patch))
        await self.commit(observed=succeeded)

    @property
    def desired_replicas(self) -> int:
        value = self.spec_patch.get("replicas", self.pool.spec.replicas)
        return 1 if value is None else int(value)

    @property
    def provider_ids(self) -> list[str]:
        ids = self.spec_patch.get("providerIDList", self.pool.spec.provider_id_list)
        return list(ids)

    # --------------------------------------------------------- decisions

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
