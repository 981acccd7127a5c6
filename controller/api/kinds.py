"""Descriptors of the API kinds this controller reads and writes.

A :class:`Kind` names one served resource: what the API server needs to route a call
(group, version, plural, scope) and what objects carry (``apiVersion``, ``kind``). The rest of
the code uses these constants for every API call instead of spelling strings out, so a
rename happens here once.

Invariants:

- Descriptors are immutable and hashable; they can key dicts and live in sets.
- ``ALL_KINDS`` holds every kind whose CRD this package generates, in a fixed order.
- This module imports nothing from the rest of the package (it is the bottom of ``api``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALL_KINDS",
    "AWS_MACHINE",
    "AWS_MACHINE_POOL",
    "CLUSTER",
    "CORE_GROUP",
    "INFRASTRUCTURE_GROUP",
    "IN_MEMORY_MACHINE",
    "IN_MEMORY_MACHINE_POOL",
    "MACHINE",
    "MACHINE_HEALTH_CHECK",
    "MACHINE_POOL",
    "Kind",
]

CORE_GROUP = "cluster.x-k8s.io"
INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"


@dataclass(frozen=True, slots=True)
class Kind:
    """One API resource: group, version, kind and plural, as the API server serves it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of objects of this kind (``group/version``, or just the version)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        """The lower-case singular resource name (``machinepool``)."""
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        """The kind of a list of these objects (``MachinePoolList``)."""
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        """The name of the CustomResourceDefinition that defines this kind."""
        return f"{self.plural}.{self.group}"

    @property
    def group_kind(self) -> str:
        """``Kind.group``, the form Kubernetes uses in messages and ownership checks."""
        return f"{self.kind}.{self.group}"


MACHINE_POOL = Kind(
    group=CORE_GROUP,
    version="v1beta2",
    kind="MachinePool",
    plural="machinepools",
    short_names=("mp",),
)
MACHINE = Kind(
    group=CORE_GROUP,
    version="v1beta2",
    kind="Machine",
    plural="machines",
    short_names=("ma",),
)
CLUSTER = Kind(
    group=CORE_GROUP,
    version="v1beta2",
    kind="Cluster",
    plural="clusters",
    short_names=("cl",),
)
MACHINE_HEALTH_CHECK = Kind(
    group=CORE_GROUP,
    version="v1beta2",
    kind="MachineHealthCheck",
    plural="machinehealthchecks",
    short_names=("mhc", "mhcs"),
)
IN_MEMORY_MACHINE_POOL = Kind(
    group=INFRASTRUCTURE_GROUP,
    version="v1alpha1",
    kind="InMemoryMachinePool",
    plural="inmemorymachinepools",
)
IN_MEMORY_MACHINE = Kind(
    group=INFRASTRUCTURE_GROUP,
    version="v1alpha1",
    kind="InMemoryMachine",
    plural="inmemorymachines",
)
AWS_MACHINE_POOL = Kind(
    group=INFRASTRUCTURE_GROUP,
    version="v1beta2",
    kind="AWSMachinePool",
    plural="awsmachinepools",
    short_names=("awsmp",),
)
AWS_MACHINE = Kind(
    group=INFRASTRUCTURE_GROUP,
    version="v1beta2",
    kind="AWSMachine",
    plural="awsmachines",
    short_names=("awsm",),
)

ALL_KINDS: tuple[Kind, ...] = (
    CLUSTER,
    MACHINE_POOL,
    MACHINE,
    IN_MEMORY_MACHINE_POOL,
    IN_MEMORY_MACHINE,
    AWS_MACHINE_POOL,
    AWS_MACHINE,
    MACHINE_HEALTH_CHECK,
)
