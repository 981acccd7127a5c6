"""Urgency: which events are a person's intent, how urgency follows writes, and how the
controller queues and requeues urgent keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.controller import Controller, Result
from controller.runtime.informer import InformerEvent
from controller.runtime.kube import ApiError, KubeClient, Resource, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.urgency import URGENT_PRIORITY, Urgency, UrgentKeys, identity, note_write
from controller.runtime.workqueue import HIGH_PRIORITY, LOW_PRIORITY
from controller.runtime.workqueue.clock import FakeClock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _obj(*, generation: int = 1, name: str = "p1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": generation}, "spec": spec}


def _modified(old: dict[str, Any], new: dict[str, Any]) -> InformerEvent:
    return InformerEvent(type="MODIFIED", obj=new, old=old)


def test_a_spec_change_is_intent_and_progress_is_not() -> None:
    urgency = Urgency(clock=Clock())
    before = _obj(replicas=3, providerIDList=["a"])
    scaled = _obj(generation=2, replicas=5, providerIDList=["a"])
    assert urgency.marks(_modified(before, scaled), kind="MachinePool")
    # The controllers' own spec write (providerIDList) and status-only changes are not.
    ids = _obj(generation=2, replicas=3, providerIDList=["a", "b"])
    assert not urgency.marks(_modified(before, ids), kind="MachinePool")
    assert not urgency.marks(_modified(before, _obj(replicas=3, providerIDList=["a"])), kind="X")
    # A deletion just asked for is intent; new objects and the initial list are not.
    deleting = _obj(replicas=3, providerIDList=["a"])
    deleting["metadata"]["deletionTimestamp"] = "2026-11-25T00:00:00Z"
    assert urgency.marks(_modified(before, deleting), kind="Machine")
    assert not urgency.marks(InformerEvent(type="ADDED", obj=scaled), kind="MachinePool")
    listed = InformerEvent(type="ADDED", obj=scaled, initial=True)
    assert not urgency.marks(listed, kind="MachinePool")
    # Listed after a restart with a spec change nobody reconciled yet: intent.
    behind = {**scaled, "status": {"observedGeneration": 1}}
    assert urgency.marks(InformerEvent(type="ADDED", obj=behind, initial=True), kind="X")
    current = {**scaled, "status": {"observedGeneration": 2}}
    assert not urgency.marks(InformerEvent(type="ADDED", obj=current, initial=True), kind="X")


async def test_writes_of_an_urgent_reconcile_touch_their_objects_until_the_ttl() -> None:
    clock = Clock()
    urgency = Urgency(clock=clock, touch_ttl=15)
    with urgency.reconciling(urgent=False):
        note_write(kind="Machine", namespace="ns", name="calm")
    with urgency.reconciling(urgent=True):
        note_write(kind="Machine", namespace="ns", name="m1")

        async def child() -> None:  # a task started by the reconcile: not its writes
            note_write(kind="Machine", namespace="ns", name="from-a-task")

        await asyncio.create_task(child())
    note_write(kind="Machine", namespace="ns", name="outside")

    assert urgency.touched(identity(kind="Machine", namespace="ns", name="m1"))
    for name in ("calm", "from-a-task", "outside"):
        assert not urgency.touched(identity(kind="Machine", namespace="ns", name=name)), name
    status_only = InformerEvent(type="MODIFIED", obj=_obj(name="m1"), old=_obj(name="m1"))
    assert urgency.marks(status_only, kind="Machine")
    assert not urgency.marks(status_only, kind="InMemoryMachine")  # another kind, same name
    clock.now += 15.1
    assert not urgency.marks(status_only, kind="Machine")


def test_a_key_stays_urgent_for_its_window_after_the_last_mark() -> None:
    clock = Clock()
    keys = UrgentKeys(urgency=Urgency(clock=clock, window=30))
    keys.mark("ns/p1")
    clock.now += 20
    keys.mark("ns/p1")
    clock.now += 20
    assert "ns/p1" in keys
    clock.now += 10.1
    assert "ns/p1" not in keys
    with pytest.raises(ValueError, match="positive"):
        Urgency(window=0)


class Recorder:
    def __init__(self, results: dict[str, Result]) -> None:
        self.results = results
        self.seen: list[str] = []

    async def reconcile(self, key: str) -> Result:
        self.seen.append(key)
        return self.results.get(key, Result())


async def test_the_controller_hands_out_urgent_keys_first_and_keeps_their_polls_urgent() -> None:
    clock = Clock()
    queue_clock = FakeClock()
    urgency = Urgency(clock=clock, window=30)
    reconciler = Recorder({"ns/p1": Result(requeue_after=5)})
    controller = Controller(
        name="t", reconciler=reconciler, registry=CollectorRegistry(), urgency=urgency,
        clock=queue_clock,
    )  # fmt: skip
    for i in range(5):
        controller.enqueue(f"ns/bulk{i}", priority=LOW_PRIORITY)
        controller.enqueue(f"ns/news{i}", priority=HIGH_PRIORITY)
    before = _obj(replicas=1)
    controller.enqueue("ns/p1", event=_modified(before, _obj(generation=2, replicas=2)), kind="K")
    key, priority = await controller.queue.get_with_priority()
    assert (key, priority) == ("ns/p1", URGENT_PRIORITY)

    # Processed urgently; the poll it asks for comes back urgent, ahead of the news.
    await controller._process(key=key, priority=priority)
    controller.queue.done(key)
    await queue_clock.advance(5)
    key, priority = await controller.queue.get_with_priority()
    assert (key, priority) == ("ns/p1", URGENT_PRIORITY)
    controller.queue.done(key)

    # A later, unremarkable event on the key is urgent while the window lasts...
    controller.enqueue("ns/p1", event=_modified(before, before), kind="K")
    key, priority = await controller.queue.get_with_priority()
    assert (key, priority) == ("ns/p1", URGENT_PRIORITY)
    controller.queue.done(key)
    # ...and plain news once it has passed.
    clock.now += 30.1
    controller.enqueue("ns/p1", event=_modified(before, before), kind="K")

    order = []
    for _ in range(11):
        key, priority = await controller.queue.get_with_priority()
        order.append(priority)
        controller.queue.done(key)
    assert order == [HIGH_PRIORITY] * 6 + [LOW_PRIORITY] * 5
    controller.queue.shutdown()


CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap")


@pytest.mark.integration
async def test_the_client_reports_each_write_through_its_hook_before_sending_it(
    api_client: client.ApiClient, namespace: str
) -> None:
    """The client's side of propagation: every write verb calls ``on_write`` with what it
    writes, before the request goes out (a hook that raises stops the write: nothing is
    created), and the manager installs the policy's hook on a client without one."""
    seen: list[tuple[str, str | None, str]] = []
    refuse: set[str] = {"refused"}

    def hook(*, kind: str, namespace: str | None, name: str) -> None:
        seen.append((kind, namespace, name))
        if name in refuse:
            raise RuntimeError("not this one")

    kube = KubeClient(
        api=api_client, metrics=RestMetrics(registry=CollectorRegistry()), on_write=hook
    )
    with pytest.raises(RuntimeError):
        await kube.create(CONFIGMAPS, namespace=namespace, body={"metadata": {"name": "refused"}})
    with pytest.raises(ApiError) as missing:
        await kube.get(CONFIGMAPS, namespace=namespace, name="refused")
    assert missing.value.status == 404
    await kube.create(CONFIGMAPS, namespace=namespace, body={"metadata": {"name": "cm"}})
    await kube.merge_patch(CONFIGMAPS, namespace=namespace, name="cm", patch={"data": {"a": "1"}})
    await kube.json_patch(
        CONFIGMAPS, namespace=namespace, name="cm",
        ops=[{"op": "add", "path": "/data/b", "value": "2"}],
    )  # fmt: skip
    await kube.apply(
        CONFIGMAPS, namespace=namespace, name="cm",
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        field_manager="hook-test",
    )  # fmt: skip
    await kube.get(CONFIGMAPS, namespace=namespace, name="cm")  # a read: not reported
    await kube.delete(CONFIGMAPS, namespace=namespace, name="cm")
    assert seen == [("ConfigMap", namespace, "refused")] + [("ConfigMap", namespace, "cm")] * 5

    options = ManagerOptions(metrics_address="0", health_address="0")
    plain = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    Manager(kube=plain, options=options, registry=CollectorRegistry())
    assert plain.on_write is note_write
    Manager(kube=kube, options=options, registry=CollectorRegistry())
    assert kube.on_write is hook  # a hook its builder chose is kept
