"""MachinePool Machines: one ``Machine`` per infra machine, and the counters they give.

When the infrastructure pool advertises ``status.infrastructureMachineKind``, its provider
keeps one infra machine per instance (owned by the infra pool). For each, this phase keeps a
``Machine`` of the same name in the pool's namespace: controller-owned by the MachinePool,
labelled ``cluster.x-k8s.io/pool-name`` and ``cluster.x-k8s.io/cluster-name``, with the
Machine finalizer, ``spec.providerID``, ``spec.infrastructureRef`` to the infra machine, the
pool's bootstrap data Secret, Kubernetes version and deletion timeouts. The Machine
controller (:mod:`controller.machines`) fills in its status and runs its deletion.

Deletions, each recorded in the ``machinepool.cluster.x-k8s.io/delete-reason`` annotation:

- a Machine deleted by someone else (a person, a health check) is accounted once: the
  annotation becomes ``Deleted`` and ``spec.replicas`` drops by one (not under
  replicas-managed-by, where the autoscaler owns the count, and not below the infra pool's
  ``spec.minSize``: at the minimum the machine is replaced, with a ``MachineReplaced``
  Event). The annotation is written first, so a crash in between can leave the count one too
  high (the pool then replaces the machine), never lowered twice;
- a Machine whose infra machine is gone (the instance vanished) is deleted (``InstanceGone``);
- a Machine a MachineHealthCheck marked for remediation (``HealthCheckSucceeded=False`` and
  ``OwnerRemediated=False``, :mod:`controller.healthcheck`) is deleted (``Remediation``):
  drained and removed by the Machine controller while ``spec.replicas`` stays, so the group
  launches its replacement at once;
- a deleted MachinePool deletes its Machines (``PoolDeleted``) and waits for them.

Counters: ``readyReplicas``, ``availableReplicas`` and ``upToDateReplicas`` count the
Machines (not being deleted) whose ``Ready``, ``Available`` and ``UpToDate`` conditions are
True.

Failure: API errors propagate to the reconciler (reported, retried); an infra machine kind
this process does not watch is reported in ``MachinesReady`` and skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.api.kinds import MACHINE, MACHINE_POOL
from controller.api.labels import (
    CLUSTER_NAME_LABEL,
    DELETE_REASON_ANNOTATION,
    MACHINE_FINALIZER,
    POOL_NAME_LABEL,
    WATCH_FILTER_LABEL,
    pool_label_value,
)
from controller.machinepool.infrastructure import (
    infrastructure_minimum,
    replicas_managed_externally,
)
from controller.machinepool.scope import PoolScope
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.deletion import delete_with_annotations
from controller.runtime.informer import Informer
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.store import CONTROLLER_OWNER_INDEX, Obj


class PoolMachines:
    """The caches this phase reads: Machines, and infra machines by ``(group, kind)``."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        machines: Informer,
        infra_machines: Mapping[tuple[str, str], Informer],
    ) -> None:
        self.kube = kube
        self.machines = machines
        self.infra_machines = dict(infra_machines)

    def of_pool(self, scope: PoolScope) -> dict[str, Obj]:
        uid = scope.obj["metadata"].get("uid")
        return {
            m["metadata"]["name"]: m
            for m in self.machines.store.by_index(name=CONTROLLER_OWNER_INDEX, value=scope.key)
            if any(r.get("uid") == uid for r in m["metadata"].get("ownerReferences") or [])
        }


def _true(obj: Obj, type_: str) -> bool:
    return conditions.is_true((obj.get("status") or {}).get("conditions"), type_)


def _reason(obj: Obj, type_: str) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("reason") or "")
    return ""


def _remediation_requested(machine: Obj) -> bool:
    """A health check marked the Machine unhealthy and asks its owner to remediate it."""
    found = {
        c.get("type"): c.get("status")
        for c in (machine.get("status") or {}).get("conditions") or []
        if c.get("type") in ("HealthCheckSucceeded", "OwnerRemediated")
    }
    return found == {"HealthCheckSucceeded": "False", "OwnerRemediated": "False"}


def _deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


async def reconcile_machines(*, scope: PoolScope, machines: PoolMachines) -> None:
    infra = scope.infra
    kind = scope.infra_machine_kind
    if infra is None or not kind:
        return
    group = str(infra.get("apiVersion", "")).split("/")[0]
    informer = machines.infra_machines.get((group, str(kind)))
    if informer is None:
        scope.condition(
            Cond(
                type="MachinesReady",
                status="Unknown",
                reason="InfrastructureMachineKindUnknown",
                message=f"this controller does not watch {kind}.{group}; "
                "Machines are not made for this pool",
            )
        )
        return
    infra_meta = infra["metadata"]
    infra_machines = {
        o["metadata"]["name"]: o
        for o in informer.store.by_index(
            name=CONTROLLER_OWNER_INDEX, value=f"{infra_meta['namespace']}/{infra_meta['name']}"
        )
        if any(r.get("uid") == infra_meta.get("uid")
               for r in o["metadata"].get("ownerReferences") or [])
    }  # fmt: skip
    owned = machines.of_pool(scope)

    for name, machine in owned.items():
        if _deleting(machine):
            scope.deleting_machines.append(_deletion_note(name, machine))
            if DELETE_REASON_ANNOTATION not in (machine["metadata"].get("annotations") or {}):
                await _account_deletion(scope=scope, kube=machines.kube, machine=machine)
        elif name not in infra_machines:
            await _delete(kube=machines.kube, machine=machine, reason="InstanceGone")
            scope.event("Normal", "MachineDeleted",
                        f"deleted Machine {name}: its instance is gone")  # fmt: skip
        elif _remediation_requested(machine):
            await _delete(kube=machines.kube, machine=machine, reason="Remediation")
            scope.event("Normal", "MachineRemediated",
                        f"deleting unhealthy Machine {name} "
                        f"({_reason(machine, 'HealthCheckSucceeded')}); it is drained and "
                        "replaced")  # fmt: skip

    secret = (
        scope.spec_patch.get("template", {})
        .get("spec", {})
        .get("bootstrap", {})
        .get("dataSecretName")
        or scope.pool.spec.template.spec.bootstrap.data_secret_name
    )
    if secret:
        for name, infra_machine in infra_machines.items():
            if name not in owned and not _deleting(infra_machine):
                await _create(scope=scope, kube=machines.kube, infra_machine=infra_machine,
                              secret=secret)  # fmt: skip

    live = [m for m in owned.values() if not _deleting(m)]
    scope.status["readyReplicas"] = sum(1 for m in live if _true(m, "Ready"))
    scope.status["availableReplicas"] = sum(1 for m in live if _true(m, "Available"))
    scope.status["upToDateReplicas"] = sum(1 for m in live if _true(m, "UpToDate"))
    v1 = scope.status.setdefault("deprecated", {}).setdefault("v1beta1", {})
    v1["readyReplicas"] = scope.status["readyReplicas"]
    v1["availableReplicas"] = scope.status["availableReplicas"]
    replicas = int(scope.status.get("replicas") or 0)
    v1["unavailableReplicas"] = max(replicas - scope.status["availableReplicas"], 0)


def _deletion_note(name: str, machine: Obj) -> str:
    for cond in (machine.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Deleting" and cond.get("status") == "True":
            return f"Machine {name} is being deleted ({cond.get('reason')}: {cond.get('message')})"
    return f"Machine {name} is being deleted"


async def delete_pool_machines(*, scope: PoolScope, machines: PoolMachines) -> list[str]:
    """Delete every Machine of a pool being deleted; the names still present."""
    owned = machines.of_pool(scope)
    for name, machine in owned.items():
        if _deleting(machine):
            scope.deleting_machines.append(_deletion_note(name, machine))
        else:
            await _delete(kube=machines.kube, machine=machine, reason="PoolDeleted")
    return sorted(owned)


async def _account_deletion(*, scope: PoolScope, kube: KubeClient, machine: Obj) -> None:
    meta = machine["metadata"]
    try:
        await kube.merge_patch(
            MACHINE, namespace=meta["namespace"], name=meta["name"],
            patch={"metadata": {"annotations": {DELETE_REASON_ANNOTATION: "Deleted"}}},
            resource_version=meta["resourceVersion"],
        )  # fmt: skip
    except ApiError as exc:
        if exc.not_found:
            return
        raise
    if replicas_managed_externally(scope):
        return
    desired = scope.desired_replicas
    floor = infrastructure_minimum(scope)
    if desired > 0 and desired - 1 < floor:
        # The group cannot shrink below its minimum: the instance is replaced instead (the
        # infra provider deletes it without shrinking), and the count stays in range.
        scope.event(
            "Normal",
            "MachineReplaced",
            f"Machine {meta['name']} was deleted while the pool is at its infrastructure "
            f"minimum size ({floor}): spec.replicas stays {desired} and the machine is replaced",
        )
        return
    if desired > 0:
        scope.spec_patch["replicas"] = desired - 1
    scope.event(
        "Normal",
        "MachineDeleted",
        f"Machine {meta['name']} was deleted: spec.replicas lowered to {max(desired - 1, 0)}",
    )


async def _delete(*, kube: KubeClient, machine: Obj, reason: str) -> None:
    await delete_with_annotations(
        kube=kube, resource=MACHINE, obj=machine, annotations={DELETE_REASON_ANNOTATION: reason}
    )


async def _create(*, scope: PoolScope, kube: KubeClient, infra_machine: Obj, secret: str) -> None:
    meta = infra_machine["metadata"]
    template = scope.pool.spec.template.spec
    deletion = template.deletion.to_dict()
    spec: dict[str, Any] = {
        "clusterName": scope.pool.spec.cluster_name,
        "bootstrap": {"dataSecretName": secret},
        "infrastructureRef": {
            "apiGroup": str(infra_machine.get("apiVersion", "")).split("/")[0],
            "kind": infra_machine.get("kind"),
            "name": meta["name"],
        },
    }
    provider_id = (infra_machine.get("spec") or {}).get("providerID")
    if provider_id:
        spec["providerID"] = provider_id
    zone = (infra_machine.get("spec") or {}).get("failureDomain")
    if zone:
        spec["failureDomain"] = zone
    if template.version:
        spec["version"] = template.version
    if template.min_ready_seconds is not None:
        spec["minReadySeconds"] = template.min_ready_seconds
    if deletion:
        spec["deletion"] = deletion
    body: Obj = {
        "metadata": {
            "name": meta["name"],
            "namespace": scope.namespace,
            "labels": {
                **(scope.pool.spec.template.metadata.labels or {}),
                POOL_NAME_LABEL: pool_label_value(scope.name),
                CLUSTER_NAME_LABEL: scope.pool.spec.cluster_name,
                **{
                    k: v
                    for k, v in (scope.obj["metadata"].get("labels") or {}).items()
                    if k == WATCH_FILTER_LABEL
                },
            },
            "annotations": dict(scope.pool.spec.template.metadata.annotations or {}),
            "finalizers": [MACHINE_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": MACHINE_POOL.api_version,
                    "kind": MACHINE_POOL.kind,
                    "name": scope.name,
                    "uid": scope.obj["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
    try:
        await kube.create(MACHINE, namespace=scope.namespace, body=body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        return
    scope.event("Normal", "MachineCreated", f"created Machine {meta['name']} for {provider_id}")


__all__ = ["PoolMachines", "delete_pool_machines", "reconcile_machines"]
