"""``AWSMachinePool`` and ``AWSMachine`` (``infrastructure.cluster.x-k8s.io/v1beta2``).

The kinds of cluster-api-provider-aws (CAPA), with CAPA's field names for the subset this
controller acts on, so a CAPA manifest applies unchanged:

- pool spec: ``minSize``, ``maxSize``, ``availabilityZones``, ``subnets``, ``additionalTags``,
  ``awsLaunchTemplate`` (``instanceType``, ``ami.id``, ``iamInstanceProfile``, ``sshKeyName``,
  ``rootVolume.{size,type}``, ``additionalSecurityGroups``), ``capacityRebalance``,
  ``mixedInstancesPolicy``, ``suspendProcesses``, ``lifecycleHooks``, ``refreshPreferences``,
  ``defaultCooldown``, ``defaultInstanceWarmup``; plus our ``strategy`` (how out-of-date
  instances are replaced: our own surge-and-replace, or AWS instance refresh);
- pool status: the Cluster API contract (``ready``, ``initialization.provisioned``,
  ``replicas``, ``infrastructureMachineKind``, ``conditions``, the deprecated failure fields),
  ``instances``, ``launchTemplateID``, ``launchTemplateVersion``, ``asgStatus``;
- machine: ``spec.providerID``, ``spec.instanceID``, status ``ready``,
  ``initialization.provisioned``, ``addresses``, ``failureDomain``, ``conditions``.

Invariants: fields CAPA has and we do not act on (``spotMarketOptions``, ``ignition``,
``nonRootVolumes``, ...) are preserved: the spec and the launch template keep unknown fields
(``x-kubernetes-preserve-unknown-fields``), so nothing a CAPA user wrote is pruned. The CRD
enforces ``minSize <= maxSize`` and unique provider IDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import crd_labels
from controller.api.crdinfo import CrdOptions, PrinterColumn
from controller.api.inmemory import RollingUpdate
from controller.api.kinds import AWS_MACHINE, AWS_MACHINE_POOL, Kind
from controller.api.machine import Conditions, MachineAddress
from controller.api.providerid import ProviderIDList
from controller.api.schema import Bool, Int32, Int64, NonNegativeInt32, Rule, Time, crd

__all__ = [
    "AWS_CONTRACT_LABELS",
    "AMIReference",
    "AWSLaunchTemplate",
    "AWSLifecycleHook",
    "AWSMachine",
    "AWSMachinePool",
    "AWSMachinePoolInstanceStatus",
    "AWSMachinePoolSpec",
    "AWSMachinePoolStatus",
    "AWSMachinePoolStrategy",
    "AWSMachineSpec",
    "AWSMachineStatus",
    "AWSResourceReference",
    "InstancesDistribution",
    "MixedInstancesPolicy",
    "Overrides",
    "RefreshPreferences",
    "SuspendProcessesTypes",
    "Volume",
]

#: Labels every AWS CRD carries: the Cluster API contract version map, the provider name (as
#: CAPA's), clusterctl's discovery label, and ``move`` so unadopted objects travel too.
AWS_CONTRACT_LABELS: Mapping[str, str] = crd_labels(
    provider="infrastructure-aws", versions=["v1beta2"], move=True
)

_Name = Annotated[str, Field(min_length=1, max_length=255)]
_PRESERVE = crd(preserve_unknown_fields=True)


class AWSResourceReference(ApiModel):
    """A reference to an AWS resource by ID (CAPA also allows filters; kept, not resolved)."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    id: _Name | None = None
    """The resource's ID (`subnet-...`, `sg-...`)."""


class AMIReference(ApiModel):
    """Which image instances boot."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    id: _Name | None = None
    """The AMI's ID (`ami-...`)."""


class Volume(ApiModel):
    """The root volume of each instance."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    size: Annotated[Int64, Field(ge=8)]
    """Size in GiB (at least 8)."""
    type: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    """EBS volume type (`gp2`, `gp3`, `io1`, ...)."""
    device_name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Device name; defaults to the AMI's root device (`/dev/xvda` when unknown)."""


class AWSLaunchTemplate(ApiModel):
    """The EC2 launch template the group's instances are launched from."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    name: _Name | None = None
    """Launch template name; defaults to the AWSMachinePool's name."""
    instance_type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """EC2 instance type (`m6i.large`)."""
    ami: AMIReference = Field(default_factory=AMIReference)
    """The image (only `id` is supported; AMI lookup is not)."""
    iam_instance_profile: _Name | None = None
    """Name of the IAM instance profile instances run with."""
    ssh_key_name: Annotated[str, Field(max_length=255)] | None = None
    """Name of the EC2 key pair for SSH."""
    root_volume: Volume | None = None
    """The root volume."""
    additional_security_groups: Annotated[
        list[AWSResourceReference],
        Field(max_length=64, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Security groups besides the cluster's."""


class Overrides(ApiModel):
    """One instance type of a mixed instances policy."""

    instance_type: Annotated[str, Field(min_length=1, max_length=64)]
    """EC2 instance type."""


class InstancesDistribution(ApiModel):
    """On-demand/spot split of a mixed instances policy."""

    on_demand_allocation_strategy: Literal["prioritized", "lowest-price"] | None = None
    """How on-demand capacity is spread over the instance types."""
    spot_allocation_strategy: (
        Literal[
            "lowest-price",
            "capacity-optimized",
            "capacity-optimized-prioritized",
            "price-capacity-optimized",
        ]
        | None
    ) = None
    """How spot capacity is spread over the instance types."""
    on_demand_base_capacity: NonNegativeInt32 | None = None
    """Instances that are always on-demand."""
    on_demand_percentage_above_base_capacity: Annotated[Int32, Field(ge=0, le=100)] | None = None
    """Percentage of on-demand instances above the base."""


class MixedInstancesPolicy(ApiModel):
    """Several instance types, and an on-demand/spot split."""

    instances_distribution: InstancesDistribution | None = None
    """The on-demand/spot split."""
    overrides: Annotated[
        list[Overrides], Field(max_length=40, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """Instance types to launch."""


class SuspendProcessesTypes(ApiModel):
    """Auto Scaling processes to suspend (`all`, or one flag per process)."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    all: Bool | None = None
    """Suspend every process."""
    processes: dict[str, Bool] | None = None
    """Per process (`launch`, `terminate`, `healthCheck`, `azRebalance`, ...): true suspends."""


class AWSLifecycleHook(ApiModel):
    """A lifecycle hook on the group."""

    name: Annotated[str, Field(min_length=1, max_length=255)]
    """The hook's name."""
    lifecycle_transition: Literal[
        "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    """When the hook runs."""
    notification_target_arn: _Name | None = Field(default=None, alias="notificationTargetARN")
    """Where notifications go."""
    role_arn: _Name | None = Field(default=None, alias="roleARN")
    """Role allowed to publish notifications."""
    heartbeat_timeout: Annotated[str, Field(max_length=32)] | None = None
    """How long an instance waits in the hook (a duration such as `1h`; default 1h)."""
    default_result: Literal["CONTINUE", "ABANDON"] | None = None
    """What happens when the heartbeat times out (default ABANDON)."""
    notification_metadata: Annotated[str, Field(max_length=1023)] | None = None
    """Extra data sent with notifications."""


class RefreshPreferences(ApiModel):
    """AWS instance refresh settings (used when the strategy is `InstanceRefresh`)."""

    disable: Bool | None = None
    """Never start an instance refresh."""
    strategy: Literal["Rolling"] | None = None
    """Instance refresh strategy."""
    instance_warmup: Int64 | None = None
    """Seconds until a new instance counts as healthy."""
    min_healthy_percentage: Annotated[Int64, Field(ge=0, le=100)] | None = None
    """Capacity that must stay healthy during the refresh, in percent."""
    max_healthy_percentage: Annotated[Int64, Field(ge=100, le=200)] | None = None
    """Capacity allowed above the desired capacity during the refresh, in percent."""


class AWSMachinePoolStrategy(ApiModel):
    """How out-of-date instances are replaced after a launch template change."""

    type: Literal["RollingUpdate", "InstanceRefresh"] | None = Field(
        default=None, json_schema_extra=crd(default="RollingUpdate")
    )
    """`RollingUpdate`: our surge-and-replace; `InstanceRefresh`: AWS's (opt-in)."""
    rolling_update: RollingUpdate | None = None
    """Surge-and-replace limits."""


class AWSMachinePoolSpec(ApiModel):
    """The desired state of an EC2 Auto Scaling group."""

    model_config = ConfigDict(
        json_schema_extra=crd(
            preserve_unknown_fields=True,
            rules=[
                Rule(
                    rule="!has(self.minSize) || !has(self.maxSize) || self.minSize <= self.maxSize",
                    message="minSize must not exceed maxSize",
                    field_path=".minSize",
                )
            ],
        )
    )

    provider_id: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, alias="providerID"
    )
    """The group's ARN (informational)."""
    provider_id_list: ProviderIDList = Field(default_factory=list, alias="providerIDList")
    """Provider IDs of the group's instances (contract field; written by the controller)."""
    min_size: NonNegativeInt32 | None = Field(default=None, json_schema_extra=crd(default=1))
    """Smallest size of the group."""
    max_size: Annotated[Int32, Field(ge=1)] | None = Field(
        default=None, json_schema_extra=crd(default=1)
    )
    """Largest size of the group."""
    availability_zones: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(max_length=64, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Zones to launch in (when no subnets are given)."""
    subnets: Annotated[
        list[AWSResourceReference],
        Field(max_length=64, json_schema_extra=crd(list_type="atomic")),
    ] = Field(default_factory=list)
    """Subnets to launch in."""
    additional_tags: dict[str, Annotated[str, Field(max_length=256)]] | None = None
    """Tags for the group, its launch template and its instances."""
    aws_launch_template: AWSLaunchTemplate = Field(
        default_factory=AWSLaunchTemplate, alias="awsLaunchTemplate"
    )
    """What the instances look like."""
    mixed_instances_policy: MixedInstancesPolicy | None = None
    """Several instance types and an on-demand/spot split."""
    capacity_rebalance: Bool | None = None
    """Replace spot instances at elevated risk of interruption ahead of time."""
    suspend_processes: SuspendProcessesTypes | None = None
    """Auto Scaling processes to suspend."""
    lifecycle_hooks: Annotated[
        list[AWSLifecycleHook],
        Field(max_length=50, json_schema_extra=crd(list_type="map", list_map_keys=["name"])),
    ] = Field(default_factory=list)
    """Lifecycle hooks on the group."""
    default_cooldown: Annotated[str, Field(max_length=32)] | None = None
    """Cooldown between scaling activities (a duration)."""
    default_instance_warmup: Annotated[str, Field(max_length=32)] | None = None
    """Warm-up time of new instances (a duration)."""
    refresh_preferences: RefreshPreferences | None = None
    """AWS instance refresh settings."""
    strategy: AWSMachinePoolStrategy | None = None
    """How out-of-date instances are replaced (not a CAPA field; CAPA always refreshes)."""


class AWSMachinePoolInstanceStatus(ApiModel):
    """One instance of the group."""

    instance_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(alias="instanceID")
    """The EC2 instance ID."""
    provider_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, alias="providerID"
    )
    """`aws:///<zone>/<instance-id>`."""
    zone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """The instance's availability zone."""
    state: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """pending, running, failed or terminating."""
    version: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The template version the instance was launched from."""
    ready: Bool | None = None
    """True when the instance is in service."""
    launched_at: Time | None = None
    """When the instance was launched."""


class AWSMachinePoolInitializationStatus(ApiModel):
    """Progress of the group's first provisioning; part of the Cluster API contract."""

    provisioned: Bool | None = None
    """True once the group exists and reports its instances."""


class AWSMachinePoolStatus(ApiModel):
    """The observed state of an EC2 Auto Scaling group."""

    ready: Bool | None = None
    """v1beta1-contract readiness; kept equal to `initialization.provisioned`."""
    initialization: AWSMachinePoolInitializationStatus = Field(
        default_factory=AWSMachinePoolInitializationStatus
    )
    """Progress of the first provisioning (contract field)."""
    replicas: NonNegativeInt32 | None = None
    """Most recently observed number of instances (contract field)."""
    infrastructure_machine_kind: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """Kind of the per-instance objects (`AWSMachine`): opts in to MachinePool Machines."""
    instances: Annotated[
        list[AWSMachinePoolInstanceStatus],
        Field(
            max_length=10000,
            json_schema_extra=crd(list_type="map", list_map_keys=["instanceID"]),
        ),
    ] = Field(default_factory=list)
    """Every instance of the group."""
    group_name: (
        Annotated[str, Field(min_length=3, max_length=128, pattern=r"^[a-zA-Z0-9().\-/_]+$")] | None
    ) = None
    """Name of the Auto Scaling group and its launch template, recorded before they are
    created and kept for the pool's life (not a CAPA field: CAPA names the group after the
    AWSMachinePool)."""
    launch_template_id: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, alias="launchTemplateID"
    )
    """ID of the group's launch template."""
    launch_template_version: Annotated[str, Field(max_length=32)] | None = None
    """The launch template version new instances get."""
    asg_status: Annotated[str, Field(max_length=64)] | None = None
    """The group's status as AWS reports it (e.g. `Delete in progress`)."""
    conditions: Conditions = Field(default_factory=list)
    """Observations of the group's state (Ready, ...)."""
    failure_reason: Annotated[str, Field(max_length=256)] | None = None
    """A problem, as the AWS error code (v1beta1 contract, deprecated)."""
    failure_message: Annotated[str, Field(max_length=10240)] | None = None
    """A problem, in words (v1beta1 contract, deprecated)."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The `metadata.generation` this status was computed from."""


_COLUMNS_CLUSTER = PrinterColumn(
    "Cluster", ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']", "string", "Cluster"
)
_COLUMN_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation")


class AWSMachinePool(ApiObject):
    """An EC2 Auto Scaling group and its launch template."""

    KIND: ClassVar[Kind] = AWS_MACHINE_POOL
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=AWS_CONTRACT_LABELS,
        printer_columns=(
            _COLUMNS_CLUSTER,
            PrinterColumn("Replicas", ".status.replicas", "integer", "Observed instances"),
            PrinterColumn(
                "Provisioned", ".status.initialization.provisioned", "boolean", "Group exists"
            ),
            PrinterColumn("MinSize", ".spec.minSize", "integer", "Smallest size"),
            PrinterColumn("MaxSize", ".spec.maxSize", "integer", "Largest size"),
            PrinterColumn(
                "LaunchTemplate", ".status.launchTemplateID", "string", "Launch template"
            ),
            _COLUMN_AGE,
        ),
    )

    spec: AWSMachinePoolSpec = Field(default_factory=AWSMachinePoolSpec)
    """The desired state of the group."""
    status: AWSMachinePoolStatus = Field(default_factory=AWSMachinePoolStatus)
    """The observed state of the group."""


class AWSMachineSpec(ApiModel):
    """The desired state of one instance of an AWSMachinePool."""

    model_config = ConfigDict(json_schema_extra=_PRESERVE)

    provider_id: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, alias="providerID"
    )
    """`aws:///<zone>/<instance-id>` (contract field)."""
    instance_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, alias="instanceID"
    )
    """The EC2 instance ID."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The availability zone."""


class AWSMachineInitializationStatus(ApiModel):
    """Progress of the machine's first provisioning; part of the Cluster API contract."""

    provisioned: Bool | None = None
    """True once the instance is running."""


class AWSMachineStatus(ApiModel):
    """The observed state of one instance."""

    ready: Bool | None = None
    """v1beta1-contract readiness; kept equal to `initialization.provisioned`."""
    initialization: AWSMachineInitializationStatus = Field(
        default_factory=AWSMachineInitializationStatus
    )
    """Progress of the first provisioning (contract field)."""
    addresses: Annotated[
        list[MachineAddress], Field(max_length=256, json_schema_extra=crd(list_type="atomic"))
    ] = Field(default_factory=list)
    """The instance's addresses."""
    failure_domain: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The availability zone."""
    instance_state: Annotated[str, Field(max_length=64)] | None = None
    """The EC2 instance state."""
    conditions: Conditions = Field(default_factory=list)
    """Observations of the machine's state (Ready, ...)."""


class AWSMachine(ApiObject):
    """One instance of an AWSMachinePool (a MachinePool Machine's infrastructure object)."""

    KIND: ClassVar[Kind] = AWS_MACHINE
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=AWS_CONTRACT_LABELS,
        printer_columns=(
            _COLUMNS_CLUSTER,
            PrinterColumn("Instance", ".spec.instanceID", "string", "EC2 instance"),
            PrinterColumn("Provider ID", ".spec.providerID", "string", "Provider ID"),
            PrinterColumn(
                "Provisioned", ".status.initialization.provisioned", "boolean", "Running"
            ),
            _COLUMN_AGE,
        ),
    )

    spec: AWSMachineSpec = Field(default_factory=AWSMachineSpec)
    """The desired state of the machine."""
    status: AWSMachineStatus = Field(default_factory=AWSMachineStatus)
    """The observed state of the machine."""
