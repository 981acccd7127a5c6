"""The generated CRDs as a real kube-apiserver enforces them: bad objects get a 422 that says why.

Also checks what only a server can show: schema defaults, the scale subresource, pruning of
unknown fields, and that a real Cluster API Cluster manifest is stored whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from controller.api import (
    CLUSTER,
    IN_MEMORY_MACHINE_POOL,
    MACHINE_POOL,
    Cluster,
    InMemoryMachinePool,
    Kind,
    MachinePool,
)
from tests.api import manifests

pytestmark = pytest.mark.integration

# A merge patch (the client's default for custom objects is a JSON patch).
_MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


def _pool(name: str = "workers") -> dict[str, Any]:
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachinePool",
        "metadata": {"name": name},
        "spec": {
            "clusterName": "demo",
            "template": {
                "spec": {
                    "clusterName": "demo",
                    "bootstrap": {"dataSecretName": "workers-bootstrap"},
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "InMemoryMachinePool",
                        "name": name,
                    },
                }
            },
        },
    }


async def _create(
    api: client.ApiClient, kind: Kind, namespace: str, body: dict[str, Any]
) -> dict[str, Any]:
    created: dict[str, Any] = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, body
    )
    return created


async def _rejection(call: Awaitable[Any]) -> str:
    """The API server's message for a call that must fail with 422 Unprocessable Entity."""
    with pytest.raises(ApiException) as caught:
        await call
    assert caught.value.status == 422, caught.value.body
    body = caught.value.body
    assert body is not None
    message: str = json.loads(body)["message"]
    return message


async def test_a_valid_machine_pool_is_accepted_and_replicas_defaults_to_one(
    api_client: client.ApiClient, namespace: str
) -> None:
    created = await _create(api_client, MACHINE_POOL, namespace, _pool())
    assert created["spec"]["replicas"] == 1
    pool = MachinePool.from_dict(created)
    assert pool.spec.replicas == 1
    assert pool.to_dict() == created


async def test_negative_replicas_are_rejected(api_client: client.ApiClient, namespace: str) -> None:
    body = _pool()
    body["spec"]["replicas"] = -1
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "spec.replicas: Invalid value: -1" in message
    assert "greater than or equal to 0" in message


async def test_empty_cluster_name_is_rejected(api_client: client.ApiClient, namespace: str) -> None:
    body = _pool()
    body["spec"]["clusterName"] = ""
    body["spec"]["template"]["spec"]["clusterName"] = ""
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert 'spec.clusterName: Invalid value: ""' in message
    assert "at least 1 chars long" in message


async def test_more_than_10000_provider_ids_are_rejected(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["providerIDList"] = [f"inmemory:///zone-a/i-{n:05d}" for n in range(10001)]
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "spec.providerIDList: Too many: 10001: must have at most 10000 items" in message


async def test_10000_provider_ids_are_accepted(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["providerIDList"] = [f"inmemory:///zone-a/i-{n:05d}" for n in range(10000)]
    created = await _create(api_client, MACHINE_POOL, namespace, body)
    assert len(created["spec"]["providerIDList"]) == 10000


async def test_duplicate_provider_ids_are_rejected(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["providerIDList"] = ["inmemory:///a/i-1", "inmemory:///a/i-2", "inmemory:///a/i-1"]
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert 'spec.providerIDList[2]: Duplicate value: "inmemory:///a/i-1"' in message


async def test_a_provider_id_over_512_characters_is_rejected(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["providerIDList"] = ["x" * 513]
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "spec.providerIDList[0]: Too long: may not be" in message


async def test_a_phase_outside_the_enum_is_rejected(
    api_client: client.ApiClient, namespace: str
) -> None:
    await _create(api_client, MACHINE_POOL, namespace, _pool())
    patch = client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        MACHINE_POOL.group,
        MACHINE_POOL.version,
        namespace,
        MACHINE_POOL.plural,
        "workers",
        {"status": {"phase": "Exploded"}},
        **_MERGE_PATCH,
    )
    message = await _rejection(patch)
    assert 'status.phase: Unsupported value: "Exploded"' in message
    assert '"ScalingUp"' in message


async def test_cluster_name_must_match_the_template_and_cannot_change(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["template"]["spec"]["clusterName"] = "other"
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "spec.template.spec.clusterName: Invalid value" in message
    assert "must equal spec.clusterName" in message

    await _create(api_client, MACHINE_POOL, namespace, _pool())
    change = {"spec": {"clusterName": "renamed", "template": {"spec": {"clusterName": "renamed"}}}}
    patch = client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        MACHINE_POOL.group,
        MACHINE_POOL.version,
        namespace,
        MACHINE_POOL.plural,
        "workers",
        change,
        **_MERGE_PATCH,
    )
    message = await _rejection(patch)
    assert 'spec.clusterName: Invalid value: "renamed": is immutable' in message


async def test_bootstrap_needs_a_source_and_taints_are_forbidden(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = _pool()
    body["spec"]["template"]["spec"]["bootstrap"] = {}
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "one of configRef or dataSecretName must be set" in message

    body = _pool()
    body["spec"]["template"]["spec"]["taints"] = [
        {"key": "dedicated", "effect": "NoSchedule", "propagation": "Always"}
    ]
    message = await _rejection(_create(api_client, MACHINE_POOL, namespace, body))
    assert "spec.template.spec.taints: Forbidden: taints are not supported" in message


async def test_scale_subresource_reads_and_writes_replicas(
    api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    args = (MACHINE_POOL.group, MACHINE_POOL.version, namespace, MACHINE_POOL.plural, "workers")
    body = _pool()
    body["spec"]["replicas"] = 2
    await _create(api_client, MACHINE_POOL, namespace, body)
    await objects.patch_namespaced_custom_object_status(
        *args,
        {"status": {"replicas": 1, "selector": "cluster.x-k8s.io/pool-name=workers"}},
        **_MERGE_PATCH,
    )

    scale = await objects.get_namespaced_custom_object_scale(*args)
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "cluster.x-k8s.io/pool-name=workers"}

    await objects.patch_namespaced_custom_object_scale(
        *args, {"spec": {"replicas": 5}}, **_MERGE_PATCH
    )
    stored = MachinePool.from_dict(await objects.get_namespaced_custom_object(*args))
    assert stored.spec.replicas == 5


async def test_the_capi_style_manifest_is_accepted_and_unknown_fields_are_pruned(
    api_client: client.ApiClient, namespace: str
) -> None:
    body = manifests.machine_pool()
    del body["status"], body["metadata"]["managedFields"], body["metadata"]["ownerReferences"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "namespace"):
        del body["metadata"][key]
    body["spec"]["someFutureField"] = "pruned by the API server"
    created = await _create(api_client, MACHINE_POOL, namespace, copy.deepcopy(body))
    del body["spec"]["someFutureField"]
    assert created["spec"] == body["spec"]
    assert MachinePool.from_dict(created).to_dict() == created


async def test_a_capi_cluster_is_stored_whole(api_client: client.ApiClient, namespace: str) -> None:
    body = manifests.cluster()
    del body["status"], body["metadata"]["namespace"]
    created = await _create(api_client, CLUSTER, namespace, copy.deepcopy(body))
    assert created["spec"] == body["spec"]
    assert Cluster.from_dict(created).to_dict() == created


async def test_in_memory_machine_pool_rules(api_client: client.ApiClient, namespace: str) -> None:
    body = manifests.in_memory_machine_pool()
    del body["status"], body["metadata"]["namespace"]
    created = await _create(api_client, IN_MEMORY_MACHINE_POOL, namespace, copy.deepcopy(body))
    assert InMemoryMachinePool.from_dict(created).spec == InMemoryMachinePool.from_dict(body).spec

    minimal = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": "m"}}
    created = await _create(api_client, IN_MEMORY_MACHINE_POOL, namespace, minimal)
    assert "spec" not in created  # defaults apply only inside objects that exist
    created = await _create(
        api_client,
        IN_MEMORY_MACHINE_POOL,
        namespace,
        {**minimal, "metadata": {"name": "d"}, "spec": {}},
    )
    assert created["spec"] == {"deletePolicy": "Oldest"}

    bad_sizes = {**minimal, "metadata": {"name": "b1"}, "spec": {"minSize": 3, "maxSize": 2}}
    message = await _rejection(_create(api_client, IN_MEMORY_MACHINE_POOL, namespace, bad_sizes))
    assert "spec.minSize: Invalid value" in message
    assert "minSize must not exceed maxSize" in message

    for name, surge in (("b2", "abc"), ("b3", -1), ("b4", "5")):
        bad = {
            **minimal,
            "metadata": {"name": name},
            "spec": {"strategy": {"rollingUpdate": {"maxSurge": surge}}},
        }
        message = await _rejection(_create(api_client, IN_MEMORY_MACHINE_POOL, namespace, bad))
        assert "spec.strategy.rollingUpdate.maxSurge" in message
        assert "must be a non-negative integer or a percentage" in message

    duplicate = {**minimal, "metadata": {"name": "b5"}, "spec": {"providerIDList": ["a", "a"]}}
    message = await _rejection(_create(api_client, IN_MEMORY_MACHINE_POOL, namespace, duplicate))
    assert 'spec.providerIDList[1]: Duplicate value: "a"' in message
