"""ObjectScope against the real API server: one request per changed subresource, none when
nothing changed, the one conflict policy (409 and 404 are dropped, not raised), and the
generation restamp after the object's own spec write."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import MACHINE_HEALTH_CHECK
from controller.runtime.conditions import Cond
from controller.runtime.kube import KubeClient, RestMetrics
from controller.runtime.scope import ObjectScope, Outcome
from controller.runtime.store import Obj

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _kube(api: client.ApiClient) -> tuple[KubeClient, CollectorRegistry]:
    registry = CollectorRegistry()
    return KubeClient(api=api, metrics=RestMetrics(registry=registry)), registry


def _patches(registry: CollectorRegistry) -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("method") == "PATCH":
                total += sample.value
    return total


async def _mhc(kube: KubeClient, namespace: str, name: str = "subject") -> Obj:
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"keep": "me"}},
        "spec": {"clusterName": "c1", "selector": {"matchLabels": {"pool": "a"}}},
    }
    return await kube.create(MACHINE_HEALTH_CHECK, namespace=namespace, body=body)


async def test_a_commit_that_changes_nothing_sends_nothing(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, registry = _kube(api_client)
    obj = await _mhc(kube, namespace)
    scope = ObjectScope(kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj)
    before = _patches(registry)
    assert await scope.commit() is Outcome.UNCHANGED
    assert _patches(registry) == before


async def test_metadata_and_spec_in_one_request_status_in_another_then_nothing(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, registry = _kube(api_client)
    obj = await _mhc(kube, namespace)
    scope = ObjectScope(kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj)
    scope.obj["metadata"]["labels"]["added"] = "yes"
    scope.obj["spec"]["selector"] = {"matchLabels": {"pool": "b"}}
    scope.status["expectedMachines"] = 3
    scope.condition(Cond(type="Paused", status="False", reason="NotPaused"))
    start = _patches(registry)
    assert await scope.commit(observed=True) is Outcome.WRITTEN
    assert _patches(registry) - start == 2

    live = await kube.get(MACHINE_HEALTH_CHECK, namespace=namespace, name="subject")
    assert live["metadata"]["labels"] == {"keep": "me", "added": "yes"}
    assert live["spec"]["selector"] == {"matchLabels": {"pool": "b"}}
    assert live["status"]["expectedMachines"] == 3
    # The spec write bumped the generation: this reconcile observed the spec it wrote.
    assert live["metadata"]["generation"] == obj["metadata"]["generation"] + 1
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"]
    assert live["status"]["conditions"][0]["observedGeneration"] == live["metadata"]["generation"]

    # A second commit of the same working copy sends only what changed since: nothing.
    assert await scope.commit(observed=True) is Outcome.UNCHANGED
    scope.status["currentHealthy"] = 1
    assert await scope.commit(observed=True) is Outcome.WRITTEN
    assert _patches(registry) - start == 3


async def test_a_status_only_change_is_one_status_request(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, registry = _kube(api_client)
    obj = await _mhc(kube, namespace)
    scope = ObjectScope(kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj)
    scope.status["expectedMachines"] = 1
    start = _patches(registry)
    assert await scope.commit() is Outcome.WRITTEN
    assert _patches(registry) - start == 1
    live = await kube.get(MACHINE_HEALTH_CHECK, namespace=namespace, name="subject")
    assert live["metadata"]["generation"] == obj["metadata"]["generation"]
    assert live["status"]["expectedMachines"] == 1


async def test_with_a_precondition_a_stale_copy_is_dropped_and_the_newer_write_survives(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, _ = _kube(api_client)
    obj = await _mhc(kube, namespace)
    await kube.merge_patch(
        MACHINE_HEALTH_CHECK, namespace=namespace, name="subject", subresource="status",
        patch={"status": {"expectedMachines": 7}},
    )  # fmt: skip
    scope = ObjectScope(kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj, precondition=True)
    scope.status["expectedMachines"] = 1
    assert await scope.commit() is Outcome.STALE
    live = await kube.get(MACHINE_HEALTH_CHECK, namespace=namespace, name="subject")
    assert live["status"]["expectedMachines"] == 7


async def test_without_a_precondition_the_last_write_wins(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, _ = _kube(api_client)
    obj = await _mhc(kube, namespace)
    await kube.merge_patch(
        MACHINE_HEALTH_CHECK, namespace=namespace, name="subject", subresource="status",
        patch={"status": {"expectedMachines": 7}},
    )  # fmt: skip
    scope = ObjectScope(kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj)
    scope.status["currentHealthy"] = 1
    assert await scope.commit() is Outcome.WRITTEN
    live = await kube.get(MACHINE_HEALTH_CHECK, namespace=namespace, name="subject")
    assert live["status"]["expectedMachines"] == 7
    assert live["status"]["currentHealthy"] == 1


async def test_an_object_deleted_meanwhile_is_gone_not_an_error_and_events_still_go(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube, _ = _kube(api_client)
    obj = await _mhc(kube, namespace)
    await kube.delete(MACHINE_HEALTH_CHECK, namespace=namespace, name="subject")
    for precondition in (False, True):
        scope = ObjectScope(
            kube=kube, resource=MACHINE_HEALTH_CHECK, obj=obj, precondition=precondition
        )
        scope.obj["metadata"]["labels"]["added"] = "yes"
        scope.status["expectedMachines"] = 1
        scope.event("Normal", "Checked", "checked")
        assert await scope.commit() is Outcome.GONE
        assert scope.events == []  # handed on (no recorder here: dropped)


async def test_paused_names_each_reason_and_conditions_use_the_generation() -> None:
    obj: Obj = {
        "kind": "MachineHealthCheck",
        "metadata": {"name": "x", "namespace": "n", "generation": 4,
                     "annotations": {"cluster.x-k8s.io/paused": ""}},
    }  # fmt: skip
    scope = ObjectScope(kube=None, resource=MACHINE_HEALTH_CHECK, obj=obj)  # type: ignore[arg-type]
    assert scope.paused(cluster=None) == (
        "MachineHealthCheck has the cluster.x-k8s.io/paused annotation"
    )
    assert scope.paused(cluster={"spec": {"paused": True}}).startswith(
        "Cluster spec.paused is set to true; "
    )
    del obj["metadata"]["annotations"]
    assert (
        ObjectScope(kube=None, resource=MACHINE_HEALTH_CHECK, obj=obj).paused(  # type: ignore[arg-type]
            cluster={"spec": {}}
        )
        == ""
    )
    scope.condition(Cond(type="Ready", status="True", reason="Ready"))
    assert scope.status["conditions"][0]["observedGeneration"] == 4
    scope.remove_condition("Ready")
    assert scope.status["conditions"] == []
    scope.requeue(5)
    scope.requeue(0.01)
    scope.requeue(9)
    assert scope.requeue_after == 0.1
