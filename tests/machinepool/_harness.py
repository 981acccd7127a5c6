"""A world for the MachinePool property tests: one namespace, one Manager running both
reconcilers, and one in-process :class:`Simulator` whose instances register real Nodes.

:func:`world` builds it all for one example and tears it all down afterwards (Manager,
simulator, the Nodes of the example's group, the namespace), so examples share nothing but
the API server. :class:`World` plays the steps (:data:`Step`) and reads the truth:
:meth:`World.convergence_problems`, :meth:`World.deletion_problems` and
:meth:`World.stale_nodes` return what is still wrong (an empty list means the property
holds), so a caller can wait on them (:func:`eventually_none`, built on
:func:`~controller.testing.waiting.until`) and report the last problems on timeout.
Stale Nodes (of instances that left the pool) are reported apart from the rest so the
property tests can check them on their own: the product deletes the Nodes it recorded, and the
simulated cloud's node lifecycle controller (every :data:`NODE_MONITOR_PERIOD` seconds here)
the not-Ready Nodes of instances that left their group (a crashed one leaves after
:data:`FAILED_RETENTION`), including those the pool never recorded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options, setup_controllers
from controller.machinepool.reconciler import FINALIZER
from controller.providers.inmemory.adapter import InMemoryPoolAdapter, inmemory_group_name
from controller.providers.inmemory.names import dns_label
from controller.providers.inmemory.simulator import InstanceView, Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.kube import (
    NAMESPACES,
    NODES,
    SECRETS,
    ApiError,
    KubeClient,
    ResourceLike,
    RestMetrics,
)
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing import ControlPlane
from controller.testing.waiting import until

Obj = dict[str, Any]

POOL = "p1"
CLUSTER_NAME = "c1"
PAUSED = "cluster.x-k8s.io/paused"
LIVE = ("pending", "running")
#: The simulator's options here: how long a crashed instance stays listed as failed, and how
#: often the cloud deletes the not-Ready Nodes of gone instances.
FAILED_RETENTION = 10.0
NODE_MONITOR_PERIOD = 1.0


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Scale:
    """Set ``spec.replicas`` through the scale subresource (as ``kubectl scale`` does)."""

    replicas: int


@dataclass(frozen=True)
class Pause:
    """Put the ``cluster.x-k8s.io/paused`` annotation on the MachinePool."""


@dataclass(frozen=True)
class Unpause:
    """Remove the ``cluster.x-k8s.io/paused`` annotation."""


@dataclass(frozen=True)
class Crash:
    """Crash the ``pick``-th (modulo their number) live instance; nothing if there is none."""

    pick: int


@dataclass(frozen=True)
class Wait:
    """Let the system run for a moment."""

    seconds: float


Step = Scale | Pause | Unpause | Crash | Wait


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """One example's namespace, seen through the API server and the simulator."""

    kube: KubeClient
    namespace: str
    simulator: Simulator

    @property
    def group(self) -> str:
        """The simulator group of the pool (the in-memory adapter's naming)."""
        return inmemory_group_name(namespace=self.namespace, name=POOL)

    @property
    def node_prefix(self) -> str:
        """Every Node of the group's instances is named ``<prefix><8 hex digits>``."""
        return f"{dns_label(self.group, max_length=50)}-"

    async def create_pool(self, *, replicas: int) -> None:
        template = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 0,
                    "zones": ["zone-a", "zone-b"]}  # fmt: skip
        await self.kube.create(
            IN_MEMORY_MACHINE_POOL, namespace=self.namespace,
            body={"metadata": {"name": POOL}, "spec": {"template": template}},
        )  # fmt: skip
        await self.kube.create(
            MACHINE_POOL,
            namespace=self.namespace,
            body={
                "metadata": {"name": POOL},
                "spec": {
                    "clusterName": CLUSTER_NAME,
                    "replicas": replicas,
                    "template": {"spec": {
                        "clusterName": CLUSTER_NAME, "version": "v1.35.4",
                        "bootstrap": {"dataSecretName": "boot"},
                        "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                              "kind": "InMemoryMachinePool", "name": POOL},
                    }},
                },
            },
        )  # fmt: skip

    # ------------------------------------------------------------------ steps

    async def play(self, step: Step) -> None:
        match step:
            case Scale(replicas=n):
                await self.kube.merge_patch(
                    MACHINE_POOL, namespace=self.namespace, name=POOL, subresource="scale",
                    patch={"spec": {"replicas": n}},
                )  # fmt: skip
            case Pause():
                await self._annotate({PAUSED: "true"})
            case Unpause():
                await self._annotate({PAUSED: None})
            case Crash(pick=pick):
                live = self.live_instances()
                if live:
                    victim = live[pick % len(live)]
                    await self.simulator.fail_instance(
                        name=self.group, instance_id=victim.instance_id
                    )
            case Wait(seconds=seconds):
                await asyncio.sleep(seconds)

    async def _annotate(self, annotations: dict[str, str | None]) -> None:
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=self.namespace, name=POOL,
            patch={"metadata": {"annotations": annotations}},
        )  # fmt: skip

    async def delete_pool(self) -> None:
        await self.kube.delete(MACHINE_POOL, namespace=self.namespace, name=POOL)

    # ------------------------------------------------------------------ truth

    def live_instances(self) -> list[InstanceView]:
        view = self.simulator.inspect(name=self.group)
        return [i for i in view.instances if i.phase in LIVE] if view is not None else []

    async def group_nodes(self) -> list[Obj]:
        listing = await self.kube.list(NODES)
        return [n for n in listing["items"] if n["metadata"]["name"].startswith(self.node_prefix)]

    async def _get(self, kind: ResourceLike, name: str) -> Obj | None:
        try:
            return await self.kube.get(kind, namespace=self.namespace, name=name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def convergence_problems(self, *, replicas: int) -> list[str]:
        """What keeps the pool from being converged at ``replicas``, checked against the
        simulator and the workload cluster; empty when everything agrees."""
        pool = await self._get(MACHINE_POOL, POOL)
        infra = await self._get(IN_MEMORY_MACHINE_POOL, POOL)
        if pool is None or infra is None:
            return ["the MachinePool or the InMemoryMachinePool is missing"]
        spec, status = pool["spec"], pool.get("status") or {}
        problems: list[str] = []

        def expect(what: str, actual: object, wanted: object) -> None:
            if actual != wanted:
                problems.append(f"{what} is {actual!r}, expected {wanted!r}")

        expect("spec.replicas", spec.get("replicas"), replicas)
        expect("status.phase", status.get("phase"), "Running")
        expect("status.replicas", status.get("replicas"), replicas)
        expect("status.readyReplicas", status.get("readyReplicas"), replicas)
        expect(
            "status.observedGeneration",
            status.get("observedGeneration"),
            pool["metadata"].get("generation"),
        )
        paused = [c for c in status.get("conditions") or [] if c.get("type") == "Paused"]
        expect("the Paused condition", [c.get("status") for c in paused], ["False"])

        ids: list[str] = list(spec.get("providerIDList") or [])
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            problems.append(f"spec.providerIDList has duplicates {duplicates}")
        view = self.simulator.inspect(name=self.group)
        if view is None:
            problems.append(f"the simulator has no group {self.group}")
        else:
            live = {i.provider_id for i in view.instances if i.phase in LIVE}
            expect("the simulator's live instances", sorted(live), sorted(set(ids)))
            expect("the simulator's live instance count", len(live), replicas)
            expect("the simulator's desired capacity", view.desired, replicas)
        expect(
            "the InMemoryMachinePool's providerIDList",
            list((infra.get("spec") or {}).get("providerIDList") or []),
            ids,
        )

        nodes = await self.group_nodes()
        by_name = {n["metadata"]["name"]: n for n in nodes}
        refs = status.get("nodeRefs") or []
        referenced: list[str] = []
        for ref in refs:
            node = by_name.get(str(ref.get("name")))
            if node is None:
                problems.append(f"nodeRef {ref.get('name')} names no Node of the group")
            elif node["metadata"]["uid"] != ref.get("uid"):
                problems.append(f"nodeRef {ref.get('name')} has a stale uid")
            else:
                referenced.append(str(node["spec"].get("providerID")))
        expect("the providerIDs of the nodeRefs", sorted(referenced), sorted(ids))
        return problems

    async def stale_nodes(self, *, replicas: int | None) -> list[str]:
        """Nodes of the group whose instance left the pool (provider ID not in the pool's
        ``providerIDList``); with ``replicas=None`` (after deletion) every Node of the group."""
        ids: set[str] = set()
        if replicas is not None:
            pool = await self._get(MACHINE_POOL, POOL)
            ids = set((pool or {}).get("spec", {}).get("providerIDList") or [])
        stale = sorted(
            n["metadata"]["name"]
            for n in await self.group_nodes()
            if n["spec"].get("providerID") not in ids
        )
        return [f"Nodes of instances that left the pool remain: {stale}"] if stale else []

    async def deletion_problems(self) -> list[str]:
        """What is left of the pool after its deletion, Nodes apart (see :meth:`stale_nodes`);
        empty when everything is gone."""
        problems: list[str] = []
        if await self._get(MACHINE_POOL, POOL) is not None:
            problems.append("the MachinePool still exists")
        if await self._get(IN_MEMORY_MACHINE_POOL, POOL) is not None:
            problems.append("the InMemoryMachinePool still exists")
        if self.simulator.inspect(name=self.group) is not None:
            problems.append(f"the simulator group {self.group} still exists")
        return problems

    async def has_finalizer(self) -> bool:
        """The MachinePool carries the controller's finalizer (so its deletion is handled)."""
        pool = await self._get(MACHINE_POOL, POOL)
        return pool is not None and FINALIZER in (pool["metadata"].get("finalizers") or [])


async def eventually_none(
    problems: Callable[[], Awaitable[list[str]]], *, timeout: float, what: str
) -> None:
    """Wait until ``problems()`` is empty; on timeout fail with the last problems found."""
    last: list[str] = []

    async def done() -> bool:
        nonlocal last
        last = await problems()
        return not last

    try:
        await until(done, timeout=timeout, interval=0.2, what=what)
    except TimeoutError as exc:
        message = f"{exc}; still wrong:\n  " + "\n  ".join(last)
    else:
        return
    # Raised outside the handler, so it has no context: hypothesis tells failures apart by
    # their exception chain, and a timeout's chain differs with where it cancelled.
    raise AssertionError(message)


@contextlib.asynccontextmanager
async def world(
    *, control_plane: ControlPlane, api_client: client.ApiClient
) -> AsyncIterator[World]:
    """A fresh namespace with a Cluster, its kubeconfig Secret, a Manager running both
    reconcilers for that namespace and a simulator; all of it removed on exit."""
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    namespace = f"hp-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACES, body={"metadata": {"name": namespace}})
    the_world: World | None = None
    try:
        kubeconfig = yaml.safe_dump(control_plane.kubeconfig()).encode()
        await kube.create(
            CLUSTER, namespace=namespace,
            body={"metadata": {"name": CLUSTER_NAME}, "spec": {}},
        )  # fmt: skip
        await kube.create(
            SECRETS,
            namespace=namespace,
            body={
                "metadata": {"name": f"{CLUSTER_NAME}-kubeconfig",
                             "labels": {"cluster.x-k8s.io/cluster-name": CLUSTER_NAME}},
                "type": "cluster.x-k8s.io/secret",
                "data": {"value": base64.b64encode(kubeconfig).decode()},
            },
        )  # fmt: skip
        manager = Manager(
            kube=kube,
            registry=registry,
            options=ManagerOptions(
                metrics_address="0", health_address="0", graceful_shutdown_timeout=5
            ),
        )
        async with (
            KubeNodeRegistrar(management=kube) as registrar,
            Simulator(
                registrar=registrar,
                seed=1,
                failed_retention=FAILED_RETENTION,
                node_monitor_period=NODE_MONITOR_PERIOD,
            ) as simulator,
        ):
            the_world = World(kube=kube, namespace=namespace, simulator=simulator)
            setup_controllers(
                options=controller_options(
                    manager=manager, namespace=namespace, recorder=None, concurrency=4,
                    reconcile_timeout=30,
                ),
                kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator,
                                              busy_poll=0.5)]),
                pools=True,
            )  # fmt: skip
            shutdown = asyncio.Event()
            task = asyncio.create_task(manager.run(shutdown=shutdown))
            try:
                await until(manager.controllers_started.is_set, what="controllers")
                yield the_world
            finally:
                shutdown.set()
                await asyncio.wait_for(task, 15)
    finally:
        # The simulator has stopped: the Nodes left are the example's to remove.
        if the_world is not None:
            for node in await the_world.group_nodes():
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])
        with contextlib.suppress(ApiError):
            await kube.delete(NAMESPACES, name=namespace)
