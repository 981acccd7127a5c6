"""A MachinePool's whole life on the real API server: create, read, merge patch, server-side
apply, watch and delete; fields written by others survive our typed round trip."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import MACHINE_POOL
from controller.api.machinepool import MachinePool
from controller.runtime.finalizers import add_finalizer, remove_finalizer
from controller.runtime.kube import KubeClient, RestMetrics


def _pool(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "replicas": 2,
            "template": {
                "spec": {
                    "clusterName": "c1",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "InMemoryMachinePool",
                        "name": name,
                    },
                }
            },
        },
    }


async def test_create_read_patch_apply_watch_delete(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    created = await kube.create(MACHINE_POOL, namespace=namespace, body=_pool("mp1"))
    rv = created["metadata"]["resourceVersion"]
    events: list[tuple[str, int | None]] = []

    async def watch() -> None:
        async for event in kube.watch(
            MACHINE_POOL, namespace=namespace, resource_version=rv, timeout_seconds=30
        ):
            if event["type"] == "BOOKMARK":
                continue
            events.append((event["type"], event["object"]["spec"].get("replicas")))
            if event["type"] == "DELETED":
                return

    watcher = asyncio.create_task(watch())

    read = MachinePool.from_dict(await kube.get(MACHINE_POOL, namespace=namespace, name="mp1"))
    assert read.spec.replicas == 2
    assert read.spec.template.spec.bootstrap.data_secret_name == "boot"

    # Someone else's annotation, then our typed round trip and merge patch: it survives.
    await kube.merge_patch(
        MACHINE_POOL, namespace=namespace, name="mp1",
        patch={"metadata": {"annotations": {"example.com/owner": "team-a"}}},
    )  # fmt: skip
    current = MachinePool.from_dict(await kube.get(MACHINE_POOL, namespace=namespace, name="mp1"))
    current.spec.replicas = 3
    patched = await kube.merge_patch(
        MACHINE_POOL, namespace=namespace, name="mp1",
        patch={"spec": {"replicas": current.spec.replicas}},
        resource_version=current.metadata.resource_version,
    )  # fmt: skip
    assert patched["spec"]["replicas"] == 3
    assert patched["metadata"]["annotations"]["example.com/owner"] == "team-a"

    applied = await kube.apply(
        MACHINE_POOL,
        namespace=namespace,
        name="mp1",
        body={
            "apiVersion": MACHINE_POOL.api_version,
            "kind": MACHINE_POOL.kind,
            "metadata": {"name": "mp1", "labels": {"tier": "workers"}},
            "spec": {**_pool("mp1")["spec"], "replicas": 4},  # type: ignore[dict-item]
        },
    )
    assert applied["spec"]["replicas"] == 4
    assert applied["metadata"]["labels"]["tier"] == "workers"
    assert applied["metadata"]["annotations"]["example.com/owner"] == "team-a"
    managers = {m["manager"] for m in applied["metadata"]["managedFields"]}
    assert "machinepool-controller" in managers

    await kube.delete(MACHINE_POOL, namespace=namespace, name="mp1")
    async with asyncio.timeout(30):
        await watcher
    assert events == [("MODIFIED", 2), ("MODIFIED", 3), ("MODIFIED", 4), ("DELETED", 4)]


async def test_adding_a_finalizer_keeps_what_the_same_manager_applied(
    api_client: client.ApiClient, namespace: str
) -> None:
    """Server-side apply removes fields a manager applied before and omits now; the finalizer
    must not take the spec with it when the pool was applied under the controller's name."""
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    body = {"apiVersion": MACHINE_POOL.api_version, "kind": MACHINE_POOL.kind, **_pool("mp2")}
    created = await kube.apply(MACHINE_POOL, namespace=namespace, name="mp2", body=body)
    await add_finalizer(kube=kube, resource=MACHINE_POOL, obj=created, finalizer="example.com/f")
    after = await kube.get(MACHINE_POOL, namespace=namespace, name="mp2")
    assert after["metadata"]["finalizers"] == ["example.com/f"]
    assert after["spec"]["replicas"] == 2
    assert await remove_finalizer(
        kube=kube, resource=MACHINE_POOL, obj=after, finalizer="example.com/f"
    )
    final = await kube.get(MACHINE_POOL, namespace=namespace, name="mp2")
    assert not final["metadata"].get("finalizers")
