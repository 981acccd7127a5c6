"""Parsing and serializing keep everything: unknown fields survive, defaults are never invented."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from controller.api import (
    ApiObject,
    Cluster,
    Condition,
    InMemoryMachinePool,
    Machine,
    MachinePool,
    MachinePoolStatus,
    ObjectMeta,
)
from controller.api.inmemory import RollingUpdate
from controller.api.schema import format_time
from tests.api import manifests


def _minimal_pool() -> dict[str, Any]:
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachinePool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "clusterName": "c",
            "template": {
                "spec": {
                    "clusterName": "c",
                    "bootstrap": {"dataSecretName": "s"},
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "InMemoryMachinePool",
                        "name": "p",
                    },
                }
            },
        },
    }


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (MachinePool, manifests.machine_pool()),
        (Machine, manifests.machine()),
        (Cluster, manifests.cluster()),
        (InMemoryMachinePool, manifests.in_memory_machine_pool()),
        (MachinePool, _minimal_pool()),
    ],
    ids=["machinepool", "machine", "cluster", "inmemorymachinepool", "minimal-machinepool"],
)
def test_known_manifests_round_trip_unchanged(model: type[ApiObject], data: dict[str, Any]) -> None:
    original = copy.deepcopy(data)
    assert model.from_dict(data).to_dict() == original


def test_unknown_fields_survive_at_top_level_and_nested() -> None:
    data = _minimal_pool()
    data["someTopLevelField"] = {"a": [1, 2, {"b": None}]}
    data["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    data["spec"]["someSpecField"] = "x"
    data["spec"]["template"]["spec"]["someFutureField"] = {"nested": True}
    data["spec"]["template"]["spec"]["infrastructureRef"]["someRefField"] = 7
    data["status"] = {"futureCounter": 3, "deprecated": {"v1beta1": {"someOldField": "y"}}}
    original = copy.deepcopy(data)

    pool = MachinePool.from_dict(data)

    assert pool.to_dict() == original
    assert pool.spec.template.spec.model_extra == {"someFutureField": {"nested": True}}


def test_mutating_a_parsed_object_keeps_unknown_fields_and_writes_the_change() -> None:
    data = _minimal_pool()
    data["spec"]["template"]["spec"]["someFutureField"] = 1
    pool = MachinePool.from_dict(data)

    pool.status.replicas = 3
    pool.status.initialization.infrastructure_provisioned = True
    pool.spec.provider_id_list.append("inmemory:///a/i-1")
    pool.metadata.labels["cluster.x-k8s.io/cluster-name"] = "c"

    out = pool.to_dict()
    assert out["status"] == {"replicas": 3, "initialization": {"infrastructureProvisioned": True}}
    assert out["spec"]["providerIDList"] == ["inmemory:///a/i-1"]
    assert out["spec"]["template"]["spec"]["someFutureField"] == 1
    assert out["metadata"]["labels"] == {"cluster.x-k8s.io/cluster-name": "c"}


def test_defaults_are_never_written() -> None:
    out = MachinePool.from_dict(_minimal_pool()).to_dict()
    assert "status" not in out
    assert "replicas" not in out["spec"]  # the schema default is the API server's job
    assert "deletion" not in out["spec"]["template"]["spec"]
    assert set(out["metadata"]) == {"name", "namespace"}


def test_explicit_values_equal_to_defaults_are_kept() -> None:
    data = _minimal_pool()
    data["spec"]["providerIDList"] = []
    data["metadata"]["labels"] = {}
    data["status"] = {}
    assert MachinePool.from_dict(data).to_dict() == data


def test_built_in_python_by_attribute_name_serializes_with_wire_names() -> None:
    pool = MachinePool(
        metadata=ObjectMeta(name="p", namespace="ns"),
        spec={
            "cluster_name": "c",
            "replicas": 2,
            "template": {
                "spec": {
                    "cluster_name": "c",
                    "bootstrap": {"data_secret_name": "s"},
                    "infrastructure_ref": {
                        "api_group": "infrastructure.cluster.x-k8s.io",
                        "kind": "InMemoryMachinePool",
                        "name": "p",
                    },
                }
            },
            "provider_id_list": ["inmemory:///a/i-1"],
        },
    )
    expected = _minimal_pool()
    expected["spec"]["replicas"] = 2
    expected["spec"]["providerIDList"] = ["inmemory:///a/i-1"]
    assert pool.to_dict() == expected


def test_from_dict_reads_wire_names_only() -> None:
    data = _minimal_pool()
    data["spec"]["provider_id_list"] = ["not-a-known-field-on-the-wire"]
    pool = MachinePool.from_dict(data)
    assert pool.spec.provider_id_list == []
    assert pool.to_dict()["spec"]["provider_id_list"] == ["not-a-known-field-on-the-wire"]


def test_api_version_and_kind_are_filled_in_and_checked() -> None:
    data = _minimal_pool()
    del data["apiVersion"], data["kind"]
    out = MachinePool.from_dict(data).to_dict()
    assert (out["apiVersion"], out["kind"]) == ("cluster.x-k8s.io/v1beta2", "MachinePool")

    with pytest.raises(ValidationError, match=r"expected 'cluster\.x-k8s\.io/v1beta2'"):
        MachinePool.from_dict({**_minimal_pool(), "apiVersion": "cluster.x-k8s.io/v1beta1"})
    with pytest.raises(ValidationError, match="expected 'MachinePool'"):
        MachinePool.from_dict({**_minimal_pool(), "kind": "Machine"})


def test_assigning_to_a_parsed_top_level_object_keeps_its_type_meta() -> None:
    pool = MachinePool.from_dict(_minimal_pool())
    pool.metadata = ObjectMeta(name="q")
    out = pool.to_dict()
    assert out["apiVersion"] == "cluster.x-k8s.io/v1beta2"
    assert out["metadata"] == {"name": "q"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), -1),
        (("spec", "replicas"), 2**31),
        (("spec", "replicas"), True),
        (("spec", "replicas"), "3"),
        (("spec", "replicas"), 3.0),
        (("spec", "clusterName"), ""),
        (("spec", "clusterName"), "x" * 64),
        (("spec", "providerIDList"), [""]),
        (("spec", "providerIDList"), ["i"] * 10001),
        (("status", "phase"), "Bogus"),
        (("status", "initialization"), {"infrastructureProvisioned": "true"}),
    ],
)
def test_values_the_api_server_would_reject_do_not_parse(path: tuple[str, str], value: Any) -> None:
    data = _minimal_pool()
    data.setdefault(path[0], {})[path[1]] = value
    with pytest.raises(ValidationError):
        MachinePool.from_dict(data)


def test_assignments_are_validated() -> None:
    pool = MachinePool.from_dict(_minimal_pool())
    with pytest.raises(ValidationError):
        pool.spec.replicas = -1
    with pytest.raises(ValidationError):
        pool.status.phase = "Bogus"  # type: ignore[assignment]


def test_duplicate_provider_ids_still_parse() -> None:
    # Uniqueness is the API server's job; Cluster API's own CRD allows duplicates.
    data = _minimal_pool()
    data["spec"]["providerIDList"] = ["a", "a"]
    assert MachinePool.from_dict(data).spec.provider_id_list == ["a", "a"]


def test_times_parse_to_aware_utc_and_serialize_as_kubernetes_does() -> None:
    condition = Condition.from_dict(
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "",
            "lastTransitionTime": "2025-03-01T12:00:00+02:00",
        }
    )
    assert condition.last_transition_time == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert condition.to_dict()["lastTransitionTime"] == "2025-03-01T10:00:00Z"
    assert format_time(datetime(2025, 3, 1, 10, 0, 0, 500000)) == "2025-03-01T10:00:00.500000Z"
    east = timezone(timedelta(hours=1))
    assert format_time(datetime(2025, 3, 1, 11, tzinfo=east)) == "2025-03-01T10:00:00Z"


def test_int_or_string_keeps_the_value_type() -> None:
    update = RollingUpdate.from_dict({"maxSurge": 1, "maxUnavailable": "25%"})
    assert update.max_surge == 1
    assert update.max_unavailable == "25%"
    assert update.to_dict() == {"maxSurge": 1, "maxUnavailable": "25%"}
    with pytest.raises(ValidationError):
        RollingUpdate.from_dict({"maxSurge": True})


def test_to_dict_returns_fresh_containers() -> None:
    pool = MachinePool.from_dict(_minimal_pool())
    first = pool.to_dict()
    first["spec"]["template"]["spec"]["clusterName"] = "changed"
    assert pool.spec.template.spec.cluster_name == "c"


def test_a_status_built_alone_serializes_only_what_was_set() -> None:
    status = MachinePoolStatus(replicas=2, phase="Running")
    assert status.to_dict() == {"replicas": 2, "phase": "Running"}
