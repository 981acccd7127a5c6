"""The MachineHealthCheck reconciler: judge the selected Machines, mark the unhealthy ones.

For one health check key, reading only caches (Machines, Clusters, workload Nodes):

1. A health check that does not parse is a :class:`TerminalError` (the CRD makes it rare);
   one being deleted is left alone (it has no finalizer). A deleted one has its metric
   series removed.
2. Paused (``Cluster.spec.paused`` or the ``cluster.x-k8s.io/paused`` annotation on the
   health check): ``Paused=True`` and nothing else. A missing Cluster is reported in
   ``MachinesSelected`` (reason ``ClusterNotFound``).
3. Targets: the Machines of the namespace whose ``spec.clusterName`` is the health check's
   and whose labels match ``spec.selector``. None is reported (``MachinesSelected=False``,
   ``NoMachinesSelected``, the selector in the message), never an error.
4. Without a connection to the workload cluster nothing is judged:
   ``RemediationAllowed=Unknown`` (``WorkloadClusterNotConnected``); the Secret's arrival
   (a Node event) or the requeue brings it back.
5. Each target not being deleted is judged by :func:`.health.machine_health` (its own
   conditions against ``unhealthyMachineConditions``, its Node against
   ``unhealthyNodeConditions``). Machines being deleted count as neither healthy nor
   unhealthy (they are already on their way out).
6. :func:`.health.remediation_budget` decides short-circuiting. When too many are unhealthy:
   ``RemediationAllowed=False`` (``TooManyUnhealthy``) and a Warning Event
   ``RemediationRestricted`` on each transition into that state; unhealthy Machines get only
   ``HealthCheckSucceeded=False``. Otherwise each unhealthy Machine also gets
   ``OwnerRemediated=False`` (``WaitingForRemediation``), counted once in the remediation
   metric with a Normal Event ``MachineMarkedUnhealthy``: its owner deletes and replaces it.
   A healthy Machine gets ``HealthCheckSucceeded=True`` and loses an ``OwnerRemediated``
   condition it may carry. With ``remediation.templateRef`` (external remediation, not
   supported) Machines are only marked.
7. Status (``expectedMachines``, ``currentHealthy``, ``remediationsAllowed``, ``targets``,
   conditions, ``observedGeneration``) and Machine conditions are written by one
   :class:`~controller.runtime.scope.ObjectScope` commit each, only when they change (Events
   go with the health check's commit); Machine patches carry a resourceVersion
   precondition, so another writer's newer conditions are never overwritten (a conflict is
   dropped: the newer version's watch event reconciles the health check again).
8. The result requeues for exactly the moment the earliest running timeout expires.

Failure: API errors propagate (the controller retries with backoff); a malformed threshold is
``RemediationAllowed=False`` with reason ``InvalidRemediationTrigger`` and no remediation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pydantic
import structlog

from controller.api.healthcheck import MachineHealthCheck
from controller.api.kinds import MACHINE, MACHINE_HEALTH_CHECK
from controller.api.meta import ConditionStatus as Status
from controller.healthcheck.health import (
    ConditionCheck,
    Verdict,
    machine_health,
    remediation_budget,
)
from controller.healthcheck.metrics import HealthCheckMetrics
from controller.healthcheck.selector import describe, matches
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.controller import Result, TerminalError
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer
from controller.runtime.kube import KubeClient
from controller.runtime.scope import ObjectScope, Outcome
from controller.runtime.store import Obj
from controller.workload.clusters import ClusterKey, WorkloadCluster, WorkloadClusters

__all__ = ["MACHINE_CLUSTER_INDEX", "HealthCheckReconciler", "machine_cluster_key"]

#: Index on the Machine cache: ``<namespace>/<spec.clusterName>``.
MACHINE_CLUSTER_INDEX = "healthcheck-cluster"
DISCONNECTED_RETRY = 15.0
HEALTH_CONDITION = "HealthCheckSucceeded"
REMEDIATION_CONDITION = "OwnerRemediated"

_log = structlog.get_logger(__name__)


def machine_cluster_key(obj: Obj) -> list[str]:
    name = (obj.get("spec") or {}).get("clusterName")
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [f"{namespace}/{name}"] if name else []


class HealthCheckReconciler:
    """Reconciles MachineHealthChecks; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        health_checks: Informer,
        machines: Informer,
        clusters: Informer,
        workloads: WorkloadClusters,
        metrics: HealthCheckMetrics,
        recorder: EventRecorder | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.health_checks = health_checks
        self.machines = machines
        self.clusters = clusters
        self.workloads = workloads
        self.metrics = metrics
        self.recorder = recorder
        self.now = now
        machines.store.ensure_index(name=MACHINE_CLUSTER_INDEX, func=machine_cluster_key)

    async def reconcile(self, key: str) -> Result:
        namespace, _, name = key.partition("/")
        cached = self.health_checks.store.get(key)
        if cached is None:
            self.metrics.forget(namespace=namespace, name=name)
            return Result()
        if cached["metadata"].get("deletionTimestamp"):
            return Result()
        try:
            mhc = MachineHealthCheck.from_dict(cached)
        except pydantic.ValidationError as exc:
            raise TerminalError(f"MachineHealthCheck {key} does not parse: {exc}") from exc
        # The health check is the only writer of its status: no precondition.
        scope = ObjectScope(kube=self.kube, resource=MACHINE_HEALTH_CHECK, obj=cached,
                            recorder=self.recorder)  # fmt: skip
        status = scope.status
        set_ = _setter(scope)
        cluster_name = mhc.spec.cluster_name
        cluster = self.clusters.store.get(f"{namespace}/{cluster_name}")

        if scope.paused(cluster=cluster):
            set_("Paused", "True", "Paused", "the Cluster or the health check is paused")
            await scope.commit()
            return Result()
        set_("Paused", "False", "NotPaused", "")

        targets = sorted(
            (
                m
                for m in self.machines.store.by_index(
                    name=MACHINE_CLUSTER_INDEX, value=f"{namespace}/{cluster_name}"
                )
                if matches(selector=mhc.spec.selector, labels=m["metadata"].get("labels") or {})
            ),
            key=lambda m: str(m["metadata"]["name"]),
        )
        status["targets"] = [m["metadata"]["name"] for m in targets]
        status["expectedMachines"] = len(targets)
        if cluster is None:
            set_("MachinesSelected", "False", "ClusterNotFound",
                 f"Cluster {namespace}/{cluster_name} not found")  # fmt: skip
        elif not targets:
            set_("MachinesSelected", "False", "NoMachinesSelected",
                 f"selector {describe(mhc.spec.selector)} matches no Machine of Cluster "
                 f"{namespace}/{cluster_name}")  # fmt: skip
        else:
            set_("MachinesSelected", "True", "MachinesSelected", "")

        workload = self.workloads.get(ClusterKey(namespace, cluster_name))
        if workload is None:
            set_("RemediationAllowed", "Unknown", "WorkloadClusterNotConnected",
                 f"cannot read the Nodes of Cluster {namespace}/{cluster_name}")  # fmt: skip
            await scope.commit()
            return Result(requeue_after=DISCONNECTED_RETRY)

        now = self.now()
        checks = mhc.spec.checks
        startup = checks.node_startup_timeout_seconds
        node_checks = [
            ConditionCheck(type=c.type, status=c.status, timeout=float(c.timeout_seconds))
            for c in checks.unhealthy_node_conditions
        ]
        machine_checks = [
            ConditionCheck(type=c.type, status=c.status, timeout=float(c.timeout_seconds))
            for c in checks.unhealthy_machine_conditions
        ]
        verdicts: list[tuple[Obj, Verdict]] = []
        for machine in targets:
            if machine["metadata"].get("deletionTimestamp"):
                continue
            verdict = machine_health(
                machine=machine,
                node=_node(machine, workload),
                startup_timeout=600.0 if startup is None else float(startup),
                node_checks=node_checks,
                machine_checks=machine_checks,
                now=now,
            )
            verdicts.append((machine, verdict))
        unhealthy = [(m, v) for m, v in verdicts if not v.healthy]
        healthy_count = len(verdicts) - len(unhealthy)
        status["currentHealthy"] = healthy_count

        remediate = False
        try:
            budget = remediation_budget(
                trigger=mhc.spec.remediation.trigger_if,
                expected=len(targets),
                unhealthy=len(unhealthy),
            )
        except ValueError as exc:
            set_("RemediationAllowed", "False", "InvalidRemediationTrigger", str(exc))
            status["remediationsAllowed"] = 0
            short_circuited = True
        else:
            status["remediationsAllowed"] = budget.remaining
            short_circuited = not budget.allowed
            if budget.allowed:
                message = budget.message
                if mhc.spec.remediation.template_ref is not None:
                    message += (
                        "; external remediation (templateRef) is not supported: "
                        "Machines are only marked"
                    )
                else:
                    remediate = True
                set_("RemediationAllowed", "True", "RemediationAllowed", message)
            else:
                was = conditions.get(status.get("conditions") or [], "RemediationAllowed")
                set_("RemediationAllowed", "False", "TooManyUnhealthy", budget.message)
                if (was or {}).get("reason") != "TooManyUnhealthy":
                    scope.event("Warning", "RemediationRestricted",
                                f"remediation short-circuited: {budget.message}")  # fmt: skip

        for machine, verdict in verdicts:
            await self._mark(scope, machine, verdict, remediate=remediate)
        self.metrics.observe(
            namespace=namespace,
            name=name,
            healthy=healthy_count,
            unhealthy=len(unhealthy),
            short_circuited=short_circuited,
        )
        await scope.commit(observed=True)
        waits = [v.recheck_in for _, v in verdicts if v.recheck_in is not None]
        return Result(requeue_after=min(waits)) if waits else Result()

    # ------------------------------------------------------------- machines

    async def _mark(
        self, mhc: ObjectScope, machine: Obj, verdict: Verdict, *, remediate: bool
    ) -> None:
        # The Machine's conditions are shared with the Machine controller (a merge patch
        # replaces the list whole): the precondition makes a write from a stale cache a
        # conflict, dropped by the scope; the Machine's next watch event brings us back.
        scope = ObjectScope(kube=self.kube, resource=MACHINE, obj=machine, precondition=True)
        set_ = _setter(scope)
        newly_marked = False
        if verdict.healthy:
            set_(HEALTH_CONDITION, "True", verdict.reason, verdict.message)
            scope.remove_condition(REMEDIATION_CONDITION)
        else:
            set_(HEALTH_CONDITION, "False", verdict.reason, verdict.message)
            current = conditions.get(scope.status.get("conditions") or [], REMEDIATION_CONDITION)
            if remediate and current is None:
                set_(REMEDIATION_CONDITION, "False", "WaitingForRemediation",
                     "the Machine's owner is asked to delete and replace it")  # fmt: skip
                newly_marked = True
        if await scope.commit() is not Outcome.WRITTEN:
            return
        if newly_marked:
            self.metrics.remediated(namespace=mhc.namespace, name=mhc.name)
            meta = machine["metadata"]
            message = f"Machine {meta['name']} marked for remediation: {verdict.message}"
            mhc.event("Normal", "MachineMarkedUnhealthy", message)
            _log.info(
                "machine marked for remediation",
                machine=f"{meta['namespace']}/{meta['name']}",
                reason=verdict.reason,
            )


def _node(machine: Obj, workload: WorkloadCluster) -> Obj | None:
    provider_id = (machine.get("spec") or {}).get("providerID")
    if provider_id:
        node = workload.node_for_provider_id(str(provider_id))
        if node is not None:
            return node
    ref = (machine.get("status") or {}).get("nodeRef") or {}
    return workload.nodes.store.get(str(ref["name"])) if ref.get("name") else None


def _setter(scope: ObjectScope) -> Callable[[str, Status, str, str], None]:
    def set_(type_: str, value: Status, reason: str, message: str) -> None:
        scope.condition(Cond(type=type_, status=value, reason=reason, message=message))

    return set_
