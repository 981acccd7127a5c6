"""MachinePool Machines end to end: the whole product (controller.app.setup_controllers) on the
real local control plane with the in-memory simulator as the cloud. Pods are plain objects
bound to Nodes; the simulator's kubelet finishes their deletion as a real one would.

After every scenario :meth:`Env.consistency_problems` lists instances, infra machines,
Machines and Nodes and checks that each instance has exactly one of each, and nothing else
exists: nothing lost, duplicated or orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE, IN_MEMORY_MACHINE_POOL, MACHINE, MACHINE_POOL
from controller.api.labels import DELETE_MACHINE_ANNOTATION
from controller.app import setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.simulator import InstanceView, Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NODES, PODS, ApiError, KubeClient, Resource, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster, machine_pool_body
from controller.testing.waiting import until

PDBS = Resource(
    group="policy", version="v1", plural="poddisruptionbudgets", kind="PodDisruptionBudget"
)
TEMPLATE = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 1}


@dataclass
class Env:
    kube: KubeClient
    namespace: str
    simulator: Simulator
    pool: str = "p1"
    pods: list[tuple[str, str]] = field(default_factory=list)

    @property
    def group(self) -> str:
        return f"{self.namespace}-{self.pool}"

    def instances(self) -> list[InstanceView]:
        view = self.simulator.inspect(name=self.group)
        if view is None:
            return []
        return [i for i in view.instances if i.phase not in ("terminating", "terminated")]

    async def create_pool(
        self, *, replicas: int, deletion: dict[str, int] | None = None, **infra_spec: Any
    ) -> None:
        await self.kube.create(
            IN_MEMORY_MACHINE_POOL,
            namespace=self.namespace,
            body={"metadata": {"name": self.pool},
                  "spec": {"template": dict(TEMPLATE), **infra_spec}},
        )  # fmt: skip
        body = machine_pool_body(name=self.pool, cluster="c1", replicas=replicas)
        if deletion:
            body["spec"]["template"]["spec"]["deletion"] = deletion
        await self.kube.create(MACHINE_POOL, namespace=self.namespace, body=body)

    async def pool_obj(self) -> Obj:
        return await self.kube.get(MACHINE_POOL, namespace=self.namespace, name=self.pool)

    async def machines(self) -> list[Obj]:
        return list((await self.kube.list(MACHINE, namespace=self.namespace))["items"])

    async def infra_machines(self) -> list[Obj]:
        return list((await self.kube.list(IN_MEMORY_MACHINE, namespace=self.namespace))["items"])

    async def nodes(self) -> list[Obj]:
        return [
            n
            for n in (await self.kube.list(NODES))["items"]
            if f"/{self.group}-" in (n.get("spec") or {}).get("providerID", "")
        ]

    async def machine_for(self, provider_id: str) -> Obj:
        for machine in await self.machines():
            if machine["spec"].get("providerID") == provider_id:
                return machine
        raise AssertionError(f"no Machine for {provider_id}")

    async def scale(self, replicas: int) -> None:
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=self.namespace, name=self.pool,
            patch={"spec": {"replicas": replicas}},
        )  # fmt: skip

    async def converged(self, replicas: int) -> bool:
        return not await self.consistency_problems(replicas=replicas)

    async def consistency_problems(self, *, replicas: int) -> list[str]:
        """Everything that is not one instance = one infra machine = one Machine = one Ready
        Node, with ``replicas`` of them and the pool Running."""
        problems = []
        instances = {i.provider_id for i in self.instances() if i.phase == "running"}
        if len(self.instances()) != replicas:
            problems.append(f"{len(self.instances())} instances, want {replicas}")
        machines = await self.machines()
        ids = {m["spec"].get("providerID") for m in machines}
        if len(machines) != replicas or ids != instances:
            problems.append(f"Machines {sorted(map(str, ids))} vs instances {sorted(instances)}")
        if any(m["metadata"].get("deletionTimestamp") for m in machines):
            problems.append("a Machine is still being deleted")
        infra = {m["spec"].get("providerID") for m in await self.infra_machines()}
        if infra != instances or len(await self.infra_machines()) != replicas:
            problems.append(f"infra machines {sorted(map(str, infra))}")
        nodes = await self.nodes()
        node_ids = {n["spec"]["providerID"] for n in nodes}
        if node_ids != instances or len(nodes) != replicas:
            problems.append(f"Nodes {sorted(node_ids)} vs instances {sorted(instances)}")
        pool = await self.pool_obj()
        status = pool.get("status") or {}
        if (pool["spec"].get("replicas"), status.get("readyReplicas")) != (replicas, replicas):
            problems.append(
                f"pool replicas {pool['spec'].get('replicas')}, ready {status.get('readyReplicas')}"
            )
        if status.get("phase") != "Running":
            problems.append(f"phase {status.get('phase')}")
        return problems

    async def place_pods(self, *, labels: dict[str, str] | None = None) -> None:
        """One pod bound to each of the pool's Nodes."""
        for node in await self.nodes():
            name = f"pod-{node['metadata']['name']}"[:63].rstrip("-")
            await self.kube.create(
                PODS,
                namespace=self.namespace,
                body={
                    "metadata": {"name": name, "labels": labels or {"app": "web"}},
                    "spec": {
                        "nodeName": node["metadata"]["name"],
                        "containers": [{"name": "c", "image": "registry.invalid/app:1"}],
                    },
                },
            )
            # Running and Ready, as a kubelet would report: the Eviction API lets a Pending
            # pod through regardless of budgets.
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await self.kube.merge_patch(
                PODS, namespace=self.namespace, name=name, subresource="status",
                patch={"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}},
            )  # fmt: skip
            self.pods.append((name, node["spec"]["providerID"]))

    async def pods_left(self) -> dict[str, str]:
        listing = await self.kube.list(PODS, namespace=self.namespace)
        names = {p["metadata"]["name"] for p in listing["items"]}
        return {name: pid for name, pid in self.pods if name in names}


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await kube.create(
        Resource(group="", version="v1", plural="secrets", kind="Secret"),
        namespace=namespace,
        body={"metadata": {"name": "boot"}, "data": {"value": ""}},
    )
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
    ):
        setup_controllers(
            manager=manager, namespace=namespace, pools=True,
            providers=[(InMemoryPoolAdapter(), simulator)], recorder=None, concurrency=4,
            reconcile_timeout=30, busy_poll=0.5, steady_poll=3,
        )  # fmt: skip
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown))
        environment = Env(kube=kube, namespace=namespace, simulator=simulator)
        try:
            await until(manager.controllers_started.is_set, what="controllers")
            yield environment
        finally:
            shutdown.set()
            await asyncio.wait_for(task, 15)
            for node in await environment.nodes():
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])


async def _converge(env: Env, replicas: int, *, timeout: float = 60) -> None:
    async def done() -> bool:
        return await env.converged(replicas)

    try:
        await until(done, what=f"{replicas} consistent machines", timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(await env.consistency_problems(replicas=replicas)) from None


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_deleting_one_machine_drains_it_and_shrinks_the_pool(env: Env) -> None:
    await env.create_pool(replicas=5)
    await _converge(env, 5)
    await env.place_pods()
    victim = env.instances()[2]
    others = {i.provider_id for i in env.instances()} - {victim.provider_id}
    machine = await env.machine_for(victim.provider_id)

    await env.kube.delete(MACHINE, namespace=env.namespace, name=machine["metadata"]["name"])
    await _converge(env, 4)

    assert {i.provider_id for i in env.instances()} == others
    assert {n["spec"]["providerID"] for n in await env.nodes()} == others
    left = await env.pods_left()
    assert victim.provider_id not in left.values(), "the victim's pod was not evicted"
    assert set(left.values()) == others, "pods on the other Nodes were touched"
    assert (await env.pool_obj())["spec"]["replicas"] == 4


async def test_deleting_a_machine_twice_lowers_replicas_once(env: Env) -> None:
    await env.create_pool(replicas=3)
    await _converge(env, 3)
    machine = await env.machine_for(env.instances()[0].provider_id)
    name = machine["metadata"]["name"]
    await env.kube.delete(MACHINE, namespace=env.namespace, name=name)
    with contextlib.suppress(ApiError):
        await env.kube.delete(MACHINE, namespace=env.namespace, name=name)
    await _converge(env, 2)
    assert (await env.pool_obj())["spec"]["replicas"] == 2


async def test_scale_in_takes_the_marked_machine_then_the_oldest(env: Env) -> None:
    await env.create_pool(replicas=5, deletePolicy="Oldest")
    await _converge(env, 5)
    await env.place_pods()
    by_age = sorted(env.instances(), key=lambda i: (i.launched_at, i.instance_id))
    marked = by_age[3]
    machine = await env.machine_for(marked.provider_id)
    await env.kube.merge_patch(
        MACHINE, namespace=env.namespace, name=machine["metadata"]["name"],
        patch={"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "yes"}}},
    )  # fmt: skip

    await env.scale(3)
    await _converge(env, 3)

    gone = {i.provider_id for i in by_age} - {i.provider_id for i in env.instances()}
    assert gone == {marked.provider_id, by_age[0].provider_id}
    left = await env.pods_left()
    assert not gone & set(left.values()), "a removed machine's pod was not evicted"
    assert len(left) == 3


async def test_template_change_rolls_every_machine_keeping_four_ready(env: Env) -> None:
    await env.create_pool(
        replicas=4, strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    await _converge(env, 4)
    before = {i.provider_id for i in env.instances()}

    ready_counts: list[int] = []
    nodes = Informer(kube=env.kube, resource=NODES)

    def sample(_: InformerEvent) -> None:
        ready_counts.append(
            sum(
                1
                for n in nodes.store.values()
                if f"/{env.group}-" in (n.get("spec") or {}).get("providerID", "")
                and _ready(n)
                and not n["spec"].get("unschedulable")
            )
        )

    nodes.add_handler(sample)
    watcher = asyncio.create_task(nodes.run())
    try:
        await until(lambda: nodes.synced, what="node informer")
        await env.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name=env.pool,
            patch={"spec": {"template": {**TEMPLATE, "version": "2"}}},
        )  # fmt: skip

        async def rolled() -> bool:
            pool = await env.pool_obj()
            return (
                all(i.version == "2" for i in env.instances())
                and (pool.get("status") or {}).get("upToDateReplicas") == 4
                and await env.converged(4)
            )

        await until(rolled, what="every machine replaced", timeout=120)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert not before & {i.provider_id for i in env.instances()}
    assert ready_counts, "no Node event was sampled"
    # Cordoned Nodes count as unavailable: fewer than 4 schedulable Ready Nodes never seen
    # once the rollout began (samples before the first surge are 4 already).
    assert min(ready_counts) >= 4, ready_counts


def _ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


async def test_a_pdb_that_allows_nothing_blocks_scale_in_until_the_drain_timeout(
    env: Env,
) -> None:
    await env.create_pool(replicas=3, deletion={"nodeDrainTimeoutSeconds": 10})
    await _converge(env, 3)
    await env.place_pods(labels={"app": "guarded"})
    await env.kube.create(
        PDBS,
        namespace=env.namespace,
        body={"metadata": {"name": "guard"},
              "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "guarded"}}}},
    )  # fmt: skip
    # No disruption controller runs here: publish the status one would (3 healthy, 3 needed).
    await env.kube.merge_patch(
        PDBS, namespace=env.namespace, name="guard", subresource="status",
        patch={"status": {"observedGeneration": 1, "disruptionsAllowed": 0,
                          "currentHealthy": 3, "desiredHealthy": 3, "expectedPods": 3}},
    )  # fmt: skip
    victim = env.instances()[0]
    machine = await env.machine_for(victim.provider_id)
    name = machine["metadata"]["name"]
    await env.kube.merge_patch(
        MACHINE, namespace=env.namespace, name=name,
        patch={"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "yes"}}},
    )  # fmt: skip
    await env.scale(2)

    seen: list[dict[str, Any]] = []

    async def blocked() -> bool:
        obj = await env.kube.get(MACHINE, namespace=env.namespace, name=name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Deleting" and cond.get("reason") == "DrainingNode":
                seen.append(cond)
                return "PodDisruptionBudget" in cond.get("message", "") or "disruption" in (
                    cond.get("message", "").lower()
                )
        return False

    await until(blocked, what="the drain to report the blocking budget", timeout=30)

    async def pool_says_so() -> bool:
        for cond in (await env.pool_obj()).get("status", {}).get("conditions") or []:
            if cond["type"] == "ScalingDown" and f"Machine {name}" in cond.get("message", ""):
                return "DrainingNode" in cond["message"]
        return False

    await until(pool_says_so, what="the pool's ScalingDown condition to name the drain")
    assert victim.provider_id in {i.provider_id for i in env.instances()}, (
        "the instance went before the drain timeout"
    )
    await _converge(env, 2, timeout=60)
    assert victim.provider_id not in {i.provider_id for i in env.instances()}


async def test_an_instance_that_vanishes_is_replaced_and_its_machine_and_node_go(
    env: Env,
) -> None:
    await env.create_pool(replicas=3)
    await _converge(env, 3)
    lost = env.instances()[1]
    await env.simulator.delete_instance(name=env.group, instance_id=lost.instance_id, shrink=False)
    await _converge(env, 3)
    assert lost.provider_id not in {i.provider_id for i in env.instances()}
    assert lost.provider_id not in {n["spec"]["providerID"] for n in await env.nodes()}
    assert (await env.pool_obj())["spec"]["replicas"] == 3


async def test_a_machine_whose_node_never_appears_says_so_and_deletes_cleanly(env: Env) -> None:
    await env.kube.create(
        IN_MEMORY_MACHINE_POOL,
        namespace=env.namespace,
        body={"metadata": {"name": env.pool},
              "spec": {"template": {**TEMPLATE, "failureRate": 1}}},
    )  # fmt: skip
    await env.kube.create(
        MACHINE_POOL,
        namespace=env.namespace,
        body=machine_pool_body(name=env.pool, cluster="c1", replicas=1),
    )

    async def reported() -> bool:
        for machine in await env.machines():
            conds = {c["type"]: c for c in (machine.get("status") or {}).get("conditions") or []}
            if conds.get("NodeHealthy", {}).get("reason") == "NodeNotFound":
                return True
        return False

    await until(reported, what="a Machine reporting its missing Node", timeout=30)
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name=env.pool)

    async def all_gone() -> bool:
        return not (await env.machines() or await env.infra_machines() or env.instances())

    await until(all_gone, what="pool, Machines and instances gone", timeout=60)
    assert await env.nodes() == []
