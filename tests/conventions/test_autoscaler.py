"""cluster-autoscaler against us: min/max-size annotations, the scale subresource, and the
scale-from-zero capacity of the infrastructure pool, with both reconcilers running."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.machinepool.autoscaler import MAX_SIZE_ANNOTATION, MIN_SIZE_ANNOTATION
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import EVENTS, KubeClient, RestMetrics, resource_path
from controller.testing import ControlPlane
from controller.testing.scenario import (
    FAST_TEMPLATE,
    create_inmemory_pool,
    create_workload_cluster,
    machine_pool_body,
)
from controller.testing.waiting import until
from tests.conventions._running import Running, running

SELECTOR = "cluster.x-k8s.io/cluster-name=c1,cluster.x-k8s.io/pool-name=p1"


def _condition(pool: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next(
        (c for c in (pool.get("status") or {}).get("conditions", []) if c["type"] == type_), None
    )


async def _events(kube: KubeClient, namespace: str, reason: str) -> list[dict[str, Any]]:
    items = (await kube.list(EVENTS, namespace=namespace))["items"]
    return [e for e in items if e.get("reason") == reason]


async def _scale(run: Running, replicas: int) -> dict[str, Any]:
    return await run.kube.merge_patch(
        MACHINE_POOL, namespace=run.namespace, name="p1", subresource="scale",
        patch={"spec": {"replicas": replicas}},
    )  # fmt: skip


async def _get_scale(run: Running) -> dict[str, Any]:
    path = resource_path(MACHINE_POOL, namespace=run.namespace, name="p1", subresource="scale")
    return await run.kube.request(method="GET", path=path)


async def _bounds_reason(run: Running, reason: str) -> bool:
    cond = _condition(await run.pool("p1"), "AutoscalerBounds")
    return cond is not None and cond["reason"] == reason


async def test_min_size_defaults_replicas_and_scale_works_inside_and_outside_the_range(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await kube.create(
        IN_MEMORY_MACHINE_POOL, namespace=namespace,
        body={"metadata": {"name": "p1"}, "spec": {"template": dict(FAST_TEMPLATE)}},
    )  # fmt: skip
    body = machine_pool_body(name="p1", cluster="c1", replicas=0)
    del body["spec"]["replicas"]  # as cluster-autoscaler users write it: the range decides
    body["metadata"]["annotations"] = {MIN_SIZE_ANNOTATION: "3", MAX_SIZE_ANNOTATION: "5"}
    created = await kube.create(MACHINE_POOL, namespace=namespace, body=body)
    assert created["spec"]["replicas"] == 1  # the schema default, before any controller

    async with running(kube=kube, namespace=namespace) as run:
        await until(lambda: run.running_replicas("p1", 3), timeout=60, what="3 replicas")
        pool = await run.pool("p1")
        assert pool["spec"]["replicas"] == 3
        view = run.simulator.inspect(name=inmemory_group_name(namespace=namespace, name="p1"))
        assert view is not None
        assert view.desired == 3
        cond = _condition(pool, "AutoscalerBounds")
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("True", "WithinBounds")

        async def defaulted_event() -> bool:
            return bool(await _events(kube, namespace, "ReplicasDefaulted"))

        await until(defaulted_event, timeout=15, what="the ReplicasDefaulted Event")
        (event,) = await _events(kube, namespace, "ReplicasDefaulted")
        assert event["note"] == (
            "spec.replicas set to 3 (was 1) to fit the cluster-autoscaler min/max-size "
            "annotations [3, 5]"
        )

        # What cluster-autoscaler reads and writes: the scale subresource.
        scale = await _get_scale(run)
        assert scale["spec"] == {"replicas": 3}
        assert scale["status"] == {"replicas": 3, "selector": SELECTOR}

        await _scale(run, 4)  # inside [3, 5]
        await until(lambda: run.running_replicas("p1", 4), timeout=60, what="4 replicas")
        scale = await _get_scale(run)
        assert scale["status"] == {"replicas": 4, "selector": SELECTOR}

        await _scale(run, 6)  # outside: honoured (people may), and reported
        await until(lambda: run.running_replicas("p1", 6), timeout=60, what="6 replicas")
        await until(lambda: _bounds_reason(run, "ReplicasOutsideBounds"), what="outside")
        pool = await run.pool("p1")
        assert pool["spec"]["replicas"] == 6  # never clamped after the first reconcile
        cond = _condition(pool, "AutoscalerBounds")
        assert cond is not None
        assert cond["status"] == "False"
        assert "6 replicas is outside the cluster-autoscaler range [3, 5]" in cond["message"]

        # A bad annotation is a condition with a reason and a Warning, not a failure.
        await kube.merge_patch(
            MACHINE_POOL, namespace=namespace, name="p1",
            patch={"metadata": {"annotations": {MAX_SIZE_ANNOTATION: "many"}}},
        )  # fmt: skip
        await until(lambda: _bounds_reason(run, "InvalidAutoscalerAnnotations"), what="invalid")
        cond = _condition(await run.pool("p1"), "AutoscalerBounds")
        assert cond is not None
        assert f"{MAX_SIZE_ANNOTATION} is 'many', not a non-negative integer" in cond["message"]

        async def warned() -> bool:
            return bool(await _events(kube, namespace, "InvalidAutoscalerAnnotations"))

        await until(warned, timeout=15, what="the InvalidAutoscalerAnnotations Event")
        await _scale(run, 2)  # the pool still works
        await until(lambda: run.running_replicas("p1", 2), timeout=60, what="2 replicas")

        # Without the annotations the condition goes away.
        await kube.merge_patch(
            MACHINE_POOL, namespace=namespace, name="p1",
            patch={"metadata": {"annotations": {MIN_SIZE_ANNOTATION: None,
                                                MAX_SIZE_ANNOTATION: None}}},
        )  # fmt: skip

        async def no_condition() -> bool:
            return _condition(await run.pool("p1"), "AutoscalerBounds") is None

        await until(no_condition, what="AutoscalerBounds removed")


async def test_scale_from_zero_capacity_is_published_on_the_infra_pool(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await create_inmemory_pool(
        kube=kube, namespace=namespace, name="p1", replicas=0,
        template={**FAST_TEMPLATE, "instanceType": "gpu"},
    )  # fmt: skip
    await create_inmemory_pool(
        kube=kube, namespace=namespace, name="p2", replicas=0,
        template={**FAST_TEMPLATE, "instanceType": "custom-42"},
    )  # fmt: skip
    # A person's own hint for a fact the type table does not know survives.
    await kube.merge_patch(
        IN_MEMORY_MACHINE_POOL, namespace=namespace, name="p1",
        patch={"metadata": {"annotations": {
            "capacity.cluster-autoscaler.kubernetes.io/labels": "team=ml"}}},
    )  # fmt: skip
    async with running(kube=kube, namespace=namespace) as run:

        async def published() -> bool:
            infra = await run.infra("p1")
            return "capacity" in (infra.get("status") or {})

        await until(published, timeout=30, what="status.capacity")
        infra = await run.infra("p1")
        annotations = infra["metadata"]["annotations"]
        prefix = "capacity.cluster-autoscaler.kubernetes.io/"
        assert {k: v for k, v in annotations.items() if k.startswith(prefix)} == {
            prefix + "cpu": "8",
            prefix + "memory": "32Gi",
            prefix + "ephemeral-disk": "100Gi",
            prefix + "maxPods": "110",
            prefix + "gpu-type": "nvidia.com/gpu",
            prefix + "gpu-count": "1",
            prefix + "labels": "team=ml",
        }
        assert infra["status"]["capacity"] == {
            "cpu": "8",
            "memory": "32Gi",
            "ephemeral-storage": "100Gi",
            "pods": "110",
            "nvidia.com/gpu": "1",
        }
        assert infra["status"]["replicas"] == 0

        async def p2_provisioned() -> bool:
            status = (await run.infra("p2")).get("status") or {}
            return bool((status.get("initialization") or {}).get("provisioned"))

        await until(p2_provisioned, timeout=30, what="p2 provisioned")
        p2 = await run.infra("p2")
        assert "capacity" not in p2["status"]  # an unknown type publishes nothing
        assert not any(k.startswith(prefix) for k in (p2["metadata"].get("annotations") or {}))
