"""Infrastructure: read the infrastructure pool's contract into the MachinePool.

The infra object (an InMemoryMachinePool, an AWSMachinePool, ...) is made controller-owned by
the MachinePool and labelled with the cluster name. Its contract fields are copied:
``spec.providerIDList`` → the pool's ``spec.providerIDList``, ``status.replicas`` → the pool's
``status.replicas``; readiness is ``status.initialization.provisioned`` (the v1beta2
contract) falling back to ``status.ready`` (v1beta1) — Cluster API itself only reads the
latter. A provider-reported ``failureReason``/``failureMessage`` becomes the
``InfrastructureReady=False`` reason and message (and the deprecated v1beta1 fields), and is
cleared when the provider clears it.

With ``cluster.x-k8s.io/replicas-managed-by`` set, an external autoscaler owns the group's
size: the provider's ``status.replicas`` is copied back to ``spec.replicas`` instead of ours
being pushed.

The infra pool's ``spec.minSize``, where its kind has one, is the floor below which a deleted
Machine does not lower ``spec.replicas`` (:func:`infrastructure_minimum`).

Failure: a missing infra object, a kind that is not served or is not a Cluster API
infrastructure kind (:mod:`.contract`: ``InvalidInfrastructureRef``), or an infra object
controlled by another object (``AlreadyOwned``: nothing is written to it and nothing is read
from it) sets ``InfrastructureReady=False`` with a reason and a Warning Event, and leaves
``providerIDList`` as it was. A refused reference is looked at again when the pool or the
infra object changes, and once a minute.
"""

from __future__ import annotations

from controller.api.labels import REPLICAS_MANAGED_BY_ANNOTATION
from controller.machinepool.contract import Role
from controller.machinepool.external import ExternalObjects, OwnedByAnotherError
from controller.machinepool.scope import PoolScope
from controller.runtime.conditions import Cond

#: How soon a refused reference is looked at again without an event (a kind not watched).
REFUSED_RECHECK = 60.0


def replicas_managed_externally(scope: PoolScope) -> bool:
    value = (scope.obj["metadata"].get("annotations") or {}).get(REPLICAS_MANAGED_BY_ANNOTATION)
    return value is not None and value.lower() != "false"


def infrastructure_minimum(scope: PoolScope) -> int:
    """The smallest size the infra pool allows: its ``spec.minSize`` (AWSMachinePool,
    InMemoryMachinePool) when that is a non-negative integer, else 0. Kinds without such a
    field (Azure, GCP) have no floor the MachinePool must respect."""
    spec = ((scope.infra or {}).get("spec")) or {}
    value = spec.get("minSize")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


async def reconcile_infrastructure(*, scope: PoolScope, external: ExternalObjects) -> bool:
    """Returns True when the infrastructure reports itself provisioned."""
    ref = scope.pool.spec.template.spec.infrastructure_ref
    init = scope.status.setdefault("initialization", {})
    try:
        infra = await external.get(namespace=scope.namespace, ref=ref, role=Role.INFRASTRUCTURE)
    except LookupError as exc:  # not served, or not an infrastructure contract kind
        scope.requeue(REFUSED_RECHECK)
        return _not_ready(scope, reason="InvalidInfrastructureRef", message=str(exc), warn=True)
    if infra is None:
        was = bool(init.get("infrastructureProvisioned"))
        message = f"{ref.kind} {scope.namespace}/{ref.name} not found"
        if was:
            message += " (it was deleted after being provisioned)"
        return _not_ready(scope, reason="InfrastructureNotFound", message=message, warn=True)
    try:
        await external.ensure_owned(
            obj=infra, owner=scope.obj, cluster_name=scope.pool.spec.cluster_name, ref=ref,
            role=Role.INFRASTRUCTURE,
        )  # fmt: skip
    except OwnedByAnotherError as exc:
        scope.requeue(REFUSED_RECHECK)
        return _not_ready(scope, reason="AlreadyOwned", message=str(exc), warn=True)
    scope.infra = infra
    status = infra.get("status") or {}
    spec = infra.get("spec") or {}
    provisioned = (status.get("initialization") or {}).get("provisioned")
    ready = bool(provisioned) if provisioned is not None else bool(status.get("ready"))
    v1 = scope.status.setdefault("deprecated", {}).setdefault("v1beta1", {})
    failure_reason = status.get("failureReason")
    failure_message = status.get("failureMessage")
    if failure_reason or failure_message:
        v1["failureReason"] = failure_reason or "InfrastructureFailure"
        v1["failureMessage"] = (
            f"Failure detected from referenced resource {infra.get('apiVersion')}/{ref.kind} "
            f"with name {ref.name!r}: {failure_message or failure_reason}"
        )
        init["infrastructureProvisioned"] = ready
        _not_ready(
            scope,
            reason=str(failure_reason or "InfrastructureFailure"),
            message=str(failure_message or failure_reason),
            warn=True,
        )
    else:
        v1.pop("failureReason", None)
        v1.pop("failureMessage", None)
    init["infrastructureProvisioned"] = ready
    if "replicas" in status:
        scope.status["replicas"] = int(status["replicas"])
    kind = status.get("infrastructureMachineKind")
    if kind:
        scope.infra_machine_kind = str(kind)
    if not ready:
        if not (failure_reason or failure_message):
            _not_ready(
                scope,
                reason="WaitingForInfrastructure",
                message=f"waiting for {ref.kind} {ref.name} to be provisioned",
                warn=False,
            )
        return False
    if not (failure_reason or failure_message):
        scope.condition(Cond(type="InfrastructureReady", status="True", reason="Ready"))
        scope.v1beta1_condition(Cond(type="InfrastructureReady", status="True", reason=""))
    ids = [str(i) for i in spec.get("providerIDList") or []]
    replicas = int(status.get("replicas") or 0)
    # An empty list while the provider still reports replicas is a provider mid-update:
    # keep ours rather than drop every Node reference.
    if (ids or replicas == 0) and ids != scope.pool.spec.provider_id_list:
        scope.spec_patch["providerIDList"] = ids
    external_size = replicas_managed_externally(scope) and "replicas" in status
    if external_size and replicas != scope.pool.spec.replicas:
        scope.spec_patch["replicas"] = replicas
        scope.event(
            "Normal",
            "ReplicasManagedExternally",
            f"spec.replicas set to {replicas} from the provider ({REPLICAS_MANAGED_BY_ANNOTATION})",
        )
    return True


def _not_ready(scope: PoolScope, *, reason: str, message: str, warn: bool) -> bool:
    scope.status.setdefault("initialization", {}).setdefault("infrastructureProvisioned", False)
    scope.not_ready(
        condition="InfrastructureReady",
        v1beta1="InfrastructureReady",
        reason=reason,
        message=message,
        severity="Error" if warn else "Info",
    )
    return False
