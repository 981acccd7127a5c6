"""``InMemoryMachinePool`` and ``InMemoryMachine`` (``infrastructure.cluster.x-k8s.io/v1alpha1``).

The simulator's infrastructure kinds. They follow the Cluster API v1beta2 contracts for
infrastructure machine pools and machines, so Cluster API's own controllers can drive them:

- pool: ``spec.providerIDList``, ``status.replicas``, ``status.initialization.provisioned``
  (with the v1beta1-contract ``status.ready`` kept in step), ``status.infrastructureMachineKind``
  (opt-in to MachinePool Machines), ``status.conditions``, and the deprecated
  ``status.failureReason``/``failureMessage``;
- machine: ``spec.providerID``, ``status.initialization.provisioned`` / ``status.ready``.

The CRDs carry the contract labels (``cluster.x-k8s.io/v1beta2: v1alpha1`` maps the contract
version to ours, ``cluster.x-k8s.io/provider: infrastructure-inmemory``).

The pool's ``spec.template`` is a small launch template for the simulated instance group: it
changes what new instances look like and how long they take, and can make launches fail.

Invariants: as for every model, unknown fields survive parsing and serializing. The CRD
enforces ``minSize <= maxSize`` and unique provider IDs; Python parsing enforces only the
per-field limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import crd_labels
from controller.api.crdinfo import CrdOptions, PrinterColumn
from controller.api.kinds import IN_MEMORY_MACHINE, IN_MEMORY_MACHINE_POOL, Kind
from controller.api.machine import Conditions, MachineAddress
from controller.api.providerid import ProviderIDList
from controller.api.schema import (
    Bool,
    Int64,
    IntOrString,
    NonNegativeInt32,
    Rule,
    SchemaExtra,
    Time,
    crd,
)

__all__ = [
    "CONTRACT_LABELS",
    "DeletePolicy",
    "InMemoryInstance",
    "InMemoryInstanceTemplate",
    "InMemoryMachine",
    "InMemoryMachineInitializationStatus",
    "InMemoryMachinePool",
    "InMemoryMachinePoolInitializationStatus",
    "InMemoryMachinePoolSpec",
    "InMemoryMachinePoolStatus",
    "InMemoryMachinePoolStrategy",
    "InMemoryMachineSpec",
    "InMemoryMachineStatus",
    "RollingUpdate",
]

#: Labels every in-memory CRD carries: the Cluster API contract version map, the provider
#: name, clusterctl's discovery label, and ``move`` so unadopted objects travel too
#: (:mod:`controller.api.contract`).
CONTRACT_LABELS: Mapping[str, str] = crd_labels(
    provider="infrastructure-inmemory", versions=["v1alpha1"], move=True
)

DeletePolicy = Literal["Oldest", "Newest", "Random"]


_PERCENT_OR_COUNT = Rule(
    rule="type(self) == int ? self >= 0 : self.matches('^[0-9]{1,9}%$')",
    message="must be a non-negative integer or a percentage such as '25%'",
)
_IntOrPercent = Annotated[
    IntOrString, SchemaExtra({"maxLength": 10, **crd(rules=[_PERCENT_OR_COUNT])})
]


class InMemoryInstanceTemplate(ApiModel):
    """The launch template of the simulated instance group."""

    version: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """Template version; instances launched from another version are out of date."""
    instance_type: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """Instance type label, e.g. `small`."""
    boot_delay_seconds: NonNegativeInt32 | None = None
    """Seconds from launch until an instance is running, ±20% jitter (default 1)."""
    ready_delay_seconds: NonNegativeInt32 | None = None
    """Seconds from the Node's registration until it is Ready (default 1)."""
    failure_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    """Probability (0..1) that a launch fails (default 0)."""
    zones: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63)]],
        Field(max_length=32, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Zones to spread instances over, round robin; empty means a single unnamed zone."""


class RollingUpdate(ApiModel):
    """Limits for replacing out-of-date instances."""

    max_surge: _IntOrPercent | None = None
    """Instances that may be added above the wanted count during an update (count or percent)."""
    max_unavailable: _IntOrPercent | None = None
    """Instances that may be missing below the wanted count during an update (count or percent)."""


class InMemoryMachinePoolStrategy(ApiModel):
    """How out-of-date instances are replaced."""

    rolling_update: RollingUpdate | None = None
    """Rolling replacement limits; without it out-of-date instances are left alone."""


class InMemoryMachinePoolSpec(ApiModel):
    """The desired state of a simulated instance group."""

    model_config = ConfigDict(
        json_schema_extra=crd(
            rules=[
                Rule(
                    rule="!has(self.minSize) || !has(self.maxSize) || self.minSize <= self.maxSize",
                    message="minSize must not exceed maxSize",
                    field_path=".minSize",
                )
            ]
        )
    )

    provider_id_list: ProviderIDList = Field(default_factory=list, alias="providerIDList")
    """Provider IDs of the group's instances; written by the controller (contract field)."""
    min_size: NonNegativeInt32 | None = None
    """Smallest size the group may have (default 0)."""
    max_size: NonNegativeInt32 | None = None
    """Largest size the group may have (default: no limit)."""
    template: InMemoryInstanceTemplate = Field(default_factory=InMemoryInstanceTemplate)
    """What new instances look like."""
    delete_policy: DeletePolicy | None = Field(
        default=None, json_schema_extra=crd(default="Oldest")
    )
    """Which instances go first on scale-in, after those marked for deletion."""
    strategy: InMemoryMachinePoolStrategy | None = None
    """How out-of-date instances are replaced."""


class InMemoryInstance(ApiModel):
    """One simulated instance, as the group reports it."""

    instance_id: Annotated[str, Field(min_length=1, max_length=253)] = Field(alias="instanceID")
    """The instance's ID within the simulator."""
    provider_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, alias="providerID"
    )
    """The instance's provider ID, as its Node reports it."""
    zone: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """The zone the instance runs in."""
    state: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """The instance's lifecycle state in the simulator (e.g. Pending, Running, Terminating)."""
    version: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The template version the instance was launched from."""
    ready: Bool | None = None
    """True when the instance is running and ready."""
    launched_at: Time | None = None
    """When the instance was launched."""


class InMemoryMachinePoolInitializationStatus(ApiModel):
    """Progress of the group's first provisioning; part of the Cluster API contract."""

    provisioned: Bool | None = None
    """True once the group exists and reports its instances."""


class InMemoryMachinePoolStatus(ApiModel):
    """The observed state of a simulated instance group."""

    ready: Bool | None = None
    """v1beta1-contract readiness; kept equal to `initialization.provisioned`."""
    initialization: InMemoryMachinePoolInitializationStatus = Field(
        default_factory=InMemoryMachinePoolInitializationStatus
    )
    """Progress of the first provisioning (contract field)."""
    replicas: NonNegativeInt32 | None = None
    """Most recently observed number of instances (contract field)."""
    infrastructure_machine_kind: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """Kind of the per-instance objects (`InMemoryMachine`): opts in to MachinePool Machines."""
    group_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Name of the simulated group, recorded before it is created and kept for the pool's
    life."""
    capacity: Annotated[dict[str, Annotated[str, Field(max_length=64)]], Field(max_length=32)] = (
        Field(default_factory=dict)
    )
    """What one Node of the pool's instance type offers (`cpu`, `memory`, `ephemeral-storage`,
    `pods`, ...), for cluster-autoscaler's scale from zero."""
    instances: Annotated[
        list[InMemoryInstance],
        Field(
            max_length=10000,
            json_schema_extra=crd(list_type="map", list_map_keys=["instanceID"]),
        ),
    ] = Field(default_factory=list)
    """Every instance of the group."""
    conditions: Conditions = Field(default_factory=list)
    """Observations of the group's state (Ready, Paused, ...)."""
    failure_reason: Annotated[str, Field(max_length=256)] | None = None
    """A terminal problem, as a token (v1beta1 contract, deprecated)."""
    failure_message: Annotated[str, Field(max_length=10240)] | None = None
    """A terminal problem, in words (v1beta1 contract, deprecated)."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The `metadata.generation` this status was computed from."""


class InMemoryMachinePool(ApiObject):
    """A simulated cloud instance group for development, demos, tests and benchmarks."""

    KIND: ClassVar[Kind] = IN_MEMORY_MACHINE_POOL
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=CONTRACT_LABELS,
        printer_columns=(
            PrinterColumn(
                "Cluster",
                ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",
                "string",
                "Cluster",
            ),
            PrinterColumn("Replicas", ".status.replicas", "integer", "Observed instances"),
            PrinterColumn(
                "Provisioned",
                ".status.initialization.provisioned",
                "boolean",
                "Group provisioned",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
        ),
    )

    spec: InMemoryMachinePoolSpec = Field(default_factory=InMemoryMachinePoolSpec)
    """The desired state of the group."""
    status: InMemoryMachinePoolStatus = Field(default_factory=InMemoryMachinePoolStatus)
    """The observed state of the group."""


class InMemoryMachineSpec(ApiModel):
    """The desired state of one simulated machine."""

    provider_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, alias="providerID"
    )
    """The instance's provider ID (contract field)."""
    instance_id: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, alias="instanceID"
    )
    """The instance's ID within the simulator."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The zone the instance runs in."""


class InMemoryMachineInitializationStatus(ApiModel):
    """Progress of the machine's first provisioning; part of the Cluster API contract."""

    provisioned: Bool | None = None
    """True once the instance is running."""


class InMemoryMachineStatus(ApiModel):
    """The observed state of one simulated machine."""

    ready: Bool | None = None
    """v1beta1-contract readiness; kept equal to `initialization.provisioned`."""
    initialization: InMemoryMachineInitializationStatus = Field(
        default_factory=InMemoryMachineInitializationStatus
    )
    """Progress of the first provisioning (contract field)."""
    addresses: Annotated[
        list[MachineAddress], Field(max_length=256, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """The instance's addresses."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The zone the instance runs in."""
    conditions: Conditions = Field(default_factory=list)
    """Observations of the machine's state (Ready, Paused, ...)."""


class InMemoryMachine(ApiObject):
    """One simulated instance of an InMemoryMachinePool (a MachinePool Machine's infra object)."""

    KIND: ClassVar[Kind] = IN_MEMORY_MACHINE
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=CONTRACT_LABELS,
        printer_columns=(
            PrinterColumn(
                "Cluster",
                ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",
                "string",
                "Cluster",
            ),
            PrinterColumn("Provider ID", ".spec.providerID", "string", "Provider ID"),
            PrinterColumn(
                "Provisioned",
                ".status.initialization.provisioned",
                "boolean",
                "Instance provisioned",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
        ),
    )

    spec: InMemoryMachineSpec = Field(default_factory=InMemoryMachineSpec)
    """The desired state of the machine."""
    status: InMemoryMachineStatus = Field(default_factory=InMemoryMachineStatus)
    """The observed state of the machine."""
