"""``Machine`` (``cluster.x-k8s.io/v1beta2``) and the machine spec a MachinePool template carries.

Field names, types and limits follow Cluster API v1beta2 (``api/core/v1beta2/machine_types.go``),
so a Machine written by Cluster API parses here and one written here is valid for Cluster API.

Differences from upstream, all because we run without admission webhooks:

- ``bootstrap`` must name a ``configRef`` or a ``dataSecretName`` (CEL rule instead of the
  webhook).
- ``clusterName`` cannot change once set (CEL transition rule instead of the webhook).
- ``version`` must be a ``v``-prefixed semantic version (CEL). Cluster API's webhook adds a
  missing ``v``; a schema cannot rewrite a value, so ``1.35.0`` is rejected with a message
  saying so instead.
- ``deletion.nodeDeletionTimeoutSeconds`` defaults to 10 in the schema (``deletion`` itself
  defaults to ``{}`` so the nested default always applies).

Invariants: as for every model, unknown fields survive parsing and serializing;
``status.nodeInfo`` keeps every key the kubelet reports.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import CORE_CRD_LABELS
from controller.api.crdinfo import CrdOptions, PrinterColumn
from controller.api.kinds import MACHINE, Kind
from controller.api.meta import Condition, ContractVersionedObjectReference, V1Beta1Condition
from controller.api.schema import (
    CONDITION_TYPE_PATTERN,
    DNS1123_SUBDOMAIN_PATTERN,
    Bool,
    Int64,
    NonNegativeInt32,
    Rule,
    SchemaExtra,
    Time,
    crd,
)

__all__ = [
    "Bootstrap",
    "ClusterName",
    "Conditions",
    "KubernetesVersion",
    "Machine",
    "MachineAddress",
    "MachineDeletionSpec",
    "MachineDeletionStatus",
    "MachineDeprecatedStatus",
    "MachineInitializationStatus",
    "MachineNodeReference",
    "MachinePhase",
    "MachineReadinessGate",
    "MachineSpec",
    "MachineStatus",
    "MachineTaint",
    "MachineTemplateSpec",
    "MachineV1Beta1DeprecatedStatus",
    "NodeSystemInfo",
    "TemplateMetadata",
]

ClusterName = Annotated[
    str,
    Field(min_length=1, max_length=63),
    SchemaExtra(crd(rules=[Rule(rule="self == oldSelf", message="is immutable")])),
]
"""The name of the owning Cluster: 1..63 characters, immutable once set."""

SEMVER_PATTERN = (
    r"^v(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z-]+([.][0-9A-Za-z-]+)*)?([+][0-9A-Za-z-]+([.][0-9A-Za-z-]+)*)?$"
)
"""A ``v``-prefixed semantic version (``v1.35.0``, ``v1.36.0-rc.1+build.5``)."""

KubernetesVersion = Annotated[
    str,
    Field(min_length=1, max_length=256),
    SchemaExtra(
        crd(
            rules=[
                Rule(
                    rule=f"self.matches('{SEMVER_PATTERN}')",
                    message="must be a semantic version with a leading v, such as v1.35.0",
                )
            ]
        )
    ),
]
"""A Kubernetes version; the API server checks the ``v``-prefixed semver form (CEL)."""

Conditions = Annotated[
    list[Condition],
    Field(max_length=32),
    SchemaExtra(crd(list_type="map", list_map_keys=["type"])),
]
"""A ``conditions`` list: at most 32, keyed by ``type``."""

MachinePhase = Literal[
    "Pending",
    "Provisioning",
    "Provisioned",
    "Running",
    "Updating",
    "Deleting",
    "Deleted",
    "Failed",
    "Unknown",
]


class TemplateMetadata(ApiModel):
    """Labels and annotations given to objects made from a template."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Labels to put on every object made from the template."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations to put on every object made from the template."""


class Bootstrap(ApiModel):
    """Where a machine's bootstrap data comes from: a bootstrap config object or a Secret."""

    model_config = ConfigDict(
        json_schema_extra=crd(
            rules=[
                Rule(
                    rule="has(self.configRef) || has(self.dataSecretName)",
                    message="one of configRef or dataSecretName must be set",
                )
            ]
        )
    )

    config_ref: ContractVersionedObjectReference | None = None
    """The bootstrap provider's config object (e.g. a KubeadmConfig) that makes the data Secret."""
    data_secret_name: Annotated[str, Field(min_length=0, max_length=253)] | None = None
    """Name of the Secret holding the bootstrap data; set by the user or copied from configRef."""


class MachineDeletionSpec(ApiModel):
    """How long deletion may wait for each step; 0 means wait forever."""

    node_drain_timeout_seconds: NonNegativeInt32 | None = None
    """Longest time to drain the node; unset or 0 means no limit."""
    node_volume_detach_timeout_seconds: NonNegativeInt32 | None = None
    """Longest time to wait for volumes to detach; unset or 0 means no limit."""
    node_deletion_timeout_seconds: NonNegativeInt32 | None = Field(
        default=None, json_schema_extra=crd(default=10)
    )
    """Longest time to try deleting the Node; the API server defaults it to 10 seconds."""


class MachineReadinessGate(ApiModel):
    """An extra condition that must hold before the machine counts as ready."""

    condition_type: Annotated[
        str, Field(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)
    ]
    """The condition type to look for in `status.conditions`."""
    polarity: Literal["Positive", "Negative"] | None = None
    """Whether True (Positive, the default) or False (Negative) is the healthy status."""


class MachineTaint(ApiModel):
    """A taint the machine puts on its Node."""

    key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=317,
            pattern=(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?"
                r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
            ),
        ),
    ]
    """Taint key."""
    value: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=63,
                pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
            ),
        ]
        | None
    ) = None
    """Taint value."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    """Taint effect."""
    propagation: Literal["Always", "OnInitialization"]
    """Whether the taint is kept on the Node (Always) or only set when it joins."""


class MachineSpec(ApiModel):
    """The desired state of a machine, also the `spec.template.spec` of a MachinePool."""

    cluster_name: ClusterName
    """The name of the Cluster this machine belongs to."""
    bootstrap: Bootstrap
    """Where the machine's bootstrap data comes from."""
    infrastructure_ref: ContractVersionedObjectReference
    """The infrastructure object: an infra machine, or for a MachinePool the infra machine pool."""
    version: KubernetesVersion | None = None
    """The Kubernetes version the kubelet should run, e.g. `v1.35.0`."""
    provider_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, alias="providerID"
    )
    """The provider's ID of the instance, matching the Node's `spec.providerID`."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The failure domain (zone) to place the machine in."""
    min_ready_seconds: NonNegativeInt32 | None = None
    """Seconds a Node must be ready before the machine counts as available (default 0)."""
    readiness_gates: Annotated[
        list[MachineReadinessGate],
        Field(
            min_length=1,
            max_length=32,
            json_schema_extra=crd(list_type="map", list_map_keys=["conditionType"]),
        ),
    ] = Field(default_factory=list)
    """Extra conditions that must be true before the machine counts as ready."""
    deletion: MachineDeletionSpec = Field(
        default_factory=MachineDeletionSpec, json_schema_extra=crd(default={})
    )
    """Timeouts of the deletion steps (defaulted to an empty object, so its defaults apply)."""
    taints: Annotated[
        list[MachineTaint],
        Field(
            min_length=1,
            max_length=64,
            json_schema_extra=crd(list_type="map", list_map_keys=["key", "effect"]),
        ),
    ] = Field(default_factory=list)
    """Taints to put on the machine's Node."""


class MachineTemplateSpec(ApiModel):
    """A machine template: metadata and spec of the machines to make."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    """Labels and annotations for the machines."""
    spec: MachineSpec
    """The spec of the machines."""


class MachineInitializationStatus(ApiModel):
    """Progress of a machine's first provisioning; part of the Cluster API contract."""

    infrastructure_provisioned: Bool | None = None
    """True once the infrastructure provider reports the machine provisioned."""
    bootstrap_data_secret_created: Bool | None = None
    """True once the bootstrap data Secret exists."""


class MachineNodeReference(ApiModel):
    """The Node running on the machine, by name."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)]
    """Name of the Node."""


class NodeSystemInfo(ApiModel):
    """What the kubelet reports about the host; every key is kept, known or not."""

    model_config = ConfigDict(json_schema_extra=crd(preserve_unknown_fields=True))

    machine_id: str | None = Field(default=None, alias="machineID")
    """Machine ID reported by the node."""
    system_uuid: str | None = Field(default=None, alias="systemUUID")
    """System UUID reported by the node."""
    boot_id: str | None = Field(default=None, alias="bootID")
    """Boot ID reported by the node."""
    kernel_version: str | None = None
    """Kernel version (`uname -r`)."""
    os_image: str | None = None
    """OS image, e.g. `Debian GNU/Linux 12`."""
    container_runtime_version: str | None = None
    """Container runtime and version, e.g. `containerd://2.0.0`."""
    kubelet_version: str | None = None
    """Kubelet version, e.g. `v1.35.0`."""
    operating_system: str | None = None
    """Operating system, e.g. `linux`."""
    architecture: str | None = None
    """CPU architecture, e.g. `amd64`."""


class MachineAddress(ApiModel):
    """One address of a machine."""

    type: Literal["Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"]
    """Kind of address."""
    address: Annotated[str, Field(min_length=1, max_length=256)]
    """The address."""


class MachineDeletionStatus(ApiModel):
    """When each waiting step of a machine's deletion started."""

    node_drain_start_time: Time | None = None
    """When draining the node started."""
    wait_for_node_volume_detach_start_time: Time | None = None
    """When waiting for volumes to detach started."""
    wait_for_pre_drain_hook_start_time: Time | None = None
    """When waiting for pre-drain hooks started."""
    wait_for_pre_terminate_hook_start_time: Time | None = None
    """When waiting for pre-terminate hooks started."""


class MachineV1Beta1DeprecatedStatus(ApiModel):
    """Status fields kept for Cluster API v1beta1 clients."""

    conditions: list[V1Beta1Condition] = Field(default_factory=list)
    """v1beta1 conditions, with severities."""
    failure_reason: str | None = None
    """A terminal problem, as a token (deprecated)."""
    failure_message: Annotated[str, Field(min_length=1, max_length=10240)] | None = None
    """A terminal problem, in words (deprecated)."""


class MachineDeprecatedStatus(ApiModel):
    """Deprecated status fields, grouped by the API version they come from."""

    v1beta1: MachineV1Beta1DeprecatedStatus = Field(
        default_factory=MachineV1Beta1DeprecatedStatus, alias="v1beta1"
    )
    """Fields of the v1beta1 status."""


class MachineStatus(ApiModel):
    """The observed state of a machine."""

    conditions: Conditions = Field(default_factory=list)
    """Observations of the machine's state (Ready, Available, UpToDate, ...)."""
    initialization: MachineInitializationStatus = Field(default_factory=MachineInitializationStatus)
    """Progress of the first provisioning."""
    node_ref: MachineNodeReference | None = None
    """The machine's Node, once it exists."""
    node_info: NodeSystemInfo | None = None
    """What the kubelet reports about the host."""
    last_updated: Time | None = None
    """When the phase last changed."""
    addresses: Annotated[
        list[MachineAddress], Field(max_length=256, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """The machine's addresses, as the infrastructure reports them."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The failure domain the machine runs in."""
    phase: MachinePhase | None = None
    """A one-word summary of the lifecycle; for people, not for programs."""
    certificates_expiry_date: Time | None = None
    """When the machine's certificates expire (control plane machines)."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The `metadata.generation` this status was computed from."""
    deletion: MachineDeletionStatus | None = None
    """Progress of the deletion, once it started."""
    deprecated: MachineDeprecatedStatus = Field(default_factory=MachineDeprecatedStatus)
    """Deprecated fields."""


class Machine(ApiObject):
    """A Machine: one host that joins a cluster as a Node."""

    KIND: ClassVar[Kind] = MACHINE
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=CORE_CRD_LABELS,
        printer_columns=(
            PrinterColumn("Cluster", ".spec.clusterName", "string", "Cluster"),
            PrinterColumn("Node Name", ".status.nodeRef.name", "string", "Node of the machine"),
            PrinterColumn("Provider ID", ".spec.providerID", "string", "Provider ID", 10),
            PrinterColumn(
                "Ready",
                '.status.conditions[?(@.type=="Ready")].status',
                "string",
                "Machine passes all readiness checks",
            ),
            PrinterColumn(
                "Available",
                '.status.conditions[?(@.type=="Available")].status',
                "string",
                "Machine has been ready for at least minReadySeconds",
            ),
            PrinterColumn("Phase", ".status.phase", "string", "Lifecycle phase"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
            PrinterColumn("Version", ".spec.version", "string", "Kubernetes version"),
        ),
    )

    spec: MachineSpec
    """The desired state of the machine."""
    status: MachineStatus = Field(default_factory=MachineStatus)
    """The observed state of the machine."""
