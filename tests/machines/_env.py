"""The whole product on the real local control plane with the in-memory simulator as the
cloud, for end-to-end tests of Machines (tests/machines) and health checks (tests/healthcheck).

:func:`running_product` composes it as ``run`` does (:func:`controller.app.setup_controllers`)
in a test's namespace: a Cluster whose kubeconfig Secret points back at the same API server,
a bootstrap data Secret, a seeded :class:`Simulator` whose kubelets write real Nodes (through
``wrap_registrar`` when a test needs to interfere with them; the cloud's node lifecycle
controller lists and deletes Nodes through the unwrapped registrar), and optionally an
:class:`EventRecorder` so Events can be asserted. On exit the manager stops and the test's
Nodes (cluster-scoped, so outliving the namespace) are deleted.

:meth:`Env.consistency_problems` checks that each instance has exactly one infra machine,
Machine and Ready Node, and nothing else exists: nothing lost, duplicated or orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE, IN_MEMORY_MACHINE_POOL, MACHINE, MACHINE_POOL
from controller.app import controller_options, setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter, inmemory_group_name
from controller.providers.inmemory.nodes import NodeRegistrar
from controller.providers.inmemory.simulator import InstanceView, Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.events import EventRecorder
from controller.runtime.kube import NODES, PODS, ApiError, KubeClient, Resource, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster, machine_pool_body
from controller.testing.waiting import until

__all__ = ["PDBS", "TEMPLATE", "Env", "converge", "running_product"]

PDBS = Resource(
    group="policy", version="v1", plural="poddisruptionbudgets", kind="PodDisruptionBudget"
)
TEMPLATE = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 1}


@dataclass
class Env:
    kube: KubeClient
    namespace: str
    simulator: Simulator
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    pool: str = "p1"
    pods: list[tuple[str, str]] = field(default_factory=list)

    @property
    def group(self) -> str:
        return inmemory_group_name(namespace=self.namespace, name=self.pool)

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


@contextlib.asynccontextmanager
async def running_product(
    *,
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    wrap_registrar: Callable[[NodeRegistrar], NodeRegistrar] | None = None,
    events: bool = False,
) -> AsyncIterator[Env]:
    """The product running in ``namespace``; see the module docstring."""
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
    async with contextlib.AsyncExitStack() as stack:
        kubelets = await stack.enter_async_context(
            contextlib.aclosing(KubeNodeRegistrar(management=kube))
        )
        registrar: NodeRegistrar = kubelets if wrap_registrar is None else wrap_registrar(kubelets)
        # The cloud's node lifecycle controller is kept out of the way (one pass an hour):
        # these tests check that the product itself deletes every Node it retires.
        simulator = await stack.enter_async_context(
            Simulator(registrar=registrar, cloud_nodes=kubelets, seed=7, node_monitor_period=3600)
        )
        recorder = (
            await stack.enter_async_context(EventRecorder(kube=kube, series_patch_interval=0.2))
            if events
            else None
        )
        setup_controllers(
            options=controller_options(
                manager=manager, namespace=namespace, recorder=recorder, concurrency=4,
                reconcile_timeout=30,
            ),
            kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator,
                                          busy_poll=0.5, steady_poll=3)]),
            pools=True,
        )  # fmt: skip
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown))
        environment = Env(kube=kube, namespace=namespace, simulator=simulator, registry=registry)
        try:
            await until(manager.controllers_started.is_set, what="controllers")
            yield environment
        finally:
            shutdown.set()
            await asyncio.wait_for(task, 15)
            for node in await environment.nodes():
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])


async def converge(env: Env, replicas: int, *, timeout: float = 60) -> None:
    async def done() -> bool:
        return await env.converged(replicas)

    try:
        await until(done, what=f"{replicas} consistent machines", timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(await env.consistency_problems(replicas=replicas)) from None
