"""``Cluster`` (``cluster.x-k8s.io/v1beta2``): the fields the MachinePool controller reads.

We model only what we read (``spec.paused``, the control plane and infrastructure references,
the topology as an opaque object, and the status conditions, initialization and phase). Both
``spec`` and ``status`` keep unknown fields in the CRD as well as in Python, so any real
Cluster API v1beta2 Cluster manifest (cluster networks, endpoints, topologies, ...) is
accepted and stored whole.

Invariants: as for every model, unknown fields survive parsing and serializing.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.contract import CORE_CRD_LABELS
from controller.api.crdinfo import CrdOptions, PrinterColumn
from controller.api.kinds import CLUSTER, Kind
from controller.api.machine import Conditions
from controller.api.meta import ContractVersionedObjectReference
from controller.api.schema import Bool, Int64, PreservedObject, crd

__all__ = [
    "Cluster",
    "ClusterInitializationStatus",
    "ClusterPhase",
    "ClusterSpec",
    "ClusterStatus",
]

ClusterPhase = Literal["Pending", "Provisioning", "Provisioned", "Deleting", "Failed", "Unknown"]


class ClusterSpec(ApiModel):
    """The desired state of a Cluster (only the fields we read are typed; all are kept)."""

    model_config = ConfigDict(json_schema_extra=crd(preserve_unknown_fields=True))

    paused: Bool | None = None
    """When true, controllers leave the Cluster and its objects alone."""
    infrastructure_ref: ContractVersionedObjectReference | None = None
    """The cluster's infrastructure object."""
    control_plane_ref: ContractVersionedObjectReference | None = None
    """The cluster's control plane object."""
    topology: PreservedObject | None = None
    """A ClusterClass-based topology, kept as it is."""


class ClusterInitializationStatus(ApiModel):
    """Progress of a Cluster's first provisioning; part of the Cluster API contract."""

    infrastructure_provisioned: Bool | None = None
    """True once the infrastructure provider reports the cluster infrastructure provisioned."""
    control_plane_initialized: Bool | None = None
    """True once the control plane can accept requests."""


class ClusterStatus(ApiModel):
    """The observed state of a Cluster (only the fields we read are typed; all are kept)."""

    model_config = ConfigDict(json_schema_extra=crd(preserve_unknown_fields=True))

    conditions: Conditions = Field(default_factory=list)
    """Observations of the cluster's state (Available, Paused, ...)."""
    initialization: ClusterInitializationStatus = Field(default_factory=ClusterInitializationStatus)
    """Progress of the first provisioning."""
    phase: ClusterPhase | None = None
    """A one-word summary of the lifecycle; for people, not for programs."""
    observed_generation: Annotated[Int64, Field(ge=1)] | None = None
    """The `metadata.generation` this status was computed from."""


class Cluster(ApiObject):
    """A Cluster API Cluster: the workload cluster the machines join."""

    KIND: ClassVar[Kind] = CLUSTER
    CRD: ClassVar[CrdOptions] = CrdOptions(
        categories=("cluster-api",),
        labels=CORE_CRD_LABELS,
        printer_columns=(
            PrinterColumn(
                "ClusterClass", ".spec.topology.classRef.name", "string", "ClusterClass, if any"
            ),
            PrinterColumn(
                "Available",
                '.status.conditions[?(@.type=="Available")].status',
                "string",
                "Cluster passes all availability checks",
            ),
            PrinterColumn("Paused", ".spec.paused", "boolean", "Reconciliation paused", 10),
            PrinterColumn("Phase", ".status.phase", "string", "Lifecycle phase"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
            PrinterColumn("Version", ".spec.topology.version", "string", "Kubernetes version"),
        ),
    )

    spec: ClusterSpec = Field(default_factory=ClusterSpec)
    """The desired state of the cluster."""
    status: ClusterStatus = Field(default_factory=ClusterStatus)
    """The observed state of the cluster."""
