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
   conditions, ``observedGeneration``) and Machine conditions are written with merge patches
   only when they change; Machine patches carry a resourceVersion precondition, so another
   writer's newer conditions are never overwritten (a conflict is dropped: the newer
   version's watch event reconciles the health check again).
8. The result requeues for exactly the moment the earliest running timeout expires.

Failure: API errors propagate (the controller retries with backoff); a malformed threshold is
``RemediationAllowed=False`` with reason ``InvalidRemediationTrigger`` and no remediation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic
import structlog

from controller.api.healthcheck import MachineHealthCheck
from controller.api.kinds import MACHINE, MACHINE_HEALTH_CHECK
from controller.api.labels import PAUSED_ANNOTATION
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
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.patch import merge_patch
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
        obj = copy.deepcopy(cached)
        status: dict[str, Any] = copy.deepcopy(obj.get("status") or {})
        generation = obj["metadata"].get("generation")
        set_ = _setter(status, generation)
        cluster_name = mhc.spec.cluster_name
        cluster = self.clusters.store.get(f"{namespace}/{cluster_name}")

        paused = PAUSED_ANNOTATION in (obj["metadata"].get("annotations") or {}) or bool(
            ((cluster or {}).get("spec") or {}).get("paused")
        )
        if paused:
            set_("Paused", "True", "Paused", "the Cluster or the health check is paused")
            await self._write_status(obj, status)
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
            await self._write_status(obj, status)
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
                    self._event(obj, "Warning", "RemediationRestricted",
                                f"remediation short-circuited: {budget.message}")  # fmt: skip

        for machine, verdict in verdicts:
            await self._mark(obj, machine, verdict, remediate=remediate)
        self.metrics.observe(
            namespace=namespace,
            name=name,
            healthy=healthy_count,
            unhealthy=len(unhealthy),
            short_circuited=short_circuited,
        )
        if generation is not None:
            status["observedGeneration"] = int(generation)
        await self._write_status(obj, status)
        waits = [v.recheck_in for _, v in verdicts if v.recheck_in is not None]
        return Result(requeue_after=min(waits)) if waits else Result()

    # ------------------------------------------------------------- machines

    async def _mark(self, mhc: Obj, machine: Obj, verdict: Verdict, *, remediate: bool) -> None:
        meta = machine["metadata"]
        status = copy.deepcopy(machine.get("status") or {})
        set_ = _setter(status, meta.get("generation"))
        newly_marked = False
        if verdict.healthy:
            set_(HEALTH_CONDITION, "True", verdict.reason, verdict.message)
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c.get("type") != REMEDIATION_CONDITION
            ]
        else:
            set_(HEALTH_CONDITION, "False", verdict.reason, verdict.message)
            current = conditions.get(status.get("conditions") or [], REMEDIATION_CONDITION)
            if remediate and current is None:
                set_(REMEDIATION_CONDITION, "False", "WaitingForRemediation",
                     "the Machine's owner is asked to delete and replace it")  # fmt: skip
                newly_marked = True
        patch = merge_patch(machine.get("status") or {}, status)
        if not patch:
            return
        try:
            await self.kube.merge_patch(
                MACHINE, namespace=meta["namespace"], name=meta["name"], subresource="status",
                patch={"status": patch}, resource_version=meta["resourceVersion"],
            )  # fmt: skip
        except ApiError as exc:
            # Gone, or our cache is behind: the Machine's next watch event brings us back.
            if exc.not_found or exc.conflict:
                return
            raise
        if newly_marked:
            mhc_meta = mhc["metadata"]
            self.metrics.remediated(namespace=mhc_meta["namespace"], name=mhc_meta["name"])
            message = f"Machine {meta['name']} marked for remediation: {verdict.message}"
            self._event(mhc, "Normal", "MachineMarkedUnhealthy", message)
            _log.info(
                "machine marked for remediation",
                machine=f"{meta['namespace']}/{meta['name']}",
                reason=verdict.reason,
            )

    # ------------------------------------------------------------- writes

    async def _write_status(self, obj: Obj, status: Obj) -> None:
        patch = merge_patch(obj.get("status") or {}, status)
        if not patch:
            return
        meta = obj["metadata"]
        try:
            await self.kube.merge_patch(
                MACHINE_HEALTH_CHECK, namespace=meta["namespace"], name=meta["name"],
                subresource="status", patch={"status": patch},
            )  # fmt: skip
        except ApiError as exc:
            if not exc.not_found:
                raise

    def _event(self, obj: Obj, type_: Literal["Normal", "Warning"], reason: str, msg: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type=type_, reason=reason, message=msg)


def _node(machine: Obj, workload: WorkloadCluster) -> Obj | None:
    provider_id = (machine.get("spec") or {}).get("providerID")
    if provider_id:
        node = workload.node_for_provider_id(str(provider_id))
        if node is not None:
            return node
    ref = (machine.get("status") or {}).get("nodeRef") or {}
    return workload.nodes.store.get(str(ref["name"])) if ref.get("name") else None


def _setter(status: Obj, generation: object) -> Callable[[str, Status, str, str], None]:
    def set_(type_: str, value: Status, reason: str, message: str) -> None:
        status["conditions"] = conditions.set_v1beta2(
            status.get("conditions") or [],
            Cond(type=type_, status=value, reason=reason, message=message),
            generation=int(generation) if isinstance(generation, int) else None,
        )

    return set_
