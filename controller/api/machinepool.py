"""``MachinePool`` (``cluster.x-k8s.io/v1beta2``): N machines of one shape, from an instance group.

Field names, types and limits follow Cluster API v1beta2
(``api/core/v1beta2/machinepool_types.go``), so a manifest written for Cluster API applies
unchanged and status written here reads the same.

Additions and differences, all because we run without admission webhooks:

- ``status.selector`` (a label selector string) exists so the scale subresource can report a
  selector, as autoscalers expect; Cluster API has no such field.
- ``spec.replicas`` defaults to 1 in the schema. Cluster API's webhook instead defaults an
  unset ``replicas`` to the cluster-autoscaler min-size annotation when both min- and
  max-size are present; a schema default cannot read annotations, so the reconciler clamps
  ``replicas`` into [min, max] once, before the pool's first successful reconcile, and says
  so in an Event (:mod:`controller.machinepool.autoscaler`).
- The template's ``version`` must be ``v``-prefixed semver and
  ``deletion.nodeDeletionTimeoutSeconds`` defaults to 10 (see :mod:`controller.api.machine`).
- CEL rules stand in for the webhook: ``clusterName`` is immutable and must equal
  ``template.spec.clusterName``; ``template.spec.taints`` is forbidden.
- The CRD carries the contract, provider and clusterctl labels
  (:mod:`controller.api.contract`), with ``move`` so an unadopted pool travels on
  ``clusterctl move``.
- ``providerIDList`` is a ``set`` list, so provider IDs are unique (see
  :mod:`controller.api.providerid` for why not ``atomic`` plus CEL).

Python parsing enforces the per-field limits (types, lengths, ranges, enums, patterns); the
cross-field CEL rules and uniqueness are enforced by the API server only.

Invariants: as for every model, unknown fields survive parsing and serializing.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import CONTRACT, CORE_PROVIDER, crd_labels
from controller.api.crdinfo import CrdOptions, PrinterColumn, ScaleSubresource
from controller.api.kinds import MACHINE_POOL, Kind
from controller.api.machine import ClusterName, Conditions, MachineTemplateSpec
from controller.api.meta import ObjectReference, V1Beta1Condition
from controller.api.providerid import ProviderIDList
from controller.api.schema import Bool, Int32, Int64, Rule, crd

__all__ = [
    "MachinePool",
    "MachinePoolDeprecatedStatus",
    "MachinePoolInitializationStatus",
    "MachinePoolPhase",
    "MachinePoolSpec",
    "MachinePoolStatus",
    "MachinePoolV1Beta1DeprecatedStatus",
    "StatusVersion",
]

MachinePoolPhase = Literal[
    "Pending",
    "Provisioning",
    "Provisioned",
    "Running",
    "ScalingUp",
    "ScalingDown",
    "Scaling",
    "Deleting",
    "Failed",
    "Unknown",
]


class MachinePoolSpec(ApiModel):
    """The desired state of a MachinePool."""

    model_config = ConfigDict(
        json_schema_extra=crd(
            rules=[
                Rule(
                    rule="self.template.spec.clusterName == self.clusterName",
                    message="must equal spec.clusterName",
                    field_path=".template.spec.clusterName",
                ),
                Rule(
                    rule="!has(self.template.spec.taints)",
                    message="taints are not supported on MachinePools",
                    field_path=".template.spec.taints",
                    reason="FieldValueForbidden",
                ),
            ]
        )
    )

    cluster_name: ClusterName
    """The name of the Cluster this pool belongs to."""
    replicas: Annotated[Int32, Field(ge=0)] | None = Field(
        default=None, json_schema_extra=crd(default=1)
    )
    """How many machines are wanted; the API server defaults it to 1."""
    template: MachineTemplateSpec
    """The machines to make."""
    provider_id_list: ProviderIDList = Field(default_factory=list, alias="providerIDList")
    """Provider IDs of the pool's instances, copied from the infrastructure pool."""
    failure_domains: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]],
        Field(max_length=100, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """The failure domains the pool should span (read by providers, not by the core controller)."""


class MachinePoolInitializationStatus(ApiModel):
    """Progress of a MachinePool's first provisioning; part of the Cluster API contract."""

    infrastructure_provisioned: Bool | None = None
    """True once the infrastructure pool reports itself provisioned."""
    bootstrap_data_secret_created: Bool | None = None
    """True once the bootstrap data Secret exists."""


class StatusVersion(ApiModel):
    """How many machines run one Kubernetes version."""

    version: Annotated[str, Field(min_length=1, max_length=256)]
    """A Kubernetes version."""
    replicas: Annotated[Int32, Field(ge=1)] | None = None
    """How many machines run it."""


class MachinePoolV1Beta1DeprecatedStatus(ApiModel):
    """Status fields kept for Cluster API v1beta1 clients (node-based counters and failures)."""

    conditions: list[V1Beta1Condition] = Field(default_factory=list)
    """v1beta1 conditions with severities (Ready, BootstrapReady, InfrastructureReady, ...)."""
    failure_reason: str | None = None
    """A terminal problem, as a token (deprecated)."""
    failure_message: Annotated[str, Field(min_length=1, max_length=10240)] | None = None
    """A terminal problem, in words (deprecated)."""
    ready_replicas: Int32 | None = None
    """Machines whose Node is Ready (v1beta1 meaning)."""
    available_replicas: Int32 | None = None
    """Machines whose Node has been Ready for minReadySeconds (v1beta1 meaning)."""
    unavailable_replicas: Int32 | None = None
    """Machines still missing for full capacity (v1beta1 meaning)."""


class MachinePoolDeprecatedStatus(ApiModel):
    """Deprecated status fields, grouped by the API version they come from."""

    v1beta1: MachinePoolV1Beta1DeprecatedStatus = Field(
        default_factory=MachinePoolV1Beta1DeprecatedStatus, alias="v1beta1"
    )
    """Fields of the v1beta1 status."""


class MachinePoolStatus(ApiModel):
    """The observed state of a MachinePool."""

    conditions: Conditions = Field(default_factory=list)
    """Observations of the pool's state (Available, MachinesReady, ScalingUp, Paused, ...)."""
    initialization: MachinePoolInitializationStatus = Field(
        default_factory=MachinePoolInitializationStatus
    )
    """Progress of the first provisioning."""
    node_refs: Annotated[
        list[ObjectReference], Field(max_length=10000, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """The Nodes of the pool's instances."""
    replicas: Int32 | None = None
    """The most recently observed number of instances (from the infrastructure pool)."""
    ready_replicas: Int32 | None = None
    """Machines whose Ready condition is true."""
    available_replicas: Int32 | None = None
    """Machines whose Available condition is true."""
    up_to_date_replicas: Int32 | None = None
    """Machines whose UpToDate condition is true."""
    versions: Annotated[
        list[StatusVersion],
        Field(
            min_length=1,
            max_length=100,
            json_schema_extra=crd(list_type="map", list_map_keys=["version"]),
        ),
    ] = Field(default_factory=list)
    """Kubernetes versions the pool's machines run, with counts."""
    phase: MachinePoolPhase | None = None
    """A one-word summary of the lifecycle; for people, not for programs."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The `metadata.generation` this status was computed from."""
    selector: Annotated[str, Field(max_length=4096)] | None = None
    """Label selector of the pool's Machines, as a string, for the scale subresource."""
    deprecated: MachinePoolDeprecatedStatus = Field(default_factory=MachinePoolDeprecatedStatus)
    """Deprecated fields."""


class MachinePool(ApiObject):
    """A MachinePool: N machines of one shape, made by a cloud instance group."""

    KIND: ClassVar[Kind] = MACHINE_POOL
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        # move: a pool its Cluster has not adopted yet (no owner reference) still travels.
        labels=crd_labels(provider=CORE_PROVIDER, versions=[CONTRACT], move=True),
        scale=ScaleSubresource(
            spec_replicas_path=".spec.replicas",
            status_replicas_path=".status.replicas",
            label_selector_path=".status.selector",
        ),
        printer_columns=(
            PrinterColumn("Cluster", ".spec.clusterName", "string", "Cluster"),
            PrinterColumn("Desired", ".spec.replicas", "integer", "Wanted number of machines"),
            PrinterColumn("Replicas", ".status.replicas", "integer", "Observed number of machines"),
            PrinterColumn("Ready", ".status.readyReplicas", "integer", "Machines that are ready"),
            PrinterColumn(
                "Available", ".status.availableReplicas", "integer", "Machines that are available"
            ),
            PrinterColumn("Phase", ".status.phase", "string", "Lifecycle phase"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
            PrinterColumn("Version", ".spec.template.spec.version", "string", "Kubernetes version"),
        ),
    )

    spec: MachinePoolSpec
    """The desired state of the pool."""
    status: MachinePoolStatus = Field(default_factory=MachinePoolStatus)
    """The observed state of the pool."""
