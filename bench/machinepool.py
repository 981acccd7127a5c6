"""MachinePool convergence: scale-step latency with and without an idle fleet, and API cost.

One process runs everything against a real local control plane (``ControlPlane``: etcd +
kube-apiserver): a ``Manager`` with both reconcilers wired as ``machinepool-controller run``
wires them (``controller.app.setup_controllers``, default
concurrency 10, an ``EventRecorder``, metrics and health servers disabled), and the in-process
``Simulator`` whose kubelets register real Nodes through ``KubeNodeRegistrar``. The workload
cluster is the same API server under another name (``localhost`` rather than ``127.0.0.1``),
reached through the ``c1-kubeconfig`` Secret; :mod:`controller.testing.scenario` builds the
pools. Every pool's template
boots at once (``FAST_TEMPLATE``: ``bootDelaySeconds: 0``, ``readyDelaySeconds: 0``), so what
is measured is the controllers and the API server, not simulated boot time. Every pool names
the bootstrap data Secret ``boot``, labelled with the cluster name as Cluster API's bootstrap
providers label theirs (so it is in the controller's Secret cache);
``--unlabelled-bootstrap-secret`` leaves the label off, which costs a GET per reconcile.

Measured, in this order, on one control plane:

- **Scenario A** (no other pools): the pool ``measured`` is scaled ``--steps`` times,
  alternating ``--high`` and ``--low`` replicas, through the ``scale`` subresource (a merge
  PATCH, as ``kubectl scale`` does). Latency of a step: from the PATCH returning to the watch
  event that shows the pool converged: ``spec.replicas`` as asked, ``status.phase`` Running,
  ``status.replicas == readyReplicas == spec.replicas``, ``spec.providerIDList`` and
  ``status.nodeRefs`` of that length, and ``observedGeneration >= generation``. Convergence is
  seen by the benchmark's own MachinePool informer (watch, no polling), so a figure includes
  one watch delivery. Steps start ``--pause`` seconds after the previous one converged.
- **Idle fleet**: ``--idle-pools`` more pools of 1 replica in the same namespace are created
  (``--writers`` concurrent creators: the InMemoryMachinePool, then the MachinePool) and
  awaited until every one is converged; then until the controllers have made no API request
  for 2 s (the settle). The controllers' API requests over that window (management cluster
  and workload cluster), divided by the pool count, are the cost of a converged pool.
- **Quiet window**: the controllers' requests during ``--quiet-seconds`` (10) with nothing
  changing. The target is 0 writes.
- **Scenario B**: scenario A again, on the same pool, with the idle fleet in place.

API requests are read from ``rest_client_requests_total`` (by method) on the manager's
private registry and on the default registry (the controllers' workload-cluster clients count
on one or the other depending on the wiring; nothing else in this process uses the default
one), split by the ``host`` label into management cluster (``127.0.0.1``, the recorder's
Events included) and workload clusters (``host="workload"``, one value for every workload
cluster: their addresses are tenants' input). The benchmark's own requests and the
simulated kubelets' go to registries of their own; the kubelets' are reported beside, not
in, the controllers' cost.
GETs include the LIST and WATCH requests of informers. Reconciles are counted from
``controller_runtime_reconcile_total``. For every phase, CPU seconds of this Python process
(controllers, simulator and the benchmark itself), kube-apiserver, etcd and every other process
on the machine are read from ``/proc``: a run that other work disturbed shows it.

Run: ``.venv/bin/python -m bench.machinepool [--steps 50] [--idle-pools 500] [--json]``
(needs the control plane binaries: ``make envtest``). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from controller.api.kinds import CLUSTER, MACHINE_POOL
from controller.api.labels import CLUSTER_NAME_LABEL
from controller.app import controller_options, setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NAMESPACES, SECRETS, WORKLOAD_HOST, KubeClient, RestMetrics
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.metrics import REGISTRY
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.scenario import FAST_TEMPLATE, create_inmemory_pool

NAMESPACE = "bench"
CLUSTER_NAME = "c1"
MEASURED = "measured"
WRITES = ("POST", "PATCH", "PUT", "DELETE")
VERBS = ("GET", *WRITES)
STEP_TIMEOUT = 60.0
SETTLE_IDLE = 2.0
SETTLE_MAX = 30.0

console = Console(stderr=True)


# ---------------------------------------------------------------------- requests


def _requests(*registries: CollectorRegistry) -> dict[str, Counter[str]]:
    """``rest_client_requests_total`` of ``registries``, by host, summed by method."""
    counts: dict[str, Counter[str]] = {}
    for registry in registries:
        for family in registry.collect():
            if family.name != "rest_client_requests":
                continue
            for sample in family.samples:
                if sample.name == "rest_client_requests_total":
                    by_method = counts.setdefault(sample.labels["host"], Counter())
                    by_method[sample.labels["method"]] += int(sample.value)
    return counts


def _reconciles(registry: CollectorRegistry) -> Counter[str]:
    """``controller_runtime_reconcile_total`` by ``controller/result``."""
    counts: Counter[str] = Counter()
    for family in registry.collect():
        if family.name != "controller_runtime_reconcile":
            continue
        for sample in family.samples:
            if sample.name == "controller_runtime_reconcile_total":
                key = f"{sample.labels['controller']}/{sample.labels['result']}"
                counts[key] += int(sample.value)
    return counts


@dataclass(frozen=True)
class Requests:
    """A snapshot of counters: the controllers' requests (two clients), the kubelets'
    requests, and the reconciles by controller and result."""

    management: Counter[str]
    workload: Counter[str]
    kubelets: Counter[str]
    reconciles: Counter[str]

    @property
    def controllers(self) -> Counter[str]:
        return self.management + self.workload

    def __sub__(self, earlier: Requests) -> Requests:
        return Requests(
            management=_minus(self.management, earlier.management),
            workload=_minus(self.workload, earlier.workload),
            kubelets=_minus(self.kubelets, earlier.kubelets),
            reconciles=_minus(self.reconciles, earlier.reconciles),
        )


def _minus(a: Counter[str], b: Counter[str]) -> Counter[str]:
    return Counter({k: a[k] - b[k] for k in set(a) | set(b)})


def _by_verb(counts: Counter[str], *, per: float = 1.0) -> dict[str, float]:
    out = {verb: round(counts[verb] / per, 2) for verb in VERBS}
    out["writes"] = round(sum(counts[v] for v in WRITES) / per, 2)
    out["total"] = round(sum(counts.values()) / per, 2)
    return out


# ---------------------------------------------------------------------- CPU


PYTHON_CPU = "python (controllers, simulator, bench)"
OTHER_CPU = "other processes on the machine"


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process, of its children by name, and of the
    whole machine (``/proc/stat``), to tell our work from anything else running."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {PYTHON_CPU: time.process_time()}
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == me:  # fields[1] is the ppid
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    out["machine"] = (user + nice + system + irq + softirq + steal) / tick
    return out


def _cpu_used(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds used since ``before``, with the machine total turned into 'other'."""
    after = _cpu_seconds()
    used = {k: v - before.get(k, 0.0) for k, v in after.items()}
    machine = used.pop("machine")
    used[OTHER_CPU] = max(machine - sum(used.values()), 0.0)
    return {k: round(v, 1) for k, v in used.items()}


# ---------------------------------------------------------------------- convergence


def converged(obj: Obj, replicas: int) -> bool:
    """The pool is Running with ``replicas`` everywhere the module docstring lists."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return bool(
        spec.get("replicas") == replicas
        and status.get("phase") == "Running"
        and status.get("replicas") == replicas
        and status.get("readyReplicas") == replicas
        and len(spec.get("providerIDList") or []) == replicas
        and len(status.get("nodeRefs") or []) == replicas
        and int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    )


@dataclass
class Watcher:
    """Tells, from MachinePool watch events, when pools converge (with the loop's time)."""

    loop: asyncio.AbstractEventLoop
    waiters: dict[str, tuple[int, asyncio.Future[float]]] = field(default_factory=dict)
    idle_target: int = 0
    idle_converged: set[str] = field(default_factory=set)
    idle_done: asyncio.Event = field(default_factory=asyncio.Event)

    def handle(self, event: InformerEvent) -> None:
        if event.type == "DELETED":
            return
        name = str(event.obj["metadata"]["name"])
        waiting = self.waiters.get(name)
        if waiting is not None:
            replicas, future = waiting
            if not future.done() and converged(event.obj, replicas):
                future.set_result(self.loop.time())
                del self.waiters[name]
        if name.startswith("idle-") and converged(event.obj, 1):
            self.idle_converged.add(name)
            if self.idle_target and len(self.idle_converged) >= self.idle_target:
                self.idle_done.set()

    def expect(self, name: str, replicas: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = self.loop.create_future()
        self.waiters[name] = (replicas, future)
        return future


# ---------------------------------------------------------------------- objects


async def _create_pool(kube: KubeClient, name: str, replicas: int) -> None:
    """An InMemoryMachinePool with a template that boots at once, and its MachinePool."""
    await create_inmemory_pool(
        kube=kube, namespace=NAMESPACE, name=name, cluster=CLUSTER_NAME, replicas=replicas,
        template=FAST_TEMPLATE,
    )  # fmt: skip


async def _create_cluster(
    kube: KubeClient, cp: ControlPlane, *, server: str, labelled: bool
) -> None:
    """The namespace; the Cluster and its ``c1-kubeconfig`` Secret (labelled as Cluster API
    labels it) whose kubeconfig reaches the same API server as ``server``; and the bootstrap
    data Secret every pool names (labelled with the cluster name as Cluster API's bootstrap
    providers label theirs, unless ``labelled`` is false)."""
    await kube.create(NAMESPACES, body={"metadata": {"name": NAMESPACE}})
    await kube.create(
        CLUSTER, namespace=NAMESPACE, body={"metadata": {"name": CLUSTER_NAME}, "spec": {}}
    )
    kubeconfig = cp.kubeconfig()
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = server
    await kube.create(
        SECRETS,
        namespace=NAMESPACE,
        body={
            "metadata": {
                "name": f"{CLUSTER_NAME}-kubeconfig",
                "labels": {CLUSTER_NAME_LABEL: CLUSTER_NAME},
            },
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": yaml.safe_dump(kubeconfig)},
        },
    )
    labels = {CLUSTER_NAME_LABEL: CLUSTER_NAME} if labelled else {}
    await kube.create(
        SECRETS,
        namespace=NAMESPACE,
        body={"metadata": {"name": "boot", "labels": labels}, "stringData": {"value": "#!"}},
    )


# ---------------------------------------------------------------------- the bench


@dataclass
class Bench:
    driver: KubeClient
    watcher: Watcher
    snapshot: Callable[[], Requests]
    loop: asyncio.AbstractEventLoop

    async def scale_steps(self, *, steps: int, low: int, high: int, pause: float) -> Obj:
        """The latency scenario on ``MEASURED`` (already converged at ``low``)."""
        latencies: list[float] = []
        before = self.snapshot()
        cpu_before = _cpu_seconds()
        began = self.loop.time()
        for step in range(steps):
            replicas = high if step % 2 == 0 else low
            future = self.watcher.expect(MEASURED, replicas)
            await self.driver.merge_patch(
                MACHINE_POOL, namespace=NAMESPACE, name=MEASURED, subresource="scale",
                patch={"spec": {"replicas": replicas}},
            )  # fmt: skip
            patched = self.loop.time()
            try:
                seen = await asyncio.wait_for(future, STEP_TIMEOUT)
            except TimeoutError:
                raise RuntimeError(
                    f"step {step + 1}: {MEASURED} not converged at {replicas} replicas "
                    f"within {STEP_TIMEOUT:g}s"
                ) from None
            latencies.append(max(seen - patched, 0.0))
            await asyncio.sleep(pause)
        elapsed = self.loop.time() - began
        used = self.snapshot() - before
        return {
            "steps": steps,
            "p50_ms": _ms(statistics.median(latencies)),
            "p99_ms": _ms(_quantile(latencies, 0.99)),
            "max_ms": _ms(max(latencies)),
            "min_ms": _ms(min(latencies)),
            "mean_ms": _ms(statistics.fmean(latencies)),
            "scale_up_p50_ms": _ms(statistics.median(latencies[0::2])),
            "scale_down_p50_ms": _ms(statistics.median(latencies[1::2] or latencies)),
            "seconds": round(elapsed, 2),
            "controller_requests_per_step": _by_verb(used.controllers, per=steps),
            "kubelet_requests_per_step": _by_verb(used.kubelets, per=steps),
            "reconciles_per_step": _per(used.reconciles, steps),
            "cpu_seconds": _cpu_used(cpu_before),
        }

    async def idle_fleet(self, *, pools: int, writers: int) -> Obj:
        """Create ``pools`` idle pools and wait until all are converged and settled."""
        self.watcher.idle_target = pools
        names = iter(f"idle-{i:04d}" for i in range(pools))
        created = 0
        cpu_before = _cpu_seconds()
        before = self.snapshot()
        began = self.loop.time()

        async def writer() -> None:
            nonlocal created
            for name in names:
                await _create_pool(self.driver, name, 1)
                created += 1

        async def progress() -> None:
            while True:
                await asyncio.sleep(10)
                console.print(
                    f"  {self.loop.time() - began:6.0f}s  created {created}/{pools}, "
                    f"converged {len(self.watcher.idle_converged)}/{pools}"
                )

        reporter = asyncio.create_task(progress())
        try:
            await asyncio.gather(*(writer() for _ in range(writers)))
            created_at = self.loop.time()
            deadline = max(300.0, pools * 3.0)
            try:
                await asyncio.wait_for(self.watcher.idle_done.wait(), deadline)
            except TimeoutError:
                raise RuntimeError(
                    f"only {len(self.watcher.idle_converged)} of {pools} idle pools converged "
                    f"within {deadline:g}s"
                ) from None
            converged_at = self.loop.time()
            at_convergence = self.snapshot()
            settle = await self._settle()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        end = self.snapshot()
        used = end - before
        settled = end - at_convergence
        return {
            "pools": pools,
            "create_seconds": round(created_at - began, 2),
            "converge_seconds": round(converged_at - began, 2),
            "settle_seconds": round(settle, 2),
            "pools_per_second": round(pools / (converged_at - began), 2),
            "controller_requests_per_pool": _by_verb(used.controllers, per=pools),
            "management_requests_per_pool": _by_verb(used.management, per=pools),
            "workload_requests_per_pool": _by_verb(used.workload, per=pools),
            "kubelet_requests_per_pool": _by_verb(used.kubelets, per=pools),
            "reconciles_per_pool": _per(used.reconciles, pools),
            "cpu_seconds": _cpu_used(cpu_before),
            "settle_controller_requests": _by_verb(settled.controllers),
            "settle_reconciles": _per(settled.reconciles, 1),
        }

    async def _settle(self) -> float:
        """Until the controllers make no request for ``SETTLE_IDLE`` s (at most ``SETTLE_MAX``)."""
        began = self.loop.time()
        last = self.snapshot().controllers
        quiet_since = began
        while self.loop.time() - began < SETTLE_MAX:
            await asyncio.sleep(0.25)
            now = self.snapshot().controllers
            if now != last:
                last, quiet_since = now, self.loop.time()
            elif self.loop.time() - quiet_since >= SETTLE_IDLE:
                break
        return self.loop.time() - began

    async def quiet(self, *, seconds: float) -> Obj:
        before = self.snapshot()
        cpu_before = _cpu_seconds()
        await asyncio.sleep(seconds)
        used = self.snapshot() - before
        return {
            "seconds": seconds,
            "controller_requests": _by_verb(used.controllers),
            "kubelet_requests": _by_verb(used.kubelets),
            "reconciles": _per(used.reconciles, 1),
            "cpu_seconds": _cpu_used(cpu_before),
        }


def _per(counts: Counter[str], n: int) -> dict[str, float]:
    return {k: round(v / n, 2) for k, v in sorted(counts.items()) if v}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def run(
    *,
    steps: int,
    idle_pools: int,
    low: int,
    high: int,
    pause: float,
    quiet_seconds: float,
    writers: int,
    concurrency: int,
    unlabelled_bootstrap: bool = False,
) -> Obj:
    loop = asyncio.get_running_loop()
    wall = time.monotonic()
    async with ControlPlane() as cp, contextlib.AsyncExitStack() as stack:
        console.print(f"control plane up in {cp.start_seconds:.1f}s at {cp.server}")
        driver_api = await stack.enter_async_context(cp.api_client())
        controller_api = await stack.enter_async_context(cp.api_client())
        kubelet_api = await stack.enter_async_context(cp.api_client())
        driver = KubeClient(api=driver_api, metrics=RestMetrics(registry=CollectorRegistry()))
        registry = CollectorRegistry()
        kube = KubeClient(api=controller_api, metrics=RestMetrics(registry=registry))
        kubelet_registry = CollectorRegistry()
        kubelet_metrics = RestMetrics(registry=kubelet_registry)
        kubelet_kube = KubeClient(api=kubelet_api, metrics=kubelet_metrics)
        server_version = str((await driver.request(method="GET", path="/version"))["gitVersion"])
        # The workload cluster is this API server under another name (``localhost``, which
        # its certificate covers), so the controllers' requests to it count apart.
        workload_server = f"https://localhost:{cp.apiserver_port}"
        await _create_cluster(driver, cp, server=workload_server, labelled=not unlabelled_bootstrap)

        management_host = urlsplit(cp.server).netloc
        # Workload clusters' requests all count under one host label value (their addresses
        # are tenants' input, so never a label value).
        workload_host = WORKLOAD_HOST

        def snapshot() -> Requests:
            # The controllers' workload-cluster clients may count on the manager's registry
            # or on the default one, depending on how setup_machinepool_controller wires
            # them; the host tells them apart wherever they count.
            controllers = _requests(registry, REGISTRY)
            return Requests(
                management=controllers.get(management_host, Counter()),
                workload=controllers.get(workload_host, Counter()),
                kubelets=sum(_requests(kubelet_registry).values(), Counter()),
                reconciles=_reconciles(registry),
            )

        watcher = Watcher(loop=loop)
        pools = Informer(kube=driver, resource=MACHINE_POOL, namespace=NAMESPACE)
        pools.add_handler(watcher.handle)
        recorder = EventRecorder(kube=kube, instance="bench")
        manager = Manager(
            kube=kube,
            registry=registry,
            options=ManagerOptions(metrics_address="0", health_address="0"),
        )
        registrar = KubeNodeRegistrar(management=kubelet_kube, rest_metrics=kubelet_metrics)
        stack.push_async_callback(registrar.aclose)
        simulator = await stack.enter_async_context(Simulator(registrar=registrar, seed=1))
        setup_controllers(
            options=controller_options(
                manager=manager, namespace=NAMESPACE, recorder=recorder,
                concurrency=concurrency, reconcile_timeout=60,
            ),
            kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator)]),
            pools=True,
        )  # fmt: skip
        await stack.enter_async_context(recorder)
        shutdown = asyncio.Event()
        tasks = [
            asyncio.create_task(manager.run(shutdown=shutdown), name="manager"),
            asyncio.create_task(pools.run(), name="bench informer"),
        ]

        async def stop() -> None:
            shutdown.set()
            await asyncio.wait({tasks[0]}, timeout=15)  # the manager's graceful stop
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(stop)
        await asyncio.wait_for(manager.controllers_started.wait(), 30)
        await asyncio.wait_for(pools.wait_for_sync(), 30)
        bench = Bench(driver=driver, watcher=watcher, snapshot=snapshot, loop=loop)

        first = watcher.expect(MEASURED, low)
        await _create_pool(driver, MEASURED, low)
        await asyncio.wait_for(first, STEP_TIMEOUT)
        console.print(f"scenario A: {steps} scale steps {low}<->{high}, no other pools")
        scenario_a = await bench.scale_steps(steps=steps, low=low, high=high, pause=pause)
        console.print(f"  p50 {scenario_a['p50_ms']} ms, p99 {scenario_a['p99_ms']} ms")

        console.print(f"idle fleet: creating {idle_pools} pools of 1 replica")
        fleet = await bench.idle_fleet(pools=idle_pools, writers=writers) if idle_pools else None
        console.print(f"quiet window: {quiet_seconds:g}s")
        quiet = await bench.quiet(seconds=quiet_seconds)
        console.print(f"scenario B: {steps} scale steps with {idle_pools} other pools")
        scenario_b = await bench.scale_steps(steps=steps, low=low, high=high, pause=pause)
        console.print(f"  p50 {scenario_b['p50_ms']} ms, p99 {scenario_b['p99_ms']} ms")
        not_converged = [
            o["metadata"]["name"]
            for o in pools.store.values()
            if o["metadata"]["name"].startswith("idle-") and not converged(o, 1)
        ]
    return {
        "steps": steps,
        "replicas": [low, high],
        "idle_pools": idle_pools,
        "scenario_a": scenario_a,
        "idle_fleet": fleet,
        "quiet": quiet,
        "scenario_b": scenario_b,
        "idle_pools_not_converged_at_end": len(not_converged),
        "bootstrap_secret": "unlabelled" if unlabelled_bootstrap else "labelled",
        "wall_seconds": round(time.monotonic() - wall, 1),
        "kube_apiserver": server_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
    }


# ---------------------------------------------------------------------- output


def _rows(result: Obj) -> Iterator[tuple[str, str, str]]:
    a, b = result["scenario_a"], result["scenario_b"]
    for key, label in (
        ("p50_ms", "latency p50 (ms)"),
        ("p99_ms", "latency p99 (ms)"),
        ("max_ms", "latency max (ms)"),
        ("mean_ms", "latency mean (ms)"),
        ("scale_up_p50_ms", "scale up p50 (ms)"),
        ("scale_down_p50_ms", "scale down p50 (ms)"),
    ):
        yield label, str(a[key]), str(b[key])
    for verb in (*VERBS, "writes", "total"):
        yield (
            f"controller {verb} per step",
            str(a["controller_requests_per_step"][verb]),
            str(b["controller_requests_per_step"][verb]),
        )
    ra, rb = a["reconciles_per_step"], b["reconciles_per_step"]
    for key in sorted(set(ra) | set(rb)):
        yield f"reconciles {key} per step", str(ra.get(key, 0)), str(rb.get(key, 0))
    yield (
        "seconds for the steps, pauses included",
        str(a["seconds"]),
        str(b["seconds"]),
    )
    ca, cb = a["cpu_seconds"], b["cpu_seconds"]
    for key in ca:
        yield f"CPU s: {key}", str(ca[key]), str(cb.get(key, 0))


def _print(result: Obj) -> None:
    out = Console()
    steps = Table(
        title=f"MachinePool scale steps ({result['steps']} steps, "
        f"{result['replicas'][0]}<->{result['replicas'][1]} replicas, PATCH → converged)"
    )
    steps.add_column("figure")
    steps.add_column("A: 0 other pools", justify="right")
    steps.add_column(f"B: {result['idle_pools']} idle pools", justify="right")
    for row in _rows(result):
        steps.add_row(*row)
    out.print(steps)

    fleet = result["idle_fleet"]
    if fleet is not None:
        table = Table(
            title=f"creating {fleet['pools']} idle pools: API requests per converged pool"
        )
        table.add_column("client")
        for verb in (*VERBS, "writes", "total"):
            table.add_column(verb, justify="right")
        for key, label in (
            ("management_requests_per_pool", "controllers → management"),
            ("workload_requests_per_pool", "controllers → workload"),
            ("controller_requests_per_pool", "controllers, total"),
            ("kubelet_requests_per_pool", "simulated kubelets (not ours)"),
        ):
            table.add_row(label, *(str(fleet[key][v]) for v in (*VERBS, "writes", "total")))
        out.print(table)
        timing = Table(title="idle fleet timing and CPU")
        timing.add_column("figure")
        timing.add_column("value", justify="right")
        for key in ("create_seconds", "converge_seconds", "settle_seconds", "pools_per_second"):
            timing.add_row(key, str(fleet[key]))
        for name, seconds in fleet["cpu_seconds"].items():
            timing.add_row(f"CPU s: {name}", str(seconds))
        for key, count in fleet["reconciles_per_pool"].items():
            timing.add_row(f"reconciles {key} per pool", str(count))
        for verb, count in fleet["settle_controller_requests"].items():
            timing.add_row(f"of which in the settle: {verb} (total)", str(count))
        out.print(timing)

    quiet = result["quiet"]
    table = Table(title=f"quiet window: requests in {quiet['seconds']:g} s after convergence")
    table.add_column("client")
    for verb in (*VERBS, "writes", "total"):
        table.add_column(verb, justify="right")
    table.add_row("controllers", *(str(quiet["controller_requests"][v]) for v in VERBS),
                  str(quiet["controller_requests"]["writes"]),
                  str(quiet["controller_requests"]["total"]))  # fmt: skip
    out.print(table)
    reconciles = ", ".join(f"{k}: {v:g}" for k, v in quiet["reconciles"].items()) or "none"
    out.print(f"reconciles in the quiet window: {reconciles}")
    cpu = ", ".join(f"{k}: {v:g}" for k, v in quiet["cpu_seconds"].items())
    out.print(f"CPU seconds in the quiet window: {cpu}")
    out.print(
        f"wall {result['wall_seconds']} s; kube-apiserver {result['kube_apiserver']}; "
        f"Python {result['python']}; {result['machine']}; idle pools not converged at the "
        f"end: {result['idle_pools_not_converged_at_end']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.machinepool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--idle-pools", type=int, default=500)
    parser.add_argument("--low", type=int, default=3)
    parser.add_argument("--high", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between steps")
    parser.add_argument("--quiet-seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=10, help="concurrent pool creators")
    parser.add_argument("--concurrency", type=int, default=10, help="workers per controller")
    parser.add_argument(
        "--unlabelled-bootstrap-secret",
        action="store_true",
        help="leave the bootstrap data Secret without the cluster-name label (not cached)",
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.idle_pools < 0 or not 0 <= args.low < args.high:
        parser.error("need --steps >= 1, --idle-pools >= 0 and 0 <= --low < --high")
    configure_logging(level=args.log_level)
    try:
        result = asyncio.run(
            run(
                steps=args.steps,
                idle_pools=args.idle_pools,
                low=args.low,
                high=args.high,
                pause=args.pause,
                quiet_seconds=args.quiet_seconds,
                writers=args.writers,
                concurrency=args.concurrency,
                unlabelled_bootstrap=args.unlabelled_bootstrap_secret,
            )
        )
    except KeyboardInterrupt:  # everything was stopped on the way out
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
