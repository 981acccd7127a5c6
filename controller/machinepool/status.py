"""The summary a person reads: phase, counters and the summarising conditions.

Phase follows Cluster API's order (last match wins): ``Pending`` → ``Provisioning`` (bootstrap
ready, infrastructure not) → ``Provisioned`` (some Node matched) → ``Running`` (desired
replicas ready) / ``ScalingUp`` / ``ScalingDown`` (``Scaling`` under replicas-managed-by) →
``Deleting``. Counters are honest: ``readyReplicas`` and ``availableReplicas`` count Nodes
that are Ready (for ``minReadySeconds``), or the pool's Machines when it has them, never
copied from ``status.replicas``.

Conditions set here: ``ScalingUp``, ``ScalingDown``, ``Available``, ``Deleting`` and the
v1beta1 ``Ready`` summary; ``status.selector`` (for the scale subresource and
cluster-autoscaler) is the pool's Machine label selector.
"""

from __future__ import annotations

from controller.api.labels import CLUSTER_NAME_LABEL, POOL_NAME_LABEL, pool_label_value
from controller.machinepool.infrastructure import replicas_managed_externally
from controller.machinepool.scope import PoolScope
from controller.runtime import conditions
from controller.runtime.conditions import Cond


def update_status(scope: PoolScope) -> None:
    status = scope.status
    desired = scope.desired_replicas
    replicas = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if not scope.infra_machine_kind:
        # Without per-machine objects the contract does not say which instances run an old
        # template; like Cluster API, count them all as up to date. With Machines,
        # :mod:`.machines` counts those whose UpToDate condition is True.
        status["upToDateReplicas"] = replicas
    status["selector"] = (
        f"{CLUSTER_NAME_LABEL}={scope.pool.spec.cluster_name},"
        f"{POOL_NAME_LABEL}={pool_label_value(scope.name)}"
    )
    init = status.get("initialization") or {}
    infra_ready = bool(init.get("infrastructureProvisioned"))
    bootstrap_ready = bool(init.get("bootstrapDataSecretCreated"))

    phase = status.get("phase") or "Pending"
    if bootstrap_ready and not infra_ready:
        phase = "Provisioning"
    if status.get("nodeRefs"):
        phase = "Provisioned"
    managed = replicas_managed_externally(scope)
    if infra_ready and desired == ready and replicas == desired:
        phase = "Running"
    elif infra_ready and desired > ready:
        phase = "Scaling" if managed else "ScalingUp"
    elif infra_ready and desired < max(ready, replicas):
        phase = "Scaling" if managed else "ScalingDown"
    if scope.deleting:
        phase = "Deleting"
    status["phase"] = phase

    up = desired > replicas
    down = desired < replicas
    notes = "".join(f"; {note}" for note in scope.deleting_machines[:3])
    if len(scope.deleting_machines) > 3:
        notes += f"; and {len(scope.deleting_machines) - 3} more Machines being deleted"
    scope.condition(
        Cond(type="ScalingUp", status="True", reason="ScalingUp",
             message=f"scaling up from {replicas} to {desired} replicas")
        if up
        else Cond(type="ScalingUp", status="False", reason="NotScalingUp")
    )  # fmt: skip
    scope.condition(
        Cond(type="ScalingDown", status="True", reason="ScalingDown",
             message=f"scaling down from {replicas} to {desired} replicas{notes}")
        if down
        else Cond(type="ScalingDown", status="False", reason="NotScalingDown")
    )  # fmt: skip
    if available >= desired and infra_ready:
        scope.condition(Cond(type="Available", status="True", reason="Available"))
    else:
        scope.condition(
            Cond(
                type="Available",
                status="False",
                reason="NotAvailable" if infra_ready else "InfrastructureNotReady",
                message=f"{available} of {desired} replicas available",
            )
        )
    v1 = status.setdefault("deprecated", {}).setdefault("v1beta1", {})
    summary = conditions.summary_v1beta1(
        v1.get("conditions", []), types=["BootstrapReady", "InfrastructureReady", "ReplicasReady"]
    )
    v1["conditions"] = conditions.set_v1beta1(v1.get("conditions", []), summary)
