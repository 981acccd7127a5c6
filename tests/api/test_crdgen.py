"""The generated CRDs: structural, deterministic, committed, and saying what the models say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import ALL_KINDS, ALL_MODELS
from controller.api.crdgen import generate_crds, render_crds_yaml, write_crds
from controller.api.kinds import MACHINE_POOL, Kind
from controller.api.machine import SEMVER_PATTERN
from tests.api.structural_check import structural_violations

_COMMITTED = Path(__file__).resolve().parents[2] / "charts" / "machinepool-controller" / "crds"
_CRDS = generate_crds()
_RENDERED = render_crds_yaml()


def _crd(kind: Kind) -> dict[str, Any]:
    return next(c for c in _CRDS if c["metadata"]["name"] == kind.crd_name)


def _schema(kind: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = _crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node at a dotted path; ``[]`` steps into list items."""
    node = schema
    for step in path.split("."):
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


@pytest.mark.parametrize("crd", _CRDS, ids=lambda c: c["metadata"]["name"])
def test_every_schema_is_structural(crd: dict[str, Any]) -> None:
    (version,) = crd["spec"]["versions"]
    assert structural_violations(version["schema"]["openAPIV3Schema"]) == []


def test_committed_crds_match_the_generator() -> None:
    rendered = _RENDERED
    committed = {p.name: p.read_text() for p in sorted(_COMMITTED.glob("*.yaml"))}
    stale = sorted(set(committed) - set(rendered))
    missing = sorted(set(rendered) - set(committed))
    changed = sorted(n for n in set(rendered) & set(committed) if rendered[n] != committed[n])
    if stale or missing or changed:
        pytest.fail(
            f"{_COMMITTED} is out of date with controller/api (changed: {changed}, "
            f"missing: {missing}, no longer generated: {stale}); "
            "run `make crds` and commit the result"
        )


def test_output_is_deterministic_and_one_file_per_kind() -> None:
    first = _RENDERED
    assert render_crds_yaml() == first
    assert sorted(first) == sorted(f"{k.group}_{k.plural}.yaml" for k in ALL_KINDS)
    for text in first.values():
        assert text.startswith("# Generated from the models")
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


def test_write_crds_writes_every_file_and_leaves_others(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    written = write_crds(output_dir=tmp_path / "crds")
    assert sorted(p.name for p in written) == sorted(_RENDERED)
    assert all(p.read_text() == _RENDERED[p.name] for p in written)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in written)
    write_crds(output_dir=tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*.tmp"))


def test_models_and_kinds_line_up() -> None:
    assert [model.KIND for model in ALL_MODELS] == list(ALL_KINDS)
    assert [c["metadata"]["name"] for c in _CRDS] == [k.crd_name for k in ALL_KINDS]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_names_scope_and_single_served_storage_version(kind: Kind) -> None:
    spec = _crd(kind)["spec"]
    assert spec["group"] == kind.group
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind.kind
    assert spec["names"]["plural"] == kind.plural
    assert spec["names"]["listKind"] == f"{kind.kind}List"
    assert spec["names"].get("shortNames", []) == list(kind.short_names)
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (kind.version, True, True)
    assert version["subresources"]["status"] == {}


def test_machine_pool_scale_subresource_and_printer_columns() -> None:
    version = _crd(MACHINE_POOL)["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Cluster",
        "Desired",
        "Replicas",
        "Ready",
        "Available",
        "Phase",
        "Age",
        "Version",
    ]
    assert columns["Desired"] == ".spec.replicas"
    assert columns["Version"] == ".spec.template.spec.version"


def test_every_crd_carries_the_contract_provider_and_clusterctl_labels() -> None:
    moved = {"machinepools", "inmemorymachinepools", "inmemorymachines"}
    for crd in _CRDS:
        labels = crd["metadata"].get("labels", {})
        if crd["spec"]["group"] == "infrastructure.cluster.x-k8s.io":
            expected = {
                "cluster.x-k8s.io/v1beta2": "v1alpha1",
                "cluster.x-k8s.io/provider": "infrastructure-inmemory",
            }
        else:
            expected = {
                "cluster.x-k8s.io/v1beta2": "v1beta2",
                "cluster.x-k8s.io/provider": "cluster-api",
            }
        expected["clusterctl.cluster.x-k8s.io"] = ""
        if crd["spec"]["names"]["plural"] in moved:
            expected["clusterctl.cluster.x-k8s.io/move"] = ""
        assert labels == expected, crd["metadata"]["name"]


_MACHINE_POOL_FIELDS = {
    "spec.clusterName": {"type": "string", "minLength": 1, "maxLength": 63},
    "spec.replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
    "spec.providerIDList": {"type": "array", "maxItems": 10000, "x-kubernetes-list-type": "set"},
    "spec.providerIDList.[]": {"type": "string", "minLength": 1, "maxLength": 512},
    "spec.failureDomains": {"maxItems": 100, "x-kubernetes-list-type": "atomic"},
    "spec.template.spec.bootstrap.dataSecretName": {"type": "string", "maxLength": 253},
    "spec.template.spec.minReadySeconds": {"format": "int32", "minimum": 0},
    "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    "status.conditions.[].status": {"enum": ["True", "False", "Unknown"]},
    "status.conditions.[].observedGeneration": {"format": "int64", "minimum": 0},
    "status.conditions.[].lastTransitionTime": {"type": "string", "format": "date-time"},
    "status.nodeRefs": {"maxItems": 10000, "x-kubernetes-list-type": "atomic"},
    "status.nodeRefs.[]": {"x-kubernetes-map-type": "atomic"},
    "status.selector": {"type": "string"},
    "status.observedGeneration": {"format": "int64", "minimum": 1},
    "status.deprecated.v1beta1.conditions.[].severity": {"type": "string", "maxLength": 32},
    "status.deprecated.v1beta1.unavailableReplicas": {"format": "int32"},
    "status.initialization.bootstrapDataSecretCreated": {"type": "boolean"},
}


@pytest.mark.parametrize(("path", "expected"), _MACHINE_POOL_FIELDS.items())
def test_machine_pool_schema_fields(path: str, expected: dict[str, Any]) -> None:
    node = _at(_schema(MACHINE_POOL), path)
    assert {key: node.get(key) for key in expected} == expected


def test_machine_pool_required_fields_and_phase_enum() -> None:
    schema = _schema(MACHINE_POOL)
    assert schema["required"] == ["spec"]
    assert _at(schema, "spec")["required"] == ["clusterName", "template"]
    assert _at(schema, "spec.template")["required"] == ["spec"]
    assert _at(schema, "spec.template.spec")["required"] == [
        "bootstrap",
        "clusterName",
        "infrastructureRef",
    ]
    assert _at(schema, "status.phase")["enum"] == [
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
    assert "maximum" not in _at(schema, "spec.replicas")  # implied by format: int32


def _rules(crd_name: str) -> dict[str, list[str]]:
    """Path to CEL rules, for every node of a CRD that has rules."""
    crd = next(c for c in _CRDS if c["metadata"]["name"] == crd_name)
    found: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        if "x-kubernetes-validations" in node:
            found[path] = [r["rule"] for r in node["x-kubernetes-validations"]]
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}" if path else name)
        if "items" in node:
            walk(node["items"], f"{path}.[]")

    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    return found


def test_cel_rules_land_where_the_models_put_them() -> None:
    # Guards against pydantic silently dropping json_schema_extra in nested annotations.
    assert _rules("machinepools.cluster.x-k8s.io") == {
        "spec": [
            "self.template.spec.clusterName == self.clusterName",
            "!has(self.template.spec.taints)",
        ],
        "spec.clusterName": ["self == oldSelf"],
        "spec.template.spec.bootstrap": ["has(self.configRef) || has(self.dataSecretName)"],
        "spec.template.spec.clusterName": ["self == oldSelf"],
        "spec.template.spec.version": [f"self.matches('{SEMVER_PATTERN}')"],
    }
    pool_rules = _rules("inmemorymachinepools.infrastructure.cluster.x-k8s.io")
    assert set(pool_rules) == {
        "spec",
        "spec.strategy.rollingUpdate.maxSurge",
        "spec.strategy.rollingUpdate.maxUnavailable",
    }
    assert _rules("clusters.cluster.x-k8s.io") == {}


def test_cluster_spec_and_status_keep_unknown_fields() -> None:
    schema = _schema(next(k for k in ALL_KINDS if k.kind == "Cluster"))
    for part in ("spec", "status"):
        assert _at(schema, part)["x-kubernetes-preserve-unknown-fields"] is True
    assert _at(schema, "spec.topology") == {
        "description": "A ClusterClass-based topology, kept as it is.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_int_or_string_and_schema_defaults_in_the_in_memory_pool() -> None:
    schema = _schema(next(k for k in ALL_KINDS if k.kind == "InMemoryMachinePool"))
    surge = _at(schema, "spec.strategy.rollingUpdate.maxSurge")
    assert surge["x-kubernetes-int-or-string"] is True
    assert surge["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert _at(schema, "spec.deletePolicy")["default"] == "Oldest"
    assert _at(schema, "spec.deletePolicy")["enum"] == ["Oldest", "Newest", "Random"]
    assert _at(schema, "spec.template.failureRate") == {
        "description": "Probability (0..1) that a launch fails (default 0).",
        "type": "number",
        "minimum": 0,
        "maximum": 1,
    }
    instances = _at(schema, "status.instances")
    assert instances["x-kubernetes-list-map-keys"] == ["instanceID"]


def test_wire_names_follow_kubernetes_casing() -> None:
    """Acronyms stay upper case (providerID, not providerId) and versions stay lower case."""

    def names(node: dict[str, Any]) -> set[str]:
        found = set(node.get("properties", {}))
        for child in node.get("properties", {}).values():
            found |= names(child)
        if "items" in node:
            found |= names(node["items"])
        return found

    every = set().union(*(names(_schema(kind)) for kind in ALL_KINDS))
    assert not {n for n in every if any(bad in n for bad in ("Id", "Uid", "Uuid", "Ip", "Beta"))}
    assert {"providerID", "providerIDList", "instanceID", "v1beta1", "apiGroup"} <= every
