"""Which model class stands for which kind.

Invariants: ``ALL_MODELS`` has exactly one model per entry of
:data:`controller.api.kinds.ALL_KINDS`, in the same order (a unit test checks it), so
generating CRDs or starting informers from either list gives the same set.

Failure: :func:`model_for` raises ``KeyError`` for a kind that has no model here.
"""

from __future__ import annotations

from controller.api.apiobject import ApiObject
from controller.api.aws import AWSMachine, AWSMachinePool
from controller.api.cluster import Cluster
from controller.api.healthcheck import MachineHealthCheck
from controller.api.inmemory import InMemoryMachine, InMemoryMachinePool
from controller.api.kinds import Kind
from controller.api.machine import Machine
from controller.api.machinepool import MachinePool

__all__ = ["ALL_MODELS", "model_for"]

ALL_MODELS: tuple[type[ApiObject], ...] = (
    Cluster,
    MachinePool,
    Machine,
    InMemoryMachinePool,
    InMemoryMachine,
    AWSMachinePool,
    AWSMachine,
    MachineHealthCheck,
)

_BY_KIND: dict[Kind, type[ApiObject]] = {model.KIND: model for model in ALL_MODELS}


def model_for(kind: Kind) -> type[ApiObject]:
    """The model class of ``kind``."""
    return _BY_KIND[kind]
