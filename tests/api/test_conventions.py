"""Cluster API's webhook rules, as CEL rules and schema defaults the real kube-apiserver enforces.

One test per rule: the bad object is rejected (422) with the rule's message, the good one is
accepted, and defaults appear on create. Plus the labels Cluster API's tooling reads from our
CRDs (contract, provider, clusterctl discovery and move).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from controller.api import MACHINE, MACHINE_POOL, Kind, Machine, MachinePool
from controller.api.kinds import ALL_KINDS

pytestmark = pytest.mark.integration

_MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


def _machine_spec(cluster: str = "demo") -> dict[str, Any]:
    return {
        "clusterName": cluster,
        "version": "v1.35.0",
        "bootstrap": {"dataSecretName": "boot"},
        "infrastructureRef": {
            "apiGroup": "infrastructure.cluster.x-k8s.io",
            "kind": "InMemoryMachinePool",
            "name": "workers",
        },
    }


def _pool(name: str = "workers", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": MACHINE_POOL.api_version,
        "kind": MACHINE_POOL.kind,
        "metadata": {"name": name},
        "spec": {"clusterName": "demo", "template": {"spec": _machine_spec()}},
    }
    body["spec"].update(spec)
    return body


def _machine(name: str = "m1") -> dict[str, Any]:
    return {
        "apiVersion": MACHINE.api_version,
        "kind": MACHINE.kind,
        "metadata": {"name": name},
        "spec": _machine_spec(),
    }


async def _create(
    api: client.ApiClient, kind: Kind, namespace: str, body: dict[str, Any]
) -> dict[str, Any]:
    created: dict[str, Any] = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, body
    )
    return created


async def _patch(
    api: client.ApiClient, kind: Kind, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    patched: dict[str, Any] = await client.CustomObjectsApi(api).patch_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, name, patch, **_MERGE_PATCH
    )
    return patched


async def _rejection(call: Awaitable[Any]) -> str:
    with pytest.raises(ApiException) as caught:
        await call
    assert caught.value.status == 422, caught.value.body
    assert caught.value.body is not None
    message: str = json.loads(caught.value.body)["message"]
    return message


# ------------------------------------------------------------------ validation


async def test_cluster_name_is_immutable(api_client: client.ApiClient, namespace: str) -> None:
    await _create(api_client, MACHINE_POOL, namespace, _pool())
    renamed = {"spec": {"clusterName": "other", "template": {"spec": {"clusterName": "other"}}}}
    message = await _rejection(_patch(api_client, MACHINE_POOL, namespace, "workers", renamed))
    assert 'spec.clusterName: Invalid value: "other": is immutable' in message
    # Changing something else, with clusterName sent unchanged, is fine.
    same = {"spec": {"clusterName": "demo", "replicas": 2}}
    patched = await _patch(api_client, MACHINE_POOL, namespace, "workers", same)
    assert patched["spec"]["replicas"] == 2


async def test_cluster_name_must_equal_the_template_cluster_name(
    api_client: client.ApiClient, namespace: str
) -> None:
    bad = _pool()
    bad["spec"]["template"]["spec"]["clusterName"] = "other"
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, bad))
    assert "spec.template.spec.clusterName: Invalid value" in message
    assert "must equal spec.clusterName" in message
    await _create(api_client, MACHINE_POOL, namespace, _pool())


@pytest.mark.parametrize(
    "bootstrap",
    [
        {"dataSecretName": "boot"},
        {
            "configRef": {
                "apiGroup": "bootstrap.cluster.x-k8s.io",
                "kind": "KubeadmConfig",
                "name": "c",
            }
        },
    ],
    ids=["dataSecretName", "configRef"],
)
async def test_bootstrap_needs_config_ref_or_data_secret_name(
    api_client: client.ApiClient, namespace: str, bootstrap: dict[str, Any]
) -> None:
    bad = _pool()
    bad["spec"]["template"]["spec"]["bootstrap"] = {}
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, bad))
    assert "spec.template.spec.bootstrap: Invalid value" in message
    assert "one of configRef or dataSecretName must be set" in message
    good = _pool()
    good["spec"]["template"]["spec"]["bootstrap"] = bootstrap
    created = await _create(api_client, MACHINE_POOL, namespace, good)
    assert created["spec"]["template"]["spec"]["bootstrap"] == bootstrap


@pytest.mark.parametrize("version", ["1.35.0", "v1.35", "latest", "v01.35.0", "v1.35.0-"])
async def test_version_must_be_a_v_prefixed_semantic_version(
    api_client: client.ApiClient, namespace: str, version: str
) -> None:
    bad = _pool()
    bad["spec"]["template"]["spec"]["version"] = version
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, bad))
    assert f'spec.template.spec.version: Invalid value: "{version}"' in message
    assert "must be a semantic version with a leading v, such as v1.35.0" in message
    machine = _machine()
    machine["spec"]["version"] = version
    message = await _rejection(_create(api_client, MACHINE, namespace, machine))
    assert "must be a semantic version with a leading v" in message


@pytest.mark.parametrize("version", ["v1.35.0", "v1.36.0-rc.1", "v1.35.4+build.7", "v0.0.0"])
async def test_semantic_versions_are_accepted(
    api_client: client.ApiClient, namespace: str, version: str
) -> None:
    good = _pool()
    good["spec"]["template"]["spec"]["version"] = version
    created = await _create(api_client, MACHINE_POOL, namespace, good)
    assert created["spec"]["template"]["spec"]["version"] == version


async def test_taints_are_rejected_on_machine_pools_only(
    api_client: client.ApiClient, namespace: str
) -> None:
    taints = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule",
               "propagation": "Always"}]  # fmt: skip
    bad = _pool()
    bad["spec"]["template"]["spec"]["taints"] = taints
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, bad))
    assert "spec.template.spec.taints: Forbidden: taints are not supported on MachinePools" in (
        message
    )
    machine = _machine()
    machine["spec"]["taints"] = taints
    created = await _create(api_client, MACHINE, namespace, machine)
    assert created["spec"]["taints"] == taints


async def test_provider_ids_must_be_unique(api_client: client.ApiClient, namespace: str) -> None:
    # A `set` list: the API server rejects duplicates itself (a CEL uniqueness rule over
    # 10,000 items would exceed the CRD cost budget, see controller.api.providerid).
    bad = _pool(providerIDList=["inmemory:///a/i-1", "inmemory:///a/i-2", "inmemory:///a/i-1"])
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, bad))
    assert 'spec.providerIDList[2]: Duplicate value: "inmemory:///a/i-1"' in message
    good = _pool(providerIDList=["inmemory:///a/i-1", "inmemory:///a/i-2"])
    created = await _create(api_client, MACHINE_POOL, namespace, good)
    assert created["spec"]["providerIDList"] == ["inmemory:///a/i-1", "inmemory:///a/i-2"]


# ------------------------------------------------------------------ defaults


async def test_replicas_default_to_one_and_an_explicit_value_is_kept(
    api_client: client.ApiClient, namespace: str
) -> None:
    created = await _create(api_client, MACHINE_POOL, namespace, _pool("a"))
    assert created["spec"]["replicas"] == 1
    created = await _create(api_client, MACHINE_POOL, namespace, _pool("b", replicas=0))
    assert created["spec"]["replicas"] == 0


async def test_node_deletion_timeout_defaults_to_ten_seconds(
    api_client: client.ApiClient, namespace: str
) -> None:
    created = await _create(api_client, MACHINE_POOL, namespace, _pool("a"))
    assert created["spec"]["template"]["spec"]["deletion"] == {"nodeDeletionTimeoutSeconds": 10}
    pool = MachinePool.from_dict(created)
    assert pool.spec.template.spec.deletion.node_deletion_timeout_seconds == 10
    assert pool.to_dict() == created

    explicit = _pool("b")
    explicit["spec"]["template"]["spec"]["deletion"] = {
        "nodeDeletionTimeoutSeconds": 0,
        "nodeDrainTimeoutSeconds": 60,
    }
    created = await _create(api_client, MACHINE_POOL, namespace, copy.deepcopy(explicit))
    assert created["spec"]["template"]["spec"]["deletion"] == {
        "nodeDeletionTimeoutSeconds": 0,
        "nodeDrainTimeoutSeconds": 60,
    }

    machine = await _create(api_client, MACHINE, namespace, _machine())
    assert machine["spec"]["deletion"] == {"nodeDeletionTimeoutSeconds": 10}
    assert Machine.from_dict(machine).to_dict() == machine


# ------------------------------------------------------------------ CRD labels


async def test_crds_carry_the_contract_provider_and_clusterctl_labels(
    api_client: client.ApiClient,
) -> None:
    extensions = client.ApiextensionsV1Api(api_client)
    labels = {
        kind.kind: (await extensions.read_custom_resource_definition(kind.crd_name)).metadata.labels
        for kind in ALL_KINDS
    }
    for kind in ("Cluster", "Machine", "MachinePool"):
        assert labels[kind]["cluster.x-k8s.io/v1beta2"] == "v1beta2"
        assert labels[kind]["cluster.x-k8s.io/provider"] == "cluster-api"
    for kind in ("InMemoryMachinePool", "InMemoryMachine"):
        assert labels[kind]["cluster.x-k8s.io/v1beta2"] == "v1alpha1"
        assert labels[kind]["cluster.x-k8s.io/provider"] == "infrastructure-inmemory"
    for kind, kind_labels in labels.items():
        assert kind_labels["clusterctl.cluster.x-k8s.io"] == "", kind
        assert "clusterctl.cluster.x-k8s.io/move-hierarchy" not in kind_labels, kind
    moved = sorted(k for k, v in labels.items() if "clusterctl.cluster.x-k8s.io/move" in v)
    assert moved == ["InMemoryMachine", "InMemoryMachinePool", "MachinePool"]
