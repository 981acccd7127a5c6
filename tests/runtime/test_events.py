"""The event recorder against the real API server: what an Event carries, how repeats become
one Event with a series count, where cluster-scoped objects' Events go, the spam filter, and
that failures stay inside the recorder."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.events import EventRecorder
from controller.runtime.kube import EVENTS, NAMESPACES, KubeClient, Resource, RestMetrics
from controller.runtime.store import Obj

T = TypeVar("T")
CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap")


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


async def _configmap(kube: KubeClient, *, namespace: str, name: str = "subject") -> Obj:
    return await kube.create(
        CONFIGMAPS,
        namespace=namespace,
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
    )


async def _events_about(kube: KubeClient, *, namespace: str, uid: str) -> list[Obj]:
    items: list[Obj] = (await kube.list(EVENTS, namespace=namespace))["items"]
    return [e for e in items if e.get("regarding", {}).get("uid") == uid]


async def _eventually(
    probe: Callable[[], Awaitable[T]], *, check: Callable[[T], bool], timeout: float = 10
) -> T:
    """Await ``probe()`` every 50 ms until ``check`` accepts its value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def test_event_carries_what_it_is_about(api_client: client.ApiClient, namespace: str) -> None:
    kube = _kube(api_client)
    cm = await _configmap(kube, namespace=namespace)
    uid = cm["metadata"]["uid"]
    async with EventRecorder(kube=kube, instance="test-instance") as recorder:
        began = time.monotonic()
        recorder.event(
            cm,
            type="Warning",
            reason="ScaleFailed",
            message="could not scale: boom",
            action="Scale",
        )
        assert time.monotonic() - began < 0.05  # queued, not written inline
        # Written in the background, not only at exit.
        await _eventually(
            lambda: _events_about(kube, namespace=namespace, uid=uid),
            check=lambda found: bool(found),
        )

    [event] = await _events_about(kube, namespace=namespace, uid=uid)
    assert event["metadata"]["namespace"] == namespace
    assert event["metadata"]["name"].startswith("subject.")
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "namespace": namespace,
        "name": "subject",
        "uid": uid,
        "resourceVersion": cm["metadata"]["resourceVersion"],
    }
    assert event["type"] == "Warning"
    assert event["reason"] == "ScaleFailed"
    assert event["action"] == "Scale"
    assert event["note"] == "could not scale: boom"
    assert event["reportingController"] == "machinepool-controller"
    assert event["reportingInstance"] == "test-instance"
    assert event["eventTime"]
    assert "series" not in event


async def test_identical_events_become_one_series(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    cm = await _configmap(kube, namespace=namespace)
    uid = cm["metadata"]["uid"]

    def emit() -> None:
        recorder.event(cm, type="Normal", reason="Scaled", message="scaled to 3")

    async with EventRecorder(kube=kube, series_patch_interval=0.2) as recorder:
        emit()
        await _eventually(
            lambda: _events_about(kube, namespace=namespace, uid=uid),
            check=lambda found: bool(found),
        )
        for _ in range(4):
            emit()
        # The count is patched in the background...
        await _eventually(
            lambda: _events_about(kube, namespace=namespace, uid=uid),
            check=lambda found: [e.get("series", {}).get("count") for e in found] == [5],
        )
        # ...and the last repeats are flushed on exit.
        for _ in range(5):
            emit()
        # A different message is a different Event.
        recorder.event(cm, type="Normal", reason="Scaled", message="scaled to 4")

    found = await _events_about(kube, namespace=namespace, uid=uid)
    counts = sorted((e["note"], e.get("series", {}).get("count", 1)) for e in found)
    assert counts == [("scaled to 3", 10), ("scaled to 4", 1)]
    [series] = [e for e in found if e["note"] == "scaled to 3"]
    assert series["series"]["lastObservedTime"] >= series["eventTime"]


async def test_cluster_scoped_object_events_go_to_default(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    ns = await kube.get(NAMESPACES, name=namespace)
    async with EventRecorder(kube=kube) as recorder:
        recorder.event(ns, type="Normal", reason="Noticed", message="a namespace")

    [event] = await _events_about(kube, namespace="default", uid=ns["metadata"]["uid"])
    assert event["metadata"]["namespace"] == "default"
    assert event["regarding"]["kind"] == "Namespace"
    assert event["regarding"]["name"] == namespace
    assert "namespace" not in event["regarding"]


async def test_spam_filter_limits_new_events_per_object(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    noisy = await _configmap(kube, namespace=namespace, name="noisy")
    quiet = await _configmap(kube, namespace=namespace, name="quiet")
    async with EventRecorder(kube=kube, spam_burst=3) as recorder:
        for i in range(6):
            recorder.event(noisy, type="Warning", reason=f"Reason{i}", message="x")
        for _ in range(4):  # repeats of an admitted Event cost no token
            recorder.event(noisy, type="Warning", reason="Reason0", message="x")
        recorder.event(quiet, type="Normal", reason="Other", message="y")  # its own bucket

    noisy_events = await _events_about(kube, namespace=namespace, uid=noisy["metadata"]["uid"])
    assert sorted(e["reason"] for e in noisy_events) == ["Reason0", "Reason1", "Reason2"]
    [first] = [e for e in noisy_events if e["reason"] == "Reason0"]
    assert first["series"]["count"] == 5
    assert len(await _events_about(kube, namespace=namespace, uid=quiet["metadata"]["uid"])) == 1


async def test_failures_and_bad_calls_never_reach_the_caller(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    cm = await _configmap(kube, namespace=namespace)
    missing_ns = f"missing-{uuid.uuid4().hex[:8]}"
    ghost: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "namespace": missing_ns, "uid": str(uuid.uuid4())},
    }
    recorder = EventRecorder(kube=kube, flush_timeout=5)
    async with recorder:
        recorder.event(ghost, type="Warning", reason="Nowhere", message="no such namespace")
        recorder.event({"metadata": {}}, type="Normal", reason="NoName", message="?")
        recorder.event(cm, type="Bogus", reason="BadType", message="?")  # type: ignore[arg-type]
        recorder.event(cm, type="Normal", reason="", message="no reason")
        recorder.event(cm, type="Normal", reason="Fine", message="n" * 5000)
    began = time.monotonic()
    recorder.event(cm, type="Normal", reason="Late", message="after exit")  # dropped
    assert time.monotonic() - began < 0.05

    [event] = await _events_about(kube, namespace=namespace, uid=cm["metadata"]["uid"])
    assert event["reason"] == "Fine"
    assert len(event["note"].encode()) <= 1024
    assert event["note"].endswith("...")
