"""Both reconcilers in-process against the real API server, as ``run`` wires them.

:func:`running` starts a Manager with the MachinePool and InMemoryMachinePool reconcilers
(optionally with a ``--watch-filter`` label selector), an in-process simulator whose instances
register real Nodes, and an Event recorder; on exit it stops them and deletes the Nodes its
simulator registered. Tests call the scenario helpers before entering it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options, workload_clusters
from controller.infrastructure.setup import setup_infrastructure_controller
from controller.machinepool.setup import setup_machinepool_controller
from controller.providers.inmemory.adapter import InMemoryPoolAdapter, inmemory_group_name
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind
from controller.runtime.events import EventRecorder
from controller.runtime.kube import NODES, ApiError, KubeClient
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing.waiting import until

Obj = dict[str, Any]


@dataclass
class Running:
    """One running controller process, seen from a test."""

    kube: KubeClient
    namespace: str
    simulator: Simulator
    registry: CollectorRegistry

    def reconciles(self, controller: str) -> float:
        """Successful reconciles so far of ``controller`` (``machinepool``, ...)."""
        value = self.registry.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": controller, "result": "success"}
        )
        return value or 0.0

    def live(self, pool: str) -> int:
        """Pending or running instances of ``pool``'s simulated group (0 if no group)."""
        view = self.simulator.inspect(name=inmemory_group_name(namespace=self.namespace, name=pool))
        if view is None:
            return 0
        return sum(1 for i in view.instances if i.phase in ("pending", "running"))

    async def pool(self, name: str) -> Obj:
        return await self.kube.get(MACHINE_POOL, namespace=self.namespace, name=name)

    async def infra(self, name: str) -> Obj:
        return await self.kube.get(IN_MEMORY_MACHINE_POOL, namespace=self.namespace, name=name)

    async def running_replicas(self, name: str, replicas: int) -> bool:
        """The pool is Running with exactly ``replicas`` ready replicas."""
        status = (await self.pool(name)).get("status") or {}
        return bool(
            status.get("phase") == "Running"
            and status.get("readyReplicas") == replicas
            and status.get("replicas") == replicas
            and self.live(name) == replicas
        )


@contextlib.asynccontextmanager
async def running(
    *,
    kube: KubeClient,
    namespace: str,
    watch_filter: str | None = None,
    sync_period: float | None = None,
) -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    selector = f"cluster.x-k8s.io/watch-filter={watch_filter}" if watch_filter else None
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="0",
            health_address="0",
            graceful_shutdown_timeout=5,
            sync_period=sync_period,
        ),
    )
    try:
        async with (
            KubeNodeRegistrar(management=kube) as registrar,
            Simulator(registrar=registrar, seed=1) as simulator,
            EventRecorder(kube=kube) as recorder,
        ):
            options = controller_options(
                manager=manager,
                namespace=namespace,
                recorder=recorder,
                concurrency=4,
                reconcile_timeout=30,
                watch_filter=selector,
            )
            setup_machinepool_controller(
                options=options, workloads=workload_clusters(options=options),
                infra_kinds=[IN_MEMORY_MACHINE_POOL],
            )  # fmt: skip
            setup_infrastructure_controller(
                options=options,
                cloud=CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator, busy_poll=0.5),
            )  # fmt: skip
            shutdown = asyncio.Event()
            task = asyncio.create_task(manager.run(shutdown=shutdown))
            try:
                await until(manager.controllers_started.is_set, what="controllers")
                yield Running(
                    kube=kube, namespace=namespace, simulator=simulator, registry=registry
                )
            finally:
                shutdown.set()
                await asyncio.wait_for(task, 15)
    finally:
        # Nodes of this namespace's groups are cluster-scoped: remove them.
        for node in (await kube.list(NODES))["items"]:
            if node["metadata"]["name"].startswith(f"{namespace}-"):
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])
