"""Kind descriptors: the names every API call is built from."""

from __future__ import annotations

import pytest

from controller.api import (
    ALL_KINDS,
    CLUSTER,
    IN_MEMORY_MACHINE,
    IN_MEMORY_MACHINE_POOL,
    MACHINE,
    MACHINE_POOL,
    Cluster,
    InMemoryMachine,
    InMemoryMachinePool,
    Kind,
    Machine,
    MachinePool,
    model_for,
)


def test_machine_pool_descriptor() -> None:
    assert MACHINE_POOL.group == "cluster.x-k8s.io"
    assert MACHINE_POOL.version == "v1beta2"
    assert MACHINE_POOL.api_version == "cluster.x-k8s.io/v1beta2"
    assert MACHINE_POOL.plural == "machinepools"
    assert MACHINE_POOL.singular == "machinepool"
    assert MACHINE_POOL.list_kind == "MachinePoolList"
    assert MACHINE_POOL.crd_name == "machinepools.cluster.x-k8s.io"
    assert MACHINE_POOL.group_kind == "MachinePool.cluster.x-k8s.io"
    assert MACHINE_POOL.namespaced
    assert MACHINE_POOL.short_names == ("mp",)


@pytest.mark.parametrize(
    ("kind", "api_version", "plural", "short_names"),
    [
        (MACHINE, "cluster.x-k8s.io/v1beta2", "machines", ("ma",)),
        (CLUSTER, "cluster.x-k8s.io/v1beta2", "clusters", ("cl",)),
        (
            IN_MEMORY_MACHINE_POOL,
            "infrastructure.cluster.x-k8s.io/v1alpha1",
            "inmemorymachinepools",
            (),
        ),
        (IN_MEMORY_MACHINE, "infrastructure.cluster.x-k8s.io/v1alpha1", "inmemorymachines", ()),
    ],
)
def test_other_descriptors(
    kind: Kind, api_version: str, plural: str, short_names: tuple[str, ...]
) -> None:
    assert (kind.api_version, kind.plural, kind.short_names) == (api_version, plural, short_names)


def test_core_group_api_version_has_no_slash() -> None:
    assert Kind(group="", version="v1", kind="Secret", plural="secrets").api_version == "v1"


def test_descriptors_are_hashable_values() -> None:
    assert len(set(ALL_KINDS)) == len(ALL_KINDS) == 8
    assert {MACHINE_POOL: 1}[
        Kind("cluster.x-k8s.io", "v1beta2", "MachinePool", "machinepools", short_names=("mp",))
    ] == 1
    with pytest.raises(AttributeError):
        MACHINE_POOL.plural = "x"  # type: ignore[misc]


def test_model_for_each_kind() -> None:
    assert model_for(MACHINE_POOL) is MachinePool
    assert model_for(MACHINE) is Machine
    assert model_for(CLUSTER) is Cluster
    assert model_for(IN_MEMORY_MACHINE_POOL) is InMemoryMachinePool
    assert model_for(IN_MEMORY_MACHINE) is InMemoryMachine
    with pytest.raises(KeyError):
        model_for(Kind(group="", version="v1", kind="Secret", plural="secrets"))
