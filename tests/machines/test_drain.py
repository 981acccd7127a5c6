"""Drain against the real API server: Nodes and Pods are plain objects bound by
``spec.nodeName``; there is no kubelet, so a test finishes an evicted pod's deletion itself
(as the kubelet would) where it needs the pod gone.

Without kube-controller-manager nobody computes a PodDisruptionBudget's status, so the tests
write it through the status subresource. The Eviction API reads it like this
(k8s.io/kubernetes v1.35.4, pkg/registry/core/pod/storage/eviction.go): a pod that is
Pending, Succeeded, Failed or already deleting bypasses every budget (``canIgnorePDB``); a
Running pod that is not Ready is evicted without touching the budget when
``currentHealthy >= desiredHealthy > 0``; otherwise ``checkAndDecrement`` answers 429 while
``status.observedGeneration < metadata.generation`` ("still being processed") or when
``disruptionsAllowed == 0`` ("needs N healthy pods and has M currently"), and else
decrements ``disruptionsAllowed`` and evicts. So protected pods here are Running and Ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.machines.drain import (
    DrainStatus,
    cordon,
    drain_deadline_passed,
    drain_excluded,
    drain_step,
)
from controller.runtime.kube import NODES, PODS, ApiError, KubeClient, Resource, RestMetrics

PDBS = Resource(
    group="policy", version="v1", plural="poddisruptionbudgets", kind="PodDisruptionBudget"
)


@pytest.fixture
def kube(api_client: client.ApiClient) -> KubeClient:
    return KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))


@contextlib.asynccontextmanager
async def a_node(kube: KubeClient, name: str) -> AsyncIterator[str]:
    await kube.create(NODES, body={"metadata": {"name": name}})
    try:
        yield name
    finally:
        listed = await kube.list(PODS, field_selector=f"spec.nodeName={name}")
        for pod in listed.get("items", []):
            await _force_delete(kube, pod)
        with contextlib.suppress(ApiError):
            await kube.delete(NODES, name=name)


async def _force_delete(kube: KubeClient, pod: dict[str, Any]) -> None:
    """What a kubelet does once a pod's containers stopped."""
    meta = pod["metadata"]
    with contextlib.suppress(ApiError):
        await kube.request(
            method="DELETE",
            path=PODS.path(namespace=meta["namespace"], name=meta["name"]),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
        )


async def _pod(
    kube: KubeClient,
    *,
    namespace: str,
    name: str,
    node: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    phase: str | None = "Running",
    ready: bool = True,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    pod = await kube.create(
        PODS,
        namespace=namespace,
        body={
            "metadata": meta,
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            },
        },
    )
    if phase is not None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pod = await kube.merge_patch(
            PODS,
            namespace=namespace,
            name=name,
            subresource="status",
            patch={
                "status": {
                    "phase": phase,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "lastTransitionTime": stamp,
                        }
                    ],
                }
            },
        )
    return pod


async def _names(kube: KubeClient, node: str) -> set[str]:
    listed = await kube.list(PODS, field_selector=f"spec.nodeName={node}")
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in listed["items"]}


async def _finish_deleting(kube: KubeClient, node: str) -> None:
    listed = await kube.list(PODS, field_selector=f"spec.nodeName={node}")
    for pod in listed["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            await _force_delete(kube, pod)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_plain_pods_are_evicted_then_waited_for(kube: KubeClient, namespace: str) -> None:
    async with a_node(kube, f"{namespace}-n") as node:
        await _pod(kube, namespace=namespace, name="a", node=node)
        await _pod(kube, namespace=namespace, name="b", node=node, phase=None)  # Pending
        await cordon(kube=kube, node=node)
        assert (await kube.get(NODES, name=node))["spec"]["unschedulable"] is True

        first = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert not first.done
        assert sorted(first.evicted) == [f"{namespace}/a", f"{namespace}/b"]
        assert first.message == "2 pods evicted"
        # Evicted pods bound to a Node terminate gracefully: they stay until their kubelet is done.
        assert await _names(kube, node) == {f"{namespace}/a", f"{namespace}/b"}

        second = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert sorted(second.waiting) == [f"{namespace}/a", f"{namespace}/b"]
        assert not second.done
        assert not second.evicted
        assert second.message == "2 pods terminating"

        await _finish_deleting(kube, node)
        third = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert third.done
        assert third.message == "Node drained"


async def test_daemonset_mirror_and_finished_pods_are_skipped(
    kube: KubeClient, namespace: str
) -> None:
    async with a_node(kube, f"{namespace}-n") as node:
        await _pod(
            kube,
            namespace=namespace,
            name="ds",
            node=node,
            owner={
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": "agent",
                "uid": "8f4c1c9e-0000-4000-8000-000000000001",
                "controller": True,
            },
        )
        await _pod(
            kube,
            namespace=namespace,
            name="static",
            node=node,
            annotations={"kubernetes.io/config.mirror": "abc"},
        )
        await _pod(kube, namespace=namespace, name="done", node=node, phase="Succeeded")
        await _pod(kube, namespace=namespace, name="crashed", node=node, phase="Failed")

        status = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert status.done
        assert sorted(status.skipped) == sorted(
            f"{namespace}/{n}" for n in ("ds", "static", "done", "crashed")
        )
        assert status.evicted == ()
        assert status.message == "Node drained (4 pods skipped)"
        assert len(await _names(kube, node)) == 4  # nothing was touched


async def test_a_pdb_blocks_until_its_status_allows_a_disruption(
    kube: KubeClient, namespace: str
) -> None:
    async with a_node(kube, f"{namespace}-n") as node:
        await kube.create(
            PDBS,
            namespace=namespace,
            body={
                "metadata": {"name": "web"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            },
        )
        await _pod(kube, namespace=namespace, name="web-0", node=node, labels={"app": "web"})
        await _pod(kube, namespace=namespace, name="free", node=node)
        web = f"{namespace}/web-0"

        # No disruption controller has observed the budget yet (observedGeneration 0 < 1).
        status = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert status.blocked == {
            web: "The disruption budget web is still being processed by the server."
        }
        assert status.evicted == (f"{namespace}/free",)  # one budget does not hold up the rest
        assert not status.done

        async def budget(*, allowed: int, healthy: int) -> None:
            await kube.merge_patch(
                PDBS,
                namespace=namespace,
                name="web",
                subresource="status",
                patch={
                    "status": {
                        "observedGeneration": 1,
                        "disruptionsAllowed": allowed,
                        "currentHealthy": healthy,
                        "desiredHealthy": 1,
                        "expectedPods": healthy,
                    }
                },
            )

        await budget(allowed=0, healthy=1)
        await _finish_deleting(kube, node)
        status = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert status.blocked == {
            web: "The disruption budget web needs 1 healthy pods and has 1 currently"
        }
        assert status.message == f"1 pod blocked by PodDisruptionBudget: {web}"
        assert not status.done
        assert status.evicted == ()

        await budget(allowed=1, healthy=2)
        status = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert status.evicted == (web,)
        assert status.blocked == {}
        pdb = await kube.get(PDBS, namespace=namespace, name="web")
        assert pdb["status"]["disruptionsAllowed"] == 0  # the API server spent the budget
        assert "web-0" in pdb["status"]["disruptedPods"]

        await _finish_deleting(kube, node)
        assert (await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)).done


async def test_an_unreachable_node_abandons_pods_whose_grace_period_ended(
    kube: KubeClient, namespace: str
) -> None:
    async with a_node(kube, f"{namespace}-n") as node:
        await _pod(kube, namespace=namespace, name="a", node=node)
        await _pod(kube, namespace=namespace, name="b", node=node)
        first = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=True)
        assert sorted(first.evicted) == [f"{namespace}/a", f"{namespace}/b"]

        # Within the grace period (30 s by default) they are still waited for ...
        now = _now()
        status = await drain_step(kube=kube, node=node, now=now, node_unreachable=True)
        assert not status.done
        assert len(status.waiting) == 2
        # ... and once it is over, nobody will finish them: the drain is done.
        later = now + timedelta(seconds=60)
        status = await drain_step(kube=kube, node=node, now=later, node_unreachable=True)
        assert status.done
        assert sorted(status.skipped) == [f"{namespace}/a", f"{namespace}/b"]
        # The same pods on a reachable Node are still waited for.
        status = await drain_step(kube=kube, node=node, now=later, node_unreachable=False)
        assert not status.done
        assert len(status.waiting) == 2


async def test_cordon_and_drain_of_a_node_that_is_gone(kube: KubeClient, namespace: str) -> None:
    await cordon(kube=kube, node=f"{namespace}-never-existed")
    status = await drain_step(
        kube=kube, node=f"{namespace}-never-existed", now=_now(), node_unreachable=True
    )
    assert status.done
    assert status.skipped == ()


async def test_a_pod_under_two_budgets_fails_eviction_without_stopping_the_others(
    kube: KubeClient, namespace: str
) -> None:
    async with a_node(kube, f"{namespace}-n") as node:
        for name in ("one", "two"):
            await kube.create(
                PDBS,
                namespace=namespace,
                body={
                    "metadata": {"name": name},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
                },
            )
        await _pod(kube, namespace=namespace, name="web-0", node=node, labels={"app": "web"})
        await _pod(kube, namespace=namespace, name="free", node=node)
        status = await drain_step(kube=kube, node=node, now=_now(), node_unreachable=False)
        assert list(status.failed) == [f"{namespace}/web-0"]
        assert "more than one PodDisruptionBudget" in status.failed[f"{namespace}/web-0"]
        assert status.evicted == (f"{namespace}/free",)
        assert not status.done


def test_drain_deadline() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert not drain_deadline_passed(started=t0, timeout_seconds=None, now=t0 + timedelta(days=9))
    assert not drain_deadline_passed(started=t0, timeout_seconds=0, now=t0 + timedelta(days=9))
    assert not drain_deadline_passed(started=t0, timeout_seconds=60, now=t0 + timedelta(seconds=59))
    assert drain_deadline_passed(started=t0, timeout_seconds=60, now=t0 + timedelta(seconds=60))


def test_exclude_node_draining_annotation() -> None:
    key = "machine.cluster.x-k8s.io/exclude-node-draining"
    assert drain_excluded({"metadata": {"annotations": {key: ""}}})
    assert not drain_excluded({"metadata": {"annotations": {"other": "x"}}})
    assert not drain_excluded({"metadata": {}})


def test_message_summarises_every_bucket() -> None:
    status = DrainStatus(
        done=False,
        evicted=("ns/e",),
        blocked={"ns/b": "x", "ns/a": "y"},
        failed={"ns/f": "500 InternalError: two budgets"},
        waiting=("ns/w",),
    )
    assert status.message == (
        "2 pods blocked by PodDisruptionBudget: ns/a, ns/b; 1 pod failed eviction: ns/f; "
        "1 pod evicted; 1 pod terminating"
    )
