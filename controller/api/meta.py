"""Shared meta types: object metadata, owner and object references, conditions.

These mirror ``metav1.ObjectMeta`` (the part controllers use), ``metav1.OwnerReference``,
``metav1.Condition``, ``corev1.ObjectReference`` and Cluster API's v1beta2
``ContractVersionedObjectReference`` and deprecated v1beta1 ``Condition``, with the same wire
names and limits as the upstream CRDs.

Invariants: like every :class:`~controller.api.base.ApiModel`, metadata keys we do not model
(``managedFields``, ``deletionGracePeriodSeconds``, ...) are kept and written back.
Top-level ``metadata`` is validated by the API server itself, so it is never part of a CRD
schema; the limits here only matter for the nested types.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from controller.api.base import ApiModel
from controller.api.schema import (
    CONDITION_REASON_PATTERN,
    CONDITION_TYPE_PATTERN,
    DNS1123_SUBDOMAIN_PATTERN,
    KIND_PATTERN,
    Bool,
    Int64,
    Time,
    crd,
)

__all__ = [
    "Condition",
    "ConditionStatus",
    "ContractVersionedObjectReference",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "V1Beta1Condition",
]

ConditionStatus = Literal["True", "False", "Unknown"]


class OwnerReference(ApiModel):
    """An owner of an object (`metav1.OwnerReference`)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: Bool | None = None
    block_owner_deletion: Bool | None = None


class ObjectMeta(ApiModel):
    """Object metadata: the fields controllers read and write; all others are kept as they are."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[OwnerReference] = Field(default_factory=list)


class ObjectReference(ApiModel):
    """A reference to any object (`corev1.ObjectReference`); every field is optional."""

    model_config = ConfigDict(json_schema_extra=crd(map_type="atomic"))

    api_version: str | None = None
    """API version of the referent."""
    kind: str | None = None
    """Kind of the referent."""
    name: str | None = None
    """Name of the referent."""
    namespace: str | None = None
    """Namespace of the referent."""
    uid: str | None = None
    """UID of the referent."""
    resource_version: str | None = None
    """Specific resourceVersion of the referent, if any."""
    field_path: str | None = None
    """A path to a piece of the referent (for example a container), if any."""


class ContractVersionedObjectReference(ApiModel):
    """A reference to a provider object; its version comes from the CRD's contract labels."""

    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=KIND_PATTERN)]
    """Kind of the referent, e.g. `InMemoryMachinePool`."""
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)]
    """Name of the referent, in the namespace of the referring object."""
    api_group: Annotated[
        str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)
    ]
    """API group of the referent, e.g. `infrastructure.cluster.x-k8s.io`."""


class Condition(ApiModel):
    """One observation of an object's state (`metav1.Condition`)."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Type of the condition in CamelCase, e.g. `Ready` or `Paused`."""
    status: ConditionStatus
    """Status of the condition: True, False or Unknown."""
    observed_generation: Annotated[Int64, Field(ge=0)] | None = None
    """The `metadata.generation` the condition was computed from."""
    last_transition_time: Time
    """When the status last changed."""
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """A CamelCase token giving the reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)]
    """A human-readable message about the transition; may be empty."""


class V1Beta1Condition(ApiModel):
    """A deprecated Cluster API v1beta1 condition, with a severity."""

    type: Annotated[str, Field(min_length=1, max_length=256)]
    """Type of the condition, e.g. `Ready`."""
    status: str
    """Status of the condition: True, False or Unknown."""
    severity: Annotated[str, Field(max_length=32)] | None = None
    """How bad a False status is: Error, Warning or Info."""
    last_transition_time: Time
    """When the status last changed."""
    reason: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """A CamelCase token giving the reason for the last transition."""
    message: Annotated[str, Field(min_length=1, max_length=10240)] | None = None
    """A human-readable message about the transition."""
