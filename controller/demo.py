"""``make demo``: the product on a laptop, start to finish, on a real control plane.

Starts :class:`controller.testing.ControlPlane` (real etcd + kube-apiserver with our CRDs),
runs the controller (both reconcilers, with the in-memory cloud simulator inside), applies
``examples/inmemory-machinepool.yaml`` (a Cluster, a bootstrap Secret, an
InMemoryMachinePool and a 3-replica MachinePool, written exactly as for Cluster API), and
shows the pool converging in a live table; then scales it to 5, to 2, deletes it, prints a
summary and exits 0. The workload cluster is the same local API server, reached through the
Cluster's ``<name>-kubeconfig`` Secret, so the Nodes the simulated instances register are
real Node objects.

With ``--keep`` the control plane and the controller keep running after the pool is created
and scaled, and the ``KUBECONFIG`` line for kubectl is printed; Ctrl-C ends it. With
``--short`` (what CI runs) the simulated instances boot and turn Ready at once instead of
after the example's ~1 s delays; every step is still shown.

The controller's own log is turned down to errors so the live table stays readable (a
step that does not converge says so itself); an error still shows, above the table.

Failure: a step that does not converge within its time limit ends the demo with exit 1 and
says which step; the control plane is stopped either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.live import Live
from rich.table import Table

from controller.api.kinds import ALL_KINDS, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options, setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.events import EventRecorder
from controller.runtime.kube import NODES, SECRETS, ApiError, KubeClient, ResourceLike, RestMetrics
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.signals import Shutdown, shutdown_on_signals
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "inmemory-machinepool.yaml"
KUBECONFIG_OUT = Path("demo.kubeconfig")
NAMESPACE = "default"
STEP_TIMEOUT = 120.0
#: The demo applies manifests as a person would, not as the controller.
DEMO_MANAGER = "machinepool-demo"


class DemoFailed(Exception):
    """A step did not converge in time."""


def _resources() -> dict[tuple[str, str], ResourceLike]:
    found: dict[tuple[str, str], ResourceLike] = {(k.api_version, k.kind): k for k in ALL_KINDS}
    found[(SECRETS.api_version, SECRETS.kind)] = SECRETS
    return found


#: ``--short``: instances boot and their Nodes turn Ready without delay.
SHORT_TEMPLATE = {"bootDelaySeconds": 0, "readyDelaySeconds": 0}


async def apply_manifest(
    *, kube: KubeClient, path: Path, namespace: str, short: bool = False
) -> list[dict[str, Any]]:
    """Server-side apply every document of ``path`` into ``namespace``; returns the results.

    ``short`` sets the InMemoryMachinePools' boot and ready delays to zero.
    """
    resources = _resources()
    applied = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if short and (doc["apiVersion"], doc["kind"]) == (
            IN_MEMORY_MACHINE_POOL.api_version, IN_MEMORY_MACHINE_POOL.kind,
        ):  # fmt: skip
            doc["spec"].setdefault("template", {}).update(SHORT_TEMPLATE)
        resource = resources[(doc["apiVersion"], doc["kind"])]
        name = doc["metadata"]["name"]
        doc["metadata"].setdefault("namespace", namespace)
        applied.append(
            await kube.apply(
                resource, namespace=namespace, name=name, body=doc, field_manager=DEMO_MANAGER
            )
        )
    return applied


class Demo:
    def __init__(self, *, kube: KubeClient, console: Console, pool: str) -> None:
        self.kube = kube
        self.console = console
        self.pool = pool
        self.timeline: list[tuple[str, float]] = []

    async def snapshot(self) -> dict[str, Any]:
        nodes = (await self.kube.list(NODES))["items"]
        try:
            pool = await self.kube.get(MACHINE_POOL, namespace=NAMESPACE, name=self.pool)
        except ApiError as exc:
            if exc.not_found:
                return {"gone": True, "nodes": len(nodes)}
            raise
        ready_nodes = sum(
            1
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        )
        status = pool.get("status", {})
        return {
            "gone": False,
            "phase": status.get("phase", "-"),
            "desired": pool["spec"].get("replicas"),
            "replicas": status.get("replicas", 0),
            "ready": status.get("readyReplicas", 0),
            "available": status.get("availableReplicas", 0),
            "providerIDs": len(pool["spec"].get("providerIDList", [])),
            "nodes": len(nodes),
            "readyNodes": ready_nodes,
        }

    def table(self, title: str, snap: dict[str, Any], elapsed: float) -> Table:
        table = Table(title=f"{title}  ({elapsed:4.1f}s)")
        for column in ("phase", "desired", "replicas", "ready", "available", "providerIDs",
                       "Nodes (Ready)"):  # fmt: skip
            table.add_column(column, justify="right")
        if snap.get("gone"):
            table.add_row("deleted", "-", "-", "-", "-", "-", str(snap["nodes"]))
        else:
            table.add_row(
                str(snap["phase"]), str(snap["desired"]), str(snap["replicas"]),
                str(snap["ready"]), str(snap["available"]), str(snap["providerIDs"]),
                f"{snap['nodes']} ({snap['readyNodes']})",
            )  # fmt: skip
        return table

    async def step(self, title: str, *, want: int | None) -> None:
        """Show the pool live until it has ``want`` ready replicas (None: until it and its
        Nodes are gone)."""
        started = time.monotonic()
        try:
            with Live(console=self.console, refresh_per_second=8, transient=False) as live:
                while True:
                    snap = await self.snapshot()
                    elapsed = time.monotonic() - started
                    live.update(self.table(title, snap, elapsed))
                    done = (
                        snap["gone"] and snap["nodes"] == 0
                        if want is None
                        else (
                            not snap["gone"]
                            and snap["phase"] == "Running"
                            and snap["ready"] == want
                            and snap["providerIDs"] == want
                            and snap["readyNodes"] == want
                        )
                    )
                    if done:
                        self.timeline.append((title, elapsed))
                        return
                    if elapsed > STEP_TIMEOUT:
                        raise DemoFailed(f"{title!r} did not converge within {STEP_TIMEOUT:.0f}s")
                    await asyncio.sleep(0.25)
        finally:
            self.console.line()  # the next step's table starts on a line of its own

    async def scale(self, replicas: int) -> None:
        await self.kube.merge_patch(
            MACHINE_POOL, namespace=NAMESPACE, name=self.pool, subresource="scale",
            patch={"spec": {"replicas": replicas}},
        )  # fmt: skip


async def run_demo(*, keep: bool, short: bool = False) -> int:
    console = Console()
    configure_logging(fmt="console", level="error")
    if not EXAMPLE.is_file():
        console.print(f"[red]the example manifest {EXAMPLE} is missing; run the demo from a clone")
        return 1
    async with shutdown_on_signals() as shutdown, contextlib.AsyncExitStack() as stack:
        with console.status("starting a local control plane (etcd + kube-apiserver) ..."):
            cp = await stack.enter_async_context(ControlPlane())
        console.print(f"[green]control plane ready[/] in {cp.start_seconds:.1f}s at {cp.server}")
        api = await stack.enter_async_context(cp.api_client())
        registry = CollectorRegistry()
        kube = KubeClient(api=api, metrics=RestMetrics(registry=registry))
        try:
            return await _run(cp=cp, kube=kube, registry=registry, console=console,
                              shutdown=shutdown, stack=stack, keep=keep, short=short)  # fmt: skip
        except DemoFailed as exc:
            console.print(f"[red]demo failed:[/] {exc}")
            return 1


async def _run(
    *,
    cp: ControlPlane,
    kube: KubeClient,
    registry: CollectorRegistry,
    console: Console,
    shutdown: Shutdown,
    stack: contextlib.AsyncExitStack,
    keep: bool,
    short: bool,
) -> int:
    # The Cluster's kubeconfig Secret points at this same API server: it is the workload
    # cluster too. The example manifest then adds its own Cluster object by the same name.
    await create_workload_cluster(kube=kube, control_plane=cp, namespace=NAMESPACE, name="demo")
    options = ManagerOptions(metrics_address="0", health_address="0", graceful_shutdown_timeout=5)
    manager = Manager(kube=kube, registry=registry, options=options)
    recorder = await stack.enter_async_context(EventRecorder(kube=kube))
    registrar = await stack.enter_async_context(
        contextlib.aclosing(KubeNodeRegistrar(management=kube))
    )
    simulator = await stack.enter_async_context(Simulator(registrar=registrar))
    setup_controllers(
        options=controller_options(
            manager=manager, namespace=None, recorder=recorder, concurrency=10,
            reconcile_timeout=60,
        ),
        kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator,
                                      busy_poll=0.5)]),
        pools=True,
    )  # fmt: skip
    stopping = asyncio.Event()
    running = asyncio.create_task(manager.run(shutdown=stopping))
    try:
        await manager.controllers_started.wait()
        console.print(
            "[green]controller running[/] (MachinePool, Machine, InMemoryMachinePool reconcilers)"
        )
        applied = await apply_manifest(kube=kube, path=EXAMPLE, namespace=NAMESPACE, short=short)
        console.print(
            "applied " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in applied)
        )
        pool = next(o for o in applied if o["kind"] == "MachinePool")["metadata"]["name"]
        console.print(
            f"MachinePool {pool}: 3 replicas, then scale to 5, to 2, then delete"
            + (" (--short: no boot/ready delays)" if short else "")
        )
        demo = Demo(kube=kube, console=console, pool=pool)
        await demo.step("create 3 replicas", want=3)
        await demo.scale(5)
        await demo.step("scale to 5", want=5)
        await demo.scale(2)
        await demo.step("scale to 2", want=2)
        if keep:
            shutil.copyfile(cp.kubeconfig_path, KUBECONFIG_OUT)
            console.print(
                f"\nexport KUBECONFIG={KUBECONFIG_OUT.resolve()}\n"
                "kubectl get mp,machines,inmemorymachinepools,nodes\n"
                "Press Ctrl-C to stop."
            )
            await shutdown.wait()
            KUBECONFIG_OUT.unlink(missing_ok=True)
            return 0
        await kube.delete(MACHINE_POOL, namespace=NAMESPACE, name=pool)
        await demo.step("delete the pool", want=None)
        summary = Table(title="summary")
        summary.add_column("step")
        summary.add_column("converged in", justify="right")
        for title, seconds in demo.timeline:
            summary.add_row(title, f"{seconds:.1f}s")
        summary.add_section()
        summary.add_row("total", f"{sum(s for _, s in demo.timeline):.1f}s")
        console.print(summary)
        console.print("[green]demo finished[/]")
        return 0
    finally:
        stopping.set()
        await asyncio.wait_for(running, 30)
