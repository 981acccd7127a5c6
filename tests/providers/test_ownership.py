"""Cloud names and ownership end to end with the in-memory simulator: the MachinePool and
infrastructure reconcilers run against the real local control plane, watching every namespace
(narrowed to this test's objects by a watch-filter label), with a real Event recorder.

- ``<ns>-a/prod`` and ``<ns>/a-prod`` (both ``<ns>-a-prod`` under the old naming) get two
  groups, and both converge;
- a group that already has the pool's computed name but not its ownership tags is left
  untouched (capacity, template, tags, instances), the pool reports ``GroupOwnedByOthers``
  with an Event, and deleting the pool leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.api.labels import WATCH_FILTER_LABEL
from controller.app import controller_options, workload_clusters
from controller.infrastructure.setup import setup_infrastructure_controller
from controller.machinepool.setup import setup_machinepool_controller
from controller.providers.base import GroupSpec
from controller.providers.inmemory.adapter import MAX_GROUP_NAME, InMemoryPoolAdapter
from controller.providers.inmemory.simulator import GroupView, Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.naming import group_name
from controller.providers.registry import CloudKind
from controller.runtime.events import EventRecorder
from controller.runtime.kube import EVENTS, NAMESPACES, NODES, ApiError, KubeClient, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster, machine_pool_body
from controller.testing.waiting import until

Obj = dict[str, Any]
TEMPLATE = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 1, "zones": ["zone-a"]}


@dataclass
class Env:
    kube: KubeClient
    simulator: Simulator
    namespace: str
    other: str
    token: str

    async def create_pool(self, *, namespace: str, name: str, replicas: int) -> None:
        labels = {WATCH_FILTER_LABEL: self.token}
        await self.kube.create(
            IN_MEMORY_MACHINE_POOL, namespace=namespace,
            body={"metadata": {"name": name, "labels": labels},
                  "spec": {"template": dict(TEMPLATE)}},
        )  # fmt: skip
        body = machine_pool_body(name=name, cluster="c1", replicas=replicas)
        body["metadata"]["labels"] = labels
        await self.kube.create(MACHINE_POOL, namespace=namespace, body=body)

    async def infra(self, namespace: str, name: str) -> Obj:
        return await self.kube.get(IN_MEMORY_MACHINE_POOL, namespace=namespace, name=name)

    async def converged(self, namespace: str, name: str, replicas: int) -> bool:
        pool = await self.kube.get(MACHINE_POOL, namespace=namespace, name=name)
        status = pool.get("status", {})
        return (
            status.get("phase") == "Running"
            and status.get("readyReplicas") == replicas
            and len(status.get("nodeRefs", [])) == replicas
        )


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    other = f"{namespace}-a"
    await kube.create(NAMESPACES, body={"metadata": {"name": other}})
    for ns in (namespace, other):
        await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=ns)
    watch_filter = f"{WATCH_FILTER_LABEL}={namespace}"
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="0", health_address="0", graceful_shutdown_timeout=5
        ),
    )
    async with (
        contextlib.aclosing(KubeNodeRegistrar(management=kube)) as registrar,
        Simulator(registrar=registrar, seed=7) as simulator,
        EventRecorder(kube=kube, series_patch_interval=0.2) as recorder,
    ):
        options = controller_options(
            manager=manager,
            namespace=None,
            recorder=None,
            concurrency=4,
            reconcile_timeout=30,
            watch_filter=watch_filter,
        )
        setup_machinepool_controller(
            options=options, workloads=workload_clusters(options=options),
            infra_kinds=[IN_MEMORY_MACHINE_POOL],
        )  # fmt: skip
        setup_infrastructure_controller(
            options=dataclasses.replace(options, recorder=recorder),
            cloud=CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator, busy_poll=0.5,
                            steady_poll=3),
        )  # fmt: skip
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown))
        try:
            await until(manager.controllers_started.is_set, what="controllers")
            yield Env(
                kube=kube, simulator=simulator, namespace=namespace, other=other, token=namespace
            )
        finally:
            shutdown.set()
            await asyncio.wait_for(task, 15)
            names = {i.node_name for g in simulator.group_names()
                     for i in (simulator.inspect(name=g) or _EMPTY).instances}  # fmt: skip
            for node in names | {i.node_name for i in simulator.terminated()}:
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node)
            await kube.delete(NAMESPACES, name=other)


_EMPTY = GroupView(
    name="", cluster="", desired=0, min_size=0, max_size=None, zones=(), template_version="",
    instances=(),
)  # fmt: skip


async def test_pools_whose_old_names_collide_get_two_groups_and_both_converge(env: Env) -> None:
    # Under `<namespace>-<name>` both were `<ns>-a-prod`: one group for two pools.
    await env.create_pool(namespace=env.other, name="prod", replicas=2)
    await env.create_pool(namespace=env.namespace, name="a-prod", replicas=1)
    await until(lambda: env.converged(env.other, "prod", 2), timeout=60, what="prod Running")
    await until(lambda: env.converged(env.namespace, "a-prod", 1), timeout=60, what="a-prod")

    one = (await env.infra(env.other, "prod"))["status"]["groupName"]
    two = (await env.infra(env.namespace, "a-prod"))["status"]["groupName"]
    assert one != two
    assert one.startswith(f"{env.namespace}-a-prod-")
    assert two.startswith(f"{env.namespace}-a-prod-")
    assert len((env.simulator.inspect(name=one) or _EMPTY).instances) == 2
    assert len((env.simulator.inspect(name=two) or _EMPTY).instances) == 1


async def test_a_group_that_is_not_ours_is_left_untouched_reported_and_outlives_the_pool(
    env: Env,
) -> None:
    name = group_name(namespace=env.namespace, name="p1", max_length=MAX_GROUP_NAME)
    # Someone else's group with exactly that name: untagged, capacity 2.
    await env.simulator.ensure_group(
        spec=GroupSpec(
            name=name, cluster="elsewhere/c9",
            template={"version": "theirs", "zones": ["zone-a"], "bootDelaySeconds": 0},
            template_version="theirs", max_size=5, tags={"team": "b"},
        )
    )  # fmt: skip
    await env.simulator.set_capacity(name=name, desired=2)

    async def booted() -> bool:
        view = env.simulator.inspect(name=name)
        return view is not None and all(i.phase == "running" for i in view.instances)

    await until(booted, timeout=30, what="their instances running")
    before = env.simulator.inspect(name=name)
    assert before is not None

    await env.create_pool(namespace=env.namespace, name="p1", replicas=1)

    async def reported() -> bool:
        status = (await env.infra(env.namespace, "p1")).get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return bool(ready) and ready[0]["reason"] == "GroupOwnedByOthers"

    await until(reported, timeout=30, what="Ready=False GroupOwnedByOthers")
    infra = await env.infra(env.namespace, "p1")
    assert infra["status"]["groupName"] == name
    assert infra["status"]["failureReason"] == "GroupOwnedByOthers"
    assert not infra["spec"].get("providerIDList")

    async def event() -> bool:
        listed = await env.kube.list(EVENTS, namespace=env.namespace)
        return any(
            e.get("reason") == "GroupOwnedByOthers" and e["regarding"]["name"] == "p1"
            for e in listed["items"]
        )

    await until(event, timeout=30, what="a GroupOwnedByOthers Event")
    assert env.simulator.inspect(name=name) == before  # capacity, template, tags, instances

    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="p1")

    async def pool_gone() -> bool:
        try:
            await env.infra(env.namespace, "p1")
        except ApiError as exc:
            return exc.not_found
        return False

    await until(pool_gone, timeout=60, what="the infra pool's finalizer removed")
    assert env.simulator.inspect(name=name) == before
