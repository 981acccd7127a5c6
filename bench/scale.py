"""Scale: P MachinePools of R replicas from a cold controller start, against a physical floor.

One process runs everything against a real local control plane (``ControlPlane``: etcd +
kube-apiserver): the product as ``machinepool-controller run`` wires it
(``controller.app.setup_controllers``: MachinePool, Machine and InMemoryMachinePool
controllers, ``--concurrency`` workers each) and the in-process ``Simulator`` whose kubelets
register real Nodes. The workload cluster is the same API server reached as ``localhost``
through the ``c1-kubeconfig`` Secret. Every template boots at once (``bootDelaySeconds: 0``,
``readyDelaySeconds: 0``): what is measured is the controllers and the API server.

Phases, in this order, on one control plane:

1. **Fleet objects**: ``--pools`` InMemoryMachinePools + MachinePools of ``--replicas``
   (and one more, ``probe``, of 1 replica), created before any controller runs.
2. **Cold start**: the manager starts; wall time until every pool is complete: Running,
   ``status.replicas == readyReplicas == R``, ``spec.providerIDList`` and ``status.nodeRefs``
   of R, ``observedGeneration`` current, and R Machines in phase Running with a nodeRef.
   While that backlog drains, ``probe`` is scaled 1 → 2 → 1 … and each step's latency
   (PATCH of the scale subresource → the bench's watch sees ``probe`` converged) is the
   *backlog latency*: a person's change must not wait behind the cold-start backlog. The
   first step is sent once the manager's caches have synced (its initial LIST is done): a
   change made before the controllers have even listed is part of the backlog they list.
3. **Settle**, then **idle latency**: ``--samples`` more scale steps of ``probe``.
4. **Full resync**: every informer of the manager replays its cache (what ``--sync-period``
   does); the writes (target 0), reads and CPU seconds until the controllers are quiet.
5. **Memory**: peak RSS of this process (``ru_maxrss``), and the RSS growth from before the
   manager started to the converged fleet divided by the objects in the manager's caches.
   Both include the simulator and the bench's own two informers (same process), so they
   overstate the controller's share. The caches alone are measured by :mod:`bench.memory`
   (a deep ``sys.getsizeof`` walk of every informer store of the product, the workload
   cluster's Nodes included): bytes per cached object, by kind.
6. **Floor**: a bare asyncio client (no informers, no reconcile logic) performs, in another
   namespace, the writes that produce the same converged objects, derived from the
   controllers' final objects: per pool PATCH InMemoryMachinePool (finalizer + spec) and its
   status; per replica POST InMemoryMachine (+ status), POST Node + PATCH its status (the
   kubelet's part) and, if the controllers did, PATCH the Node; POST Machine + status;
   PATCH MachinePool (finalizer + spec) and its status. Pools run ``3 x --concurrency`` at a
   time (the three controllers' workers), writes of one stage of a pool in parallel. The
   headline figure is the cold-start wall time divided by the floor's.

API requests are counted per client (controllers, kubelets, bench, floor) by verb
(``WATCH``/``LIST``/``GET``/``POST``/``PATCH``/``PUT``/``DELETE``) and resource, by wrapping
``KubeClient._send`` in this process; the client is told by its ``RestMetrics``.

Run: ``.venv/bin/python -m bench.scale --pools 50 --replicas 10 [--samples 50] [--json]``
(needs the control plane binaries: ``make envtest``). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import cProfile
import gc
import json
import os
import platform
import pstats
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from bench import memory
from bench.machinepool import _cpu_seconds, _cpu_used, _quantile, converged
from controller.api.kinds import (
    CLUSTER,
    IN_MEMORY_MACHINE,
    IN_MEMORY_MACHINE_POOL,
    MACHINE,
    MACHINE_POOL,
)
from controller.api.labels import CLUSTER_NAME_LABEL
from controller.app import controller_options, setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NAMESPACES, NODES, SECRETS, KubeClient, RestMetrics
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.store import Obj, Store
from controller.testing import ControlPlane
from controller.testing.scenario import FAST_TEMPLATE, create_inmemory_pool
from controller.testing.waiting import until
from controller.workload.clusters import WorkloadClusters

_T = TypeVar("_T")

NAMESPACE = "scale"
FLOOR_NAMESPACE = "floor"
CLUSTER_NAME = "c1"
PROBE = "probe"
WRITES = ("POST", "PATCH", "PUT", "DELETE")
READS = ("GET", "LIST", "WATCH")
STEP_TIMEOUT = 120.0
BACKLOG_TIMEOUT = 3600.0
QUIET = 2.0
SERIES_SETTLE = 6.0

console = Console(stderr=True)


# ---------------------------------------------------------------------- request counting


def _resource_of(path: str) -> str:
    """``plural[/subresource]`` of an API path; ``/version`` and the like as they are."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    else:
        return "/" + "/".join(parts)
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    if not parts:
        return "namespaces"
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


class RequestLog:
    """Counts every ``KubeClient`` request of this process by client, verb and resource."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.clients: dict[int, str] = {}

    def name(self, metrics: RestMetrics, who: str) -> None:
        self.clients[id(metrics.requests)] = who

    def install(self) -> Callable[[], None]:
        original = KubeClient._send
        log = self

        async def _send(self: KubeClient, **kwargs: Any) -> Any:
            method = str(kwargs.get("method"))
            query = kwargs.get("query") or {}
            verb = method
            if method == "GET" and query.get("watch"):
                verb = "WATCH"
            elif method == "GET" and _is_collection(str(kwargs.get("path"))):
                verb = "LIST"
            who = log.clients.get(id(self._metrics.requests), "controllers")
            log.counts[who, verb, _resource_of(str(kwargs.get("path")))] += 1
            return await original(self, **kwargs)

        KubeClient._send = _send  # type: ignore[method-assign]

        def uninstall() -> None:
            KubeClient._send = original  # type: ignore[method-assign]

        return uninstall

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        return Counter(self.counts)


def _is_collection(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    return len(rest) == 1


def _of(counts: Counter[tuple[str, str, str]], who: str) -> Counter[tuple[str, str]]:
    return Counter({(v, r): n for (w, v, r), n in counts.items() if w == who and n})


def _summary(counts: Counter[tuple[str, str]], *, per: float = 1.0) -> Obj:
    by_verb: Counter[str] = Counter()
    for (verb, _), n in counts.items():
        by_verb[verb] += n
    return {
        "writes": round(sum(by_verb[v] for v in WRITES) / per, 2),
        "reads": round(sum(by_verb[v] for v in READS) / per, 2),
        "by_verb": {v: round(n / per, 2) for v, n in sorted(by_verb.items())},
        "by_verb_resource": {f"{v} {r}": round(n / per, 2) for (v, r), n in sorted(counts.items())},
    }


# ---------------------------------------------------------------------- fleet tracking


@dataclass
class Fleet:
    """Which pools are complete, from the bench's own MachinePool and Machine watches."""

    loop: asyncio.AbstractEventLoop
    replicas: dict[str, int] = field(default_factory=dict)
    pools: dict[str, Obj] = field(default_factory=dict)
    #: Machine name → complete?, per owning pool (indexed: a scan per event is quadratic).
    machines: dict[str, dict[str, bool]] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)
    all_complete: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: dict[str, tuple[int, asyncio.Future[float]]] = field(default_factory=dict)

    def on_pool(self, event: InformerEvent) -> None:
        name = str(event.obj["metadata"]["name"])
        if event.type == "DELETED":
            return
        self.pools[name] = event.obj
        waiting = self.waiters.get(name)
        if waiting is not None and converged(event.obj, waiting[0]):
            del self.waiters[name]
            if not waiting[1].done():
                waiting[1].set_result(self.loop.time())
        self._check(name)

    def on_machine(self, event: InformerEvent) -> None:
        meta = event.obj["metadata"]
        owner = next(
            (r["name"] for r in meta.get("ownerReferences") or [] if r["kind"] == "MachinePool"),
            "",
        )
        of_pool = self.machines.setdefault(owner, {})
        if event.type == "DELETED":
            of_pool.pop(meta["name"], None)
        else:
            status = event.obj.get("status") or {}
            ok = status.get("phase") == "Running" and bool(status.get("nodeRef"))
            of_pool[meta["name"]] = ok and not meta.get("deletionTimestamp")
        self._check(owner)

    def _check(self, name: str) -> None:
        want = self.replicas.get(name)
        if want is None or name == PROBE:
            return
        pool = self.pools.get(name)
        machines = list(self.machines.get(name, {}).values())
        if pool is not None and converged(pool, want) and len(machines) == want and all(machines):
            self.complete.add(name)
        else:
            self.complete.discard(name)
        if len(self.complete) == len(self.replicas) - (PROBE in self.replicas):
            self.all_complete.set()
        else:
            self.all_complete.clear()

    def expect(self, name: str, replicas: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = self.loop.create_future()
        self.waiters[name] = (replicas, future)
        pool = self.pools.get(name)
        if pool is not None and converged(pool, replicas):
            del self.waiters[name]
            future.set_result(self.loop.time())
        return future


# ---------------------------------------------------------------------- helpers


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _bounded(limit: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


async def _create_cluster(
    kube: KubeClient, cp: ControlPlane, *, namespace: str, server: str
) -> None:
    await kube.create(NAMESPACES, body={"metadata": {"name": namespace}})
    await kube.create(
        CLUSTER, namespace=namespace, body={"metadata": {"name": CLUSTER_NAME}, "spec": {}}
    )
    kubeconfig = cp.kubeconfig()
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = server
    labels = {CLUSTER_NAME_LABEL: CLUSTER_NAME}
    await kube.create(
        SECRETS, namespace=namespace,
        body={"metadata": {"name": f"{CLUSTER_NAME}-kubeconfig", "labels": labels},
              "type": "cluster.x-k8s.io/secret",
              "stringData": {"value": yaml.safe_dump(kubeconfig)}},
    )  # fmt: skip
    await kube.create(
        SECRETS, namespace=namespace,
        body={"metadata": {"name": "boot", "labels": labels}, "stringData": {"value": "#!"}},
    )  # fmt: skip


async def _quiet(log: RequestLog, *, idle: float = QUIET, limit: float = 120.0) -> float:
    """Until the controllers make no request for ``idle`` s (at most ``limit``)."""
    loop = asyncio.get_running_loop()
    began = quiet_since = loop.time()
    last = _of(log.snapshot(), "controllers")
    while loop.time() - began < limit:
        await asyncio.sleep(0.2)
        now = _of(log.snapshot(), "controllers")
        if now != last:
            last, quiet_since = now, loop.time()
        elif loop.time() - quiet_since >= idle:
            break
    return quiet_since - began


def _latency(values: list[float]) -> Obj:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(_quantile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


# ---------------------------------------------------------------------- the floor


_META_DROP = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def _renamed(obj: _T) -> _T:
    """``obj`` with the controllers' instance IDs (``scale-p…``, in provider IDs and Node
    names) turned into the floor's own (``floor-p…``): Nodes are cluster-scoped and the
    controllers match Nodes by provider ID across the whole workload cluster."""
    renamed: _T = json.loads(json.dumps(obj).replace(f"{NAMESPACE}-p", f"{FLOOR_NAMESPACE}-p"))
    return renamed


def _clean_meta(meta: Obj, *, namespace: str | None, uids: dict[str, str], name: str) -> Obj:
    out = {k: copy.deepcopy(v) for k, v in meta.items() if k not in _META_DROP}
    out["name"] = name
    if namespace is None:
        out.pop("namespace", None)
    else:
        out["namespace"] = namespace
    refs = [dict(r, uid=uids[r["uid"]]) for r in meta.get("ownerReferences") or []
            if r.get("uid") in uids]  # fmt: skip
    if refs:
        out["ownerReferences"] = refs
    else:
        out.pop("ownerReferences", None)
    return out


@dataclass
class Floor:
    """The bare client that performs the minimal writes; see the module docstring."""

    kube: KubeClient
    node_patches: bool

    async def pool(
        self, *, mp: Obj, imp: Obj, imms: list[Obj], machines: list[Obj], nodes: list[Obj]
    ) -> None:
        ns = FLOOR_NAMESPACE
        uids: dict[str, str] = {}
        name = mp["metadata"]["name"]
        # the user's objects exist already (created before the clock started)
        floor_imp = await self.kube.get(IN_MEMORY_MACHINE_POOL, namespace=ns, name=name)
        floor_mp = await self.kube.get(MACHINE_POOL, namespace=ns, name=name)
        uids[imp["metadata"]["uid"]] = floor_imp["metadata"]["uid"]
        uids[mp["metadata"]["uid"]] = floor_mp["metadata"]["uid"]
        await self.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=ns, name=name,
            patch={"metadata": {"finalizers": imp["metadata"].get("finalizers") or []},
                   "spec": imp["spec"]},
        )  # fmt: skip
        await self.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=ns, name=name, subresource="status",
            patch={"status": imp.get("status") or {}},
        )  # fmt: skip
        await asyncio.gather(*(self._node(n) for n in nodes))

        async def imm(obj: Obj) -> None:
            created = await self.kube.create(
                IN_MEMORY_MACHINE, namespace=ns,
                body={"metadata": _clean_meta(obj["metadata"], namespace=ns, uids=uids,
                                              name=obj["metadata"]["name"]),
                      "spec": obj.get("spec") or {}},
            )  # fmt: skip
            uids[obj["metadata"]["uid"]] = created["metadata"]["uid"]
            if obj.get("status"):
                await self.kube.merge_patch(
                    IN_MEMORY_MACHINE, namespace=ns, name=obj["metadata"]["name"],
                    subresource="status", patch={"status": obj["status"]},
                )  # fmt: skip

        await asyncio.gather(*(imm(o) for o in imms))

        async def machine(obj: Obj) -> None:
            await self.kube.create(
                MACHINE, namespace=ns,
                body={"metadata": _clean_meta(obj["metadata"], namespace=ns, uids=uids,
                                              name=obj["metadata"]["name"]),
                      "spec": obj.get("spec") or {}},
            )  # fmt: skip
            await self.kube.merge_patch(
                MACHINE, namespace=ns, name=obj["metadata"]["name"], subresource="status",
                patch={"status": obj.get("status") or {}},
            )  # fmt: skip

        await asyncio.gather(*(machine(o) for o in machines))
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name=name,
            patch={"metadata": {"finalizers": mp["metadata"].get("finalizers") or []},
                   "spec": {"providerIDList": mp["spec"].get("providerIDList") or []}},
        )  # fmt: skip
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name=name, subresource="status",
            patch={"status": mp.get("status") or {}},
        )  # fmt: skip

    async def _node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        spec = copy.deepcopy(node.get("spec") or {})
        await self.kube.create(
            NODES, body={"metadata": {"name": name, "labels": node["metadata"].get("labels")},
                         "spec": spec},
        )  # fmt: skip
        await self.kube.merge_patch(
            NODES, name=name, subresource="status", patch={"status": node.get("status") or {}}
        )
        if self.node_patches:
            await self.kube.merge_patch(
                NODES, name=name, patch={"metadata": {"labels": {"floor": "true"}}}
            )


# ---------------------------------------------------------------------- the bench


async def run(
    *,
    pools: int,
    replicas: int,
    samples: int,
    backlog_samples: int,
    concurrency: int,
    writers: int,
    kubelets: int = 16,
    profile: Path | None,
) -> Obj:
    loop = asyncio.get_running_loop()
    log = RequestLog()
    uninstall = log.install()
    wall = time.monotonic()
    try:
        async with ControlPlane() as cp, contextlib.AsyncExitStack() as stack:
            console.print(f"control plane up in {cp.start_seconds:.1f}s")
            driver = KubeClient(
                api=await stack.enter_async_context(cp.api_client()),
                metrics=RestMetrics(registry=CollectorRegistry()),
            )
            log.name(driver._metrics, "bench")
            floor_kube = KubeClient(
                api=await stack.enter_async_context(cp.api_client()),
                metrics=RestMetrics(registry=CollectorRegistry()),
            )
            log.name(floor_kube._metrics, "floor")
            kubelet_metrics = RestMetrics(registry=CollectorRegistry())
            log.name(kubelet_metrics, "kubelets")
            kubelet_kube = KubeClient(
                api=await stack.enter_async_context(cp.api_client()), metrics=kubelet_metrics
            )
            registry = CollectorRegistry()
            kube = KubeClient(
                api=await stack.enter_async_context(cp.api_client()),
                metrics=RestMetrics(registry=registry),
            )
            version = str((await driver.request(method="GET", path="/version"))["gitVersion"])
            workload_server = f"https://localhost:{cp.apiserver_port}"
            for ns in (NAMESPACE, FLOOR_NAMESPACE):
                await _create_cluster(driver, cp, namespace=ns, server=workload_server)

            # 1. the fleet's objects, before any controller runs
            console.print(f"creating {pools} pools of {replicas} (+ probe) in two namespaces")
            names = [f"p{i:05d}" for i in range(pools)]
            fleet = Fleet(loop=loop, replicas={n: replicas for n in names})
            fleet.replicas[PROBE] = 1

            def creator(ns: str, name: str, n: int) -> Callable[[], Awaitable[None]]:
                async def job() -> None:
                    await create_inmemory_pool(
                        kube=driver, namespace=ns, name=name, cluster=CLUSTER_NAME,
                        replicas=n, template=FAST_TEMPLATE,
                    )  # fmt: skip

                return job

            await _bounded(
                writers,
                [creator(NAMESPACE, n, replicas) for n in names]
                + [creator(NAMESPACE, PROBE, 1)]
                + [creator(FLOOR_NAMESPACE, n, replicas) for n in names],
            )
            mp_informer = Informer(kube=driver, resource=MACHINE_POOL, namespace=NAMESPACE)
            mp_informer.add_handler(fleet.on_pool)
            m_informer = Informer(kube=driver, resource=MACHINE, namespace=NAMESPACE)
            m_informer.add_handler(fleet.on_machine)
            watch_tasks = [asyncio.create_task(i.run()) for i in (mp_informer, m_informer)]
            for informer in (mp_informer, m_informer):
                await asyncio.wait_for(informer.wait_for_sync(), 60)

            # 2. cold start
            manager = Manager(
                kube=kube, registry=registry,
                options=ManagerOptions(metrics_address="0", health_address="0", sync_period=None),
            )  # fmt: skip
            registrar = KubeNodeRegistrar(management=kubelet_kube, rest_metrics=kubelet_metrics)
            stack.push_async_callback(registrar.aclose)
            simulator = await stack.enter_async_context(
                Simulator(registrar=registrar, seed=1, node_concurrency=kubelets)
            )
            recorder = EventRecorder(kube=kube, instance="bench")
            setup_controllers(
                options=controller_options(
                    manager=manager, namespace=NAMESPACE, recorder=recorder,
                    concurrency=concurrency, reconcile_timeout=60,
                ),
                kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator)]),
                pools=True,
            )  # fmt: skip
            await stack.enter_async_context(recorder)
            rss_before = _rss_kib()
            shutdown = asyncio.Event()
            profiler = cProfile.Profile() if profile else None
            before = log.snapshot()
            cpu_before = _cpu_seconds()
            if profiler is not None:
                profiler.enable()
            began = loop.time()
            manager_task = asyncio.create_task(manager.run(shutdown=shutdown), name="manager")

            async def stop() -> None:
                shutdown.set()
                await asyncio.wait({manager_task}, timeout=15)
                for task in (manager_task, *watch_tasks):
                    task.cancel()
                await asyncio.gather(manager_task, *watch_tasks, return_exceptions=True)

            stack.push_async_callback(stop)
            console.print(f"cold start: {pools} x {replicas}, {concurrency} workers a controller")
            backlog: list[float] = []
            probe_at = 1
            await until(lambda: manager.caches_synced() is None, timeout=300, interval=0.01,
                        what="the manager's caches synced")  # fmt: skip
            while not fleet.all_complete.is_set() and len(backlog) < backlog_samples:
                probe_at = 2 if probe_at == 1 else 1
                future = fleet.expect(PROBE, probe_at)
                await driver.merge_patch(
                    MACHINE_POOL, namespace=NAMESPACE, name=PROBE, subresource="scale",
                    patch={"spec": {"replicas": probe_at}},
                )  # fmt: skip
                patched = loop.time()
                # however long it takes: how long a fresh change waits is the measurement
                seen = await asyncio.wait_for(future, BACKLOG_TIMEOUT)
                backlog.append(seen - patched)  # started during the backlog, so it counts
            await asyncio.wait_for(fleet.all_complete.wait(), 3600)
            cold_seconds = loop.time() - began
            if profiler is not None:
                profiler.disable()
            cold_requests = log.snapshot() - before
            cold_cpu = _cpu_used(cpu_before)
            console.print(f"  complete in {cold_seconds:.1f}s; backlog probes {len(backlog)}")
            settle = await _quiet(log)
            rss_converged = _rss_kib()
            stores = _stores(manager)
            cached = sum(len(i.store) for i in manager._informers.values())
            caches = memory.summary(memory.cache_sizes(stores))
            console.print(f"  caches: {caches['total']}")

            # 3. idle latency
            idle: list[float] = []
            for _ in range(samples):
                probe_at = 2 if probe_at == 1 else 1
                future = fleet.expect(PROBE, probe_at)
                await driver.merge_patch(
                    MACHINE_POOL, namespace=NAMESPACE, name=PROBE, subresource="scale",
                    patch={"spec": {"replicas": probe_at}},
                )  # fmt: skip
                patched = loop.time()
                idle.append(await asyncio.wait_for(future, STEP_TIMEOUT) - patched)
            if probe_at != 1:  # leave the probe at 1
                future = fleet.expect(PROBE, 1)
                await driver.merge_patch(
                    MACHINE_POOL, namespace=NAMESPACE, name=PROBE, subresource="scale",
                    patch={"spec": {"replicas": 1}},
                )  # fmt: skip
                await asyncio.wait_for(future, STEP_TIMEOUT)
            # Longer than the Event recorder's series interval (5 s): a repeated Event of the
            # last steps is patched that late, and it is not the resync's write.
            await _quiet(log, idle=SERIES_SETTLE)
            console.print(f"  idle latency p50 {_latency(idle).get('p50_ms')} ms")

            # 4. full resync
            before = log.snapshot()
            cpu_before = _cpu_seconds()
            resync_began = loop.time()
            for informer in manager._informers.values():
                for obj in informer.store.values():
                    informer._dispatch(InformerEvent(type="SYNC", obj=obj))
            resync_busy = await _quiet(log)
            resync_requests = _of(log.snapshot() - before, "controllers")
            resync_cpu = _cpu_used(cpu_before)
            resync_reconciles = _reconciles(registry)
            resync_seconds = loop.time() - resync_began
            console.print(f"  resync: {_summary(resync_requests)['by_verb']}")
            if resync_requests:
                console.print(f"  resync requests: {dict(resync_requests)}")

            # 6. the floor, from the converged objects
            imps = {o["metadata"]["name"]: o for o in (await driver.list(
                IN_MEMORY_MACHINE_POOL, namespace=NAMESPACE))["items"]}  # fmt: skip
            imms = (await driver.list(IN_MEMORY_MACHINE, namespace=NAMESPACE))["items"]
            machines = (await driver.list(MACHINE, namespace=NAMESPACE))["items"]
            nodes = {n["spec"].get("providerID"): n for n in (await driver.list(NODES))["items"]}
            node_patches = cold_requests[("controllers", "PATCH", "nodes")] > 0
            floor = Floor(kube=floor_kube, node_patches=node_patches)
            jobs = []
            for name in names:
                mp = fleet.pools[name]
                imp = imps[name]
                ids = set(mp["spec"].get("providerIDList") or [])

                def owned(objs: list[Obj], kind: str, owner: str) -> list[Obj]:
                    return [o for o in objs if any(
                        r["kind"] == kind and r["name"] == owner
                        for r in o["metadata"].get("ownerReferences") or [])]  # fmt: skip

                def floor_job(
                    mp: Obj = mp, imp: Obj = imp, ids: set[str] = ids, name: str = name
                ) -> Callable[[], Awaitable[None]]:
                    async def job() -> None:
                        await floor.pool(
                            mp=_renamed(mp), imp=_renamed(imp),
                            imms=_renamed(owned(imms, IN_MEMORY_MACHINE_POOL.kind, name)),
                            machines=_renamed(owned(machines, MACHINE_POOL.kind, name)),
                            nodes=_renamed([nodes[i] for i in sorted(ids) if i in nodes]),
                        )  # fmt: skip

                    return job

                jobs.append(floor_job())
            console.print(f"floor: {pools} pools, {3 * concurrency} at a time")
            before = log.snapshot()
            cpu_before = _cpu_seconds()
            floor_began = loop.time()
            await _bounded(3 * concurrency, jobs)
            floor_seconds = loop.time() - floor_began
            floor_cpu = _cpu_used(cpu_before)
            floor_requests = _of(log.snapshot() - before, "floor")
            console.print(f"  floor {floor_seconds:.1f}s")
            controllers_cold = _of(cold_requests, "controllers")
            kubelets_cold = _of(cold_requests, "kubelets")
            profile_top: list[str] = []
            if profiler is not None and profile is not None:
                profiler.dump_stats(str(profile))
                profile_top = _profile_top(profile)
        return {
            "pools": pools,
            "replicas": replicas,
            "concurrency": concurrency,
            "cold_start_seconds": round(cold_seconds, 2),
            "floor_seconds": round(floor_seconds, 2),
            "ratio": round(cold_seconds / floor_seconds, 2),
            "settle_seconds": round(settle, 2),
            "cold_cpu_seconds": cold_cpu,
            "floor_cpu_seconds": floor_cpu,
            "controller_requests_per_pool": _summary(controllers_cold, per=pools + 1),
            "kubelet_requests_per_pool": _summary(kubelets_cold, per=pools + 1),
            "floor_requests_per_pool": _summary(floor_requests, per=pools),
            "resync": {
                "requests": _summary(resync_requests),
                "cpu_seconds": resync_cpu,
                "busy_seconds": round(resync_busy, 2),
                "seconds": round(resync_seconds, 2),
                "reconciles_total": resync_reconciles,
            },
            "latency_idle": _latency(idle),
            "latency_backlog": _latency(backlog),
            "peak_rss_mib": round(_peak_rss_kib() / 1024, 1),
            "rss_growth_mib": round((rss_converged - rss_before) / 1024, 1),
            "cached_objects": cached,
            "rss_per_cached_object_kib": round((rss_converged - rss_before) / max(cached, 1), 2),
            "caches": caches,
            "profile_top": profile_top,
            "wall_seconds": round(time.monotonic() - wall, 1),
            "kube_apiserver": version,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
            f"{_cpu_model()}",
        }
    finally:
        uninstall()


def _stores(manager: Manager) -> dict[str, Store]:
    """Every informer store of the product: the manager's, by kind (and label selector when
    a kind has several), and each workload cluster's Nodes. The workload clusters are not
    reachable from the manager, so they are found among the live objects."""
    stores: dict[str, Store] = {}
    for (res, _namespace, selector), informer in manager._informers.items():
        name = res.kind if res.kind not in stores else f"{res.kind} ({selector})"
        stores[name] = informer.store
    for workloads in (o for o in gc.get_objects() if isinstance(o, WorkloadClusters)):
        for key in workloads.keys():  # noqa: SIM118 (a method, not a dict)
            cluster = workloads.get(key)
            if cluster is not None:
                stores[f"Node (workload {key.name})"] = cluster.nodes.store
    return stores


def _reconciles(registry: CollectorRegistry) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for family in registry.collect():
        if family.name == "controller_runtime_reconcile":
            for sample in family.samples:
                if sample.name == "controller_runtime_reconcile_total":
                    counts[sample.labels["controller"]] += int(sample.value)
    return dict(counts)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _profile_top(path: Path, *, limit: int = 25) -> list[str]:
    stats = pstats.Stats(str(path))
    rows = []
    for func, (_cc, _nc, tottime, cumtime, _callers) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: item[1][2],
        reverse=True,
    )[:limit]:
        filename, line, name = func
        rows.append(
            f"{tottime:8.2f}s self {cumtime:8.2f}s cum  {Path(filename).name}:{line} {name}"
        )
    return rows


# ---------------------------------------------------------------------- output


def _rows(result: Obj) -> Iterator[tuple[str, str]]:
    yield "pools x replicas", f"{result['pools']} x {result['replicas']} (+1 probe)"
    yield "cold start → all complete (s)", str(result["cold_start_seconds"])
    yield "floor: same writes, bare client (s)", str(result["floor_seconds"])
    yield "ratio controller / floor (target ≤ 1.5)", str(result["ratio"])
    for key, label in (
        ("controller_requests_per_pool", "controllers"),
        ("floor_requests_per_pool", "floor"),
        ("kubelet_requests_per_pool", "simulated kubelets"),
    ):
        s = result[key]
        yield f"{label}: writes / reads per pool", f"{s['writes']} / {s['reads']}"
    resync = result["resync"]
    yield (
        "full resync: writes / reads / reconciles",
        f"{resync['requests']['writes']} / {resync['requests']['reads']} / "
        f"{sum(resync['reconciles_total'].values())} total so far",
    )
    yield "full resync: CPU s (python)", str(next(iter(resync["cpu_seconds"].values())))
    yield "full resync: busy s", str(resync["busy_seconds"])
    for key, label in (("latency_idle", "idle"), ("latency_backlog", "during backlog")):
        lat = result[key]
        if lat["samples"]:
            yield (
                f"scale → converged, {label} (n={lat['samples']})",
                f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms",
            )
        else:
            yield f"scale → converged, {label}", "no sample"
    yield "peak RSS (MiB, whole process)", str(result["peak_rss_mib"])
    yield (
        "RSS growth / cached objects",
        f"{result['rss_growth_mib']} MiB / {result['cached_objects']} = "
        f"{result['rss_per_cached_object_kib']} KiB",
    )
    caches = result["caches"]
    yield (
        "informer caches (deep size) / cached objects",
        f"{caches['total_mib']} MiB / {caches['total']['objects']} = "
        f"{caches['total']['bytes_per_object']} B",
    )
    cpu = ", ".join(f"{k}: {v:g}" for k, v in result["cold_cpu_seconds"].items())
    yield "cold start CPU s", cpu


def _print(result: Obj) -> None:
    out = Console()
    table = Table(title="bench.scale")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for row in _rows(result):
        table.add_row(*row)
    out.print(table)
    per = Table(title="requests per pool by verb and resource (cold start; floor)")
    per.add_column("verb resource")
    per.add_column("controllers", justify="right")
    per.add_column("floor", justify="right")
    c = result["controller_requests_per_pool"]["by_verb_resource"]
    f = result["floor_requests_per_pool"]["by_verb_resource"]
    for key in sorted(set(c) | set(f)):
        per.add_row(key, str(c.get(key, "")), str(f.get(key, "")))
    out.print(per)
    mem = Table(title="informer caches: bytes per cached object, by kind (bench.memory)")
    for column in ("cache", "objects", "bytes/object", "of which objects", "keys + indexes",
                   "repeated strings", "as JSON"):  # fmt: skip
        mem.add_column(column, justify="left" if column == "cache" else "right")
    for name, s in [*result["caches"]["by_kind"].items(), ("total", result["caches"]["total"])]:
        mem.add_row(
            name, str(s["objects"]), str(s["bytes_per_object"]),
            str(s["object_bytes_per_object"]), str(s["key_and_index_bytes_per_object"]),
            str(s["repeated_string_bytes_per_object"]), str(s["json_bytes_per_object"]),
        )  # fmt: skip
    out.print(mem)
    resync = result["resync"]["requests"]["by_verb_resource"]
    out.print(f"full resync requests: {resync or 'none'}")
    for line in result["profile_top"]:
        out.print(line)
    out.print(
        f"wall {result['wall_seconds']} s; kube-apiserver {result['kube_apiserver']}; "
        f"Python {result['python']}; {result['machine']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--samples", type=int, default=50, help="idle scale steps")
    parser.add_argument("--backlog-samples", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10, help="workers per controller")
    parser.add_argument("--writers", type=int, default=20, help="concurrent pool creators")
    parser.add_argument(
        "--kubelets", type=int, default=16,
        help="simulated kubelets writing Nodes at once (the simulator's node_concurrency)",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="cProfile the cold start into this file")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.pools < 1 or args.replicas < 1 or args.samples < 1:
        parser.error("need --pools, --replicas and --samples >= 1")
    configure_logging(level=args.log_level)
    try:
        result = asyncio.run(
            run(
                pools=args.pools,
                replicas=args.replicas,
                samples=args.samples,
                backlog_samples=args.backlog_samples,
                concurrency=args.concurrency,
                writers=args.writers,
                kubelets=args.kubelets,
                profile=args.profile,
            )
        )
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
