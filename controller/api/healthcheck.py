"""``MachineHealthCheck`` (``cluster.x-k8s.io/v1beta2``): which Machines to watch, when they
count as unhealthy, and when remediation must stop.

Field names, types and limits follow Cluster API v1beta2 (``machinehealthcheck_types.go``), so
a manifest written for Cluster API applies unchanged. Supported: ``clusterName``,
``selector``, ``checks.nodeStartupTimeoutSeconds`` (0 disables the startup check),
``checks.unhealthyNodeConditions``, ``checks.unhealthyMachineConditions`` (the same, against the
Machine's own ``status.conditions``), ``remediation.triggerIf`` (``unhealthyLessThanOrEqualTo``,
an int or a percentage; ``unhealthyInRange`` ``"[a-b]"``, which wins when both are set).
``remediation.templateRef`` (external remediation) is accepted and kept, and reported as
unsupported in the ``RemediationAllowed`` condition's message; machines are then only marked.

CEL rules stand in for Cluster API's webhook, with messages a person can act on:

- ``clusterName`` is immutable; the selector must not be empty (an empty selector would
  select every Machine of the cluster);
- ``unhealthyLessThanOrEqualTo`` is a non-negative int or ``"<0..100>%"``;
- ``unhealthyInRange`` is ``"[a-b]"`` with ``a <= b``;
- an ``unhealthyMachineConditions`` type is a condition type (a qualified name) and not one of
  the conditions the health check and its remediation themselves drive (``Ready``,
  ``Available``, ``HealthCheckSucceeded``, ``OwnerRemediated``, ``ExternallyRemediated``), as
  upstream's schema rule.

Difference from upstream: a ``nodeStartupTimeoutSeconds`` below 30 is accepted (upstream's
webhook refuses it); the schema default stays 600 seconds as upstream.

Invariants: as for every model, unknown fields survive parsing and serializing.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import CORE_CRD_LABELS
from controller.api.crdinfo import CrdOptions, PrinterColumn
from controller.api.kinds import MACHINE_HEALTH_CHECK, Kind
from controller.api.machine import ClusterName, Conditions
from controller.api.schema import (
    CONDITION_TYPE_PATTERN,
    Int64,
    IntOrString,
    NonNegativeInt32,
    Rule,
    SchemaExtra,
    crd,
)

__all__ = [
    "FORBIDDEN_MACHINE_CONDITION_TYPES",
    "LabelSelector",
    "LabelSelectorRequirement",
    "MachineHealthCheck",
    "MachineHealthCheckChecks",
    "MachineHealthCheckRemediation",
    "MachineHealthCheckRemediationTemplateReference",
    "MachineHealthCheckSpec",
    "MachineHealthCheckStatus",
    "MachineHealthCheckTriggerIf",
    "UnhealthyMachineCondition",
    "UnhealthyNodeCondition",
]

_LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
_LabelValue = Annotated[str, Field(max_length=63)]


class LabelSelectorRequirement(ApiModel):
    """One ``matchExpressions`` entry of a ``metav1.LabelSelector``."""

    key: _LabelKey
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key's value relates to ``values``."""
    values: Annotated[
        list[_LabelValue], Field(max_length=256, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """Values for ``In`` and ``NotIn``; empty for ``Exists`` and ``DoesNotExist``."""


class LabelSelector(ApiModel):
    """A ``metav1.LabelSelector``: every ``matchLabels`` pair and every expression must hold."""

    model_config = ConfigDict(json_schema_extra=crd(map_type="atomic"))

    match_labels: dict[str, _LabelValue] = Field(default_factory=dict)
    """Labels the object must carry with exactly these values."""
    match_expressions: Annotated[
        list[LabelSelectorRequirement],
        Field(max_length=64, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Further requirements on label values."""


class UnhealthyNodeCondition(ApiModel):
    """A Node condition that makes its Machine unhealthy once it has held for a while."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """The Node condition type, e.g. `Ready`."""
    status: Literal["True", "False", "Unknown"]
    """The condition status that counts as unhealthy."""
    timeout_seconds: NonNegativeInt32
    """How long the condition must hold before the Machine counts as unhealthy."""


#: Machine condition types ``unhealthyMachineConditions`` may not name: the ones the health
#: check and remediation drive themselves (a check on them would feed back on itself).
FORBIDDEN_MACHINE_CONDITION_TYPES = (
    "Ready",
    "Available",
    "HealthCheckSucceeded",
    "OwnerRemediated",
    "ExternallyRemediated",
)


class UnhealthyMachineCondition(ApiModel):
    """A condition of the Machine itself that makes it unhealthy once it has held for a while."""

    type: Annotated[
        str,
        Field(
            min_length=1,
            max_length=316,
            pattern=CONDITION_TYPE_PATTERN,
            json_schema_extra=crd(
                rules=[
                    Rule(
                        rule="!(self in ["
                        + ", ".join(f"'{t}'" for t in FORBIDDEN_MACHINE_CONDITION_TYPES)
                        + "])",
                        message="must not be one of "
                        + ", ".join(FORBIDDEN_MACHINE_CONDITION_TYPES)
                        + ": the health check and remediation set these themselves",
                    )
                ]
            ),
        ),
    ]
    """The Machine condition type, e.g. `InfrastructureReady` or one a provider sets."""
    status: Literal["True", "False", "Unknown"]
    """The condition status that counts as unhealthy."""
    timeout_seconds: NonNegativeInt32
    """How long the condition must hold before the Machine counts as unhealthy."""


class MachineHealthCheckChecks(ApiModel):
    """What makes a Machine unhealthy."""

    node_startup_timeout_seconds: NonNegativeInt32 | None = Field(
        default=None, json_schema_extra=crd(default=600)
    )
    """How long a Machine may run without a Node; 0 disables the check (default 600)."""
    unhealthy_node_conditions: Annotated[
        list[UnhealthyNodeCondition],
        Field(min_length=1, max_length=100, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Node conditions that, held past their timeout, make the Machine unhealthy."""
    unhealthy_machine_conditions: Annotated[
        list[UnhealthyMachineCondition],
        Field(min_length=1, max_length=100, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Machine conditions that, held past their timeout, make the Machine unhealthy."""


class MachineHealthCheckTriggerIf(ApiModel):
    """When remediation may happen: too many unhealthy Machines short-circuit it."""

    unhealthy_less_than_or_equal_to: (
        Annotated[
            IntOrString,
            SchemaExtra(
                crd(
                    rules=[
                        Rule(
                            rule="type(self) == int ? self >= 0 : "
                            "self.matches('^(100|[1-9]?[0-9])%$')",
                            message="must be a non-negative number of machines or a percentage "
                            "from 0% to 100%, e.g. 2 or 40%",
                        )
                    ]
                )
            ),
        ]
        | None
    ) = None
    """Remediate only while at most this many (or this share) of the Machines are unhealthy."""
    unhealthy_in_range: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=32,
                pattern=r"^\[[0-9]+-[0-9]+\]$",
                json_schema_extra=crd(
                    rules=[
                        Rule(
                            rule="int(self.findAll('[0-9]+')[0]) <= int(self.findAll('[0-9]+')[1])",
                            message="must be a range [a-b] with a <= b, e.g. [1-3]",
                        )
                    ]
                ),
            ),
        ]
        | None
    ) = None
    """Remediate only while the number of unhealthy Machines is within ``[a-b]``; wins over
    ``unhealthyLessThanOrEqualTo``."""


class MachineHealthCheckRemediationTemplateReference(ApiModel):
    """An external remediation template (accepted and kept; not supported here)."""

    kind: Annotated[str, Field(min_length=1, max_length=63)]
    """Kind of the template."""
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the template."""
    api_version: Annotated[str, Field(min_length=1, max_length=317)]
    """API version of the template."""


class MachineHealthCheckRemediation(ApiModel):
    """How and when unhealthy Machines are remediated."""

    trigger_if: MachineHealthCheckTriggerIf | None = None
    """Conditions under which remediation may happen at all."""
    template_ref: MachineHealthCheckRemediationTemplateReference | None = None
    """External remediation (not supported: Machines are marked, not remediated)."""


class MachineHealthCheckSpec(ApiModel):
    """The desired behaviour of a MachineHealthCheck."""

    cluster_name: ClusterName
    """The Cluster whose Machines are checked."""
    selector: Annotated[
        LabelSelector,
        Field(
            json_schema_extra=crd(
                rules=[
                    Rule(
                        rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                        "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                        message="must not be empty: an empty selector would check every Machine "
                        "of the cluster",
                    )
                ]
            )
        ),
    ]
    """Which Machines of the cluster to check, by label."""
    checks: MachineHealthCheckChecks = Field(default_factory=MachineHealthCheckChecks)
    """What makes a Machine unhealthy."""
    remediation: MachineHealthCheckRemediation = Field(
        default_factory=MachineHealthCheckRemediation
    )
    """When and how unhealthy Machines are remediated."""


class MachineHealthCheckStatus(ApiModel):
    """What the health check last saw."""

    conditions: Conditions = Field(default_factory=list)
    """RemediationAllowed, Paused, MachinesSelected."""
    expected_machines: NonNegativeInt32 | None = None
    """How many Machines the selector matches."""
    current_healthy: NonNegativeInt32 | None = None
    """How many of them are healthy."""
    remediations_allowed: NonNegativeInt32 | None = None
    """How many more Machines may be remediated before short-circuiting."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The ``metadata.generation`` this status was computed from."""
    targets: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=253)]],
        Field(max_length=10000, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Names of the Machines the selector matches."""


class MachineHealthCheck(ApiObject):
    """A health check over a cluster's Machines; see the module docstring."""

    KIND: ClassVar[Kind] = MACHINE_HEALTH_CHECK
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=CORE_CRD_LABELS,
        printer_columns=(
            PrinterColumn("Cluster", ".spec.clusterName", "string", "Cluster"),
            PrinterColumn("Expected", ".status.expectedMachines", "integer", "Machines selected"),
            PrinterColumn("Healthy", ".status.currentHealthy", "integer", "Healthy Machines"),
            PrinterColumn(
                "Remediation Allowed",
                '.status.conditions[?(@.type=="RemediationAllowed")].status',
                "string",
                "Remediation is not short-circuited",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
        ),
    )

    spec: MachineHealthCheckSpec
    """The desired behaviour."""
    status: MachineHealthCheckStatus = Field(default_factory=MachineHealthCheckStatus)
    """What the health check last saw."""
