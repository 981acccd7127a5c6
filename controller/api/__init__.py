"""Typed models of every kind we read or write, and the CRDs generated from them.

This is the bottom layer: it imports nothing from ``controller.runtime``,
``controller.machinepool`` or ``controller.providers``.

- :mod:`controller.api.kinds` — :class:`Kind` descriptors (group, version, kind, plural) for
  API calls, and ``ALL_KINDS``.
- :mod:`controller.api.base` — :class:`ApiModel`: lossless ``from_dict``/``to_dict``.
- :mod:`controller.api.apiobject` — :class:`ApiObject`, the base of top-level objects.
- :mod:`controller.api.meta` — ObjectMeta, references, conditions.
- :mod:`controller.api.providerid` — the ``providerIDList`` type (unique provider IDs).
- :mod:`controller.api.machinepool`, :mod:`~controller.api.machine`,
  :mod:`~controller.api.cluster` — Cluster API v1beta2 kinds.
- :mod:`controller.api.inmemory` — the simulator's infrastructure kinds.
- :mod:`controller.api.registry` — kind to model class.
- :mod:`controller.api.crdgen` — CRD generation (``generate_crds``, ``render_crds_yaml``,
  ``write_crds``), on top of :mod:`controller.api.structural`, the markers in
  :mod:`controller.api.schema` and the CRD settings in :mod:`controller.api.crdinfo`.
"""

from controller.api.apiobject import ApiObject
from controller.api.base import ApiModel
from controller.api.cluster import Cluster, ClusterSpec, ClusterStatus
from controller.api.inmemory import (
    InMemoryInstance,
    InMemoryMachine,
    InMemoryMachinePool,
    InMemoryMachinePoolSpec,
    InMemoryMachinePoolStatus,
    InMemoryMachineSpec,
    InMemoryMachineStatus,
)
from controller.api.kinds import (
    ALL_KINDS,
    CLUSTER,
    IN_MEMORY_MACHINE,
    IN_MEMORY_MACHINE_POOL,
    MACHINE,
    MACHINE_POOL,
    Kind,
)
from controller.api.machine import (
    Bootstrap,
    Machine,
    MachineSpec,
    MachineStatus,
    MachineTemplateSpec,
)
from controller.api.machinepool import MachinePool, MachinePoolSpec, MachinePoolStatus
from controller.api.meta import (
    Condition,
    ContractVersionedObjectReference,
    ObjectMeta,
    ObjectReference,
    OwnerReference,
    V1Beta1Condition,
)
from controller.api.registry import ALL_MODELS, model_for

__all__ = [
    "ALL_KINDS",
    "ALL_MODELS",
    "CLUSTER",
    "IN_MEMORY_MACHINE",
    "IN_MEMORY_MACHINE_POOL",
    "MACHINE",
    "MACHINE_POOL",
    "ApiModel",
    "ApiObject",
    "Bootstrap",
    "Cluster",
    "ClusterSpec",
    "ClusterStatus",
    "Condition",
    "ContractVersionedObjectReference",
    "InMemoryInstance",
    "InMemoryMachine",
    "InMemoryMachinePool",
    "InMemoryMachinePoolSpec",
    "InMemoryMachinePoolStatus",
    "InMemoryMachineSpec",
    "InMemoryMachineStatus",
    "Kind",
    "Machine",
    "MachinePool",
    "MachinePoolSpec",
    "MachinePoolStatus",
    "MachineSpec",
    "MachineStatus",
    "MachineTemplateSpec",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "V1Beta1Condition",
    "model_for",
]
