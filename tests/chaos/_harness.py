"""What the chaos scenarios share: the product in-process or as processes, the fleet, figures.

:class:`InProcess` runs the whole product (``controller.app.setup_controllers``) on one
``Manager`` with the in-process ``Simulator``, as ``tests/machines`` does; its controllers'
API requests are counted on a private registry. :class:`Processes` runs ``machinepool-
controller simulator`` and ``machinepool-controller run`` as real processes (killed with
SIGKILL where a scenario says so). Both expose ``instances(group)`` for
:func:`controller.testing.consistency.fleet_problems`.

:func:`record` appends one scenario's figures (recovery seconds, requests during recovery,
lost/duplicated objects) as a JSON line to ``$CHAOS_FIGURES`` when it is set; the figures
table in ``tests/chaos/README.md`` is made from that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE_POOL
from controller.app import controller_options, setup_controllers
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.kube import NODES, SECRETS, ApiError, KubeClient, RestMetrics
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.consistency import fleet_problems
from controller.testing.scenario import create_inmemory_pool
from controller.testing.waiting import until

TEMPLATE = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 0}
WRITES = ("POST", "PATCH", "PUT", "DELETE")

#: Short form (CI, the default) or long form (``CHAOS_LONG=1``).
LONG = bool(os.environ.get("CHAOS_LONG"))


def record(scenario: str, **figures: Any) -> None:
    """Append ``scenario``'s figures to ``$CHAOS_FIGURES`` (and print them for ``-s``)."""
    line = json.dumps({"scenario": scenario, **figures})
    print(line)
    path = os.environ.get("CHAOS_FIGURES")
    if path:
        with Path(path).open("a") as out:
            out.write(line + "\n")


def requests_by_verb(registry: CollectorRegistry) -> dict[str, int]:
    """``rest_client_requests_total`` of ``registry`` by method, plus ``writes``."""
    out: dict[str, int] = {}
    for family in registry.collect():
        if family.name == "rest_client_requests":
            for sample in family.samples:
                if sample.name == "rest_client_requests_total":
                    method = sample.labels["method"]
                    out[method] = out.get(method, 0) + int(sample.value)
    out["writes"] = sum(out.get(v, 0) for v in WRITES)
    out["total"] = sum(v for k, v in out.items() if k not in ("writes", "total"))
    return out


def minus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) - b.get(k, 0) for k in a if a.get(k, 0) - b.get(k, 0)}


def metric_total(registry: CollectorRegistry, name: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


async def workload_cluster(
    *, kube: KubeClient, control_plane: ControlPlane, namespace: str, server: str | None = None
) -> None:
    """The Cluster ``c1``, its kubeconfig Secret (``server`` overrides the address) and the
    bootstrap Secret ``boot`` (labelled, so it is cached)."""
    kubeconfig = control_plane.kubeconfig()
    if server is not None:
        for entry in kubeconfig["clusters"]:
            entry["cluster"]["server"] = server
    labels = {"cluster.x-k8s.io/cluster-name": "c1"}
    await kube.create(CLUSTER, namespace=namespace, body={"metadata": {"name": "c1"}, "spec": {}})
    await kube.create(
        SECRETS, namespace=namespace,
        body={"metadata": {"name": "c1-kubeconfig", "labels": labels},
              "type": "cluster.x-k8s.io/secret",
              "stringData": {"value": yaml.safe_dump(kubeconfig)}},
    )  # fmt: skip
    await kube.create(
        SECRETS, namespace=namespace,
        body={"metadata": {"name": "boot", "labels": labels}, "stringData": {"value": "#!"}},
    )  # fmt: skip


async def create_pools(
    *, kube: KubeClient, namespace: str, pools: Mapping[str, int], **infra_spec: Any
) -> None:
    for name, replicas in pools.items():
        await create_inmemory_pool(
            kube=kube, namespace=namespace, name=name, replicas=replicas, template=TEMPLATE,
            **infra_spec,
        )  # fmt: skip


async def scale(*, kube: KubeClient, namespace: str, pools: Mapping[str, int]) -> None:
    for name, replicas in pools.items():
        await kube.merge_patch(
            MACHINE_POOL, namespace=namespace, name=name, subresource="scale",
            patch={"spec": {"replicas": replicas}},
        )  # fmt: skip


async def delete_nodes(*, kube: KubeClient, namespace: str) -> None:
    """The namespace's Nodes (cluster-scoped, so the namespace's deletion leaves them)."""
    with contextlib.suppress(ApiError, aiohttp.ClientError, OSError):
        for node in (await kube.list(NODES))["items"]:
            if f"/{namespace}-" in str((node.get("spec") or {}).get("providerID", "")):
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])


@dataclass
class Fleet:
    """A namespace's pools and how to check them."""

    kube: KubeClient
    namespace: str
    pools: dict[str, int]
    instances: Any  # Callable[[str], Awaitable[list[str]]]
    last: list[str] = field(default_factory=list)

    async def problems(self) -> list[str]:
        self.last = await fleet_problems(
            kube=self.kube, namespace=self.namespace, pools=self.pools, instances=self.instances
        )
        return self.last

    async def converge(self, *, timeout: float, what: str = "the fleet consistent") -> float:
        """Seconds until consistent; an AssertionError naming what is wrong after ``timeout``."""
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def ok() -> bool:
            try:
                return not await self.problems()
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                self.last = [f"check failed: {exc!r}"]
                return False

        try:
            await until(ok, timeout=timeout, interval=0.2, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: " + "; ".join(self.last[:20])) from None
        return loop.time() - began


# ---------------------------------------------------------------------- in-process


class ListCountingKube(KubeClient):
    """A KubeClient that counts its LIST calls (an informer's list, first or after a 410)."""

    lists = 0

    async def list(self, *args: Any, **kwargs: Any) -> Obj:
        self.lists += 1
        return await super().list(*args, **kwargs)


@dataclass
class InProcess:
    """The whole product on one Manager with the in-process simulator."""

    manager: Manager
    simulator: Simulator
    registry: CollectorRegistry
    kube: ListCountingKube
    task: asyncio.Task[None]

    def relists(self) -> int:
        """LIST requests of the management cluster's informers so far."""
        return self.kube.lists

    def requests(self) -> dict[str, int]:
        return requests_by_verb(self.registry)

    async def instances(self, group: str) -> list[str]:
        view = self.simulator.inspect(name=group)
        if view is None:
            return []
        return [i.provider_id for i in view.instances if i.phase in ("pending", "running")]


@contextlib.asynccontextmanager
async def in_process(
    *,
    control_plane: ControlPlane,
    namespace: str,
    concurrency: int = 4,
    reconcile_timeout: float = 30,
    kubelet_kube: KubeClient | None = None,
) -> AsyncIterator[InProcess]:
    """Run the product until the block ends; ``kubelet_kube`` is the simulated kubelets'
    management client (default: their own on ``control_plane``)."""
    registry = CollectorRegistry()
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(control_plane.api_client())
        kube = ListCountingKube(api=api, metrics=RestMetrics(registry=registry))
        if kubelet_kube is None:
            kubelet_api = await stack.enter_async_context(control_plane.api_client())
            kubelet_kube = KubeClient(
                api=kubelet_api, metrics=RestMetrics(registry=CollectorRegistry())
            )
        registrar = KubeNodeRegistrar(
            management=kubelet_kube, rest_metrics=RestMetrics(registry=CollectorRegistry())
        )
        stack.push_async_callback(registrar.aclose)
        simulator = await stack.enter_async_context(Simulator(registrar=registrar, seed=11))
        manager = Manager(
            kube=kube,
            registry=registry,
            options=ManagerOptions(
                metrics_address="0", health_address="0", graceful_shutdown_timeout=5
            ),
        )
        setup_controllers(
            options=controller_options(
                manager=manager, namespace=namespace, recorder=None, concurrency=concurrency,
                reconcile_timeout=reconcile_timeout,
            ),
            kinds=KindRegistry([CloudKind(adapter=InMemoryPoolAdapter(), provider=simulator,
                                          busy_poll=0.5, steady_poll=3)]),
            pools=True,
        )  # fmt: skip
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown), name="manager")

        async def stop() -> None:
            shutdown.set()
            done, _ = await asyncio.wait({task}, timeout=15)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(stop)
        await until(manager.controllers_started.is_set, what="controllers started", timeout=60)
        yield InProcess(
            manager=manager, simulator=simulator, registry=registry, kube=kube, task=task
        )


# ---------------------------------------------------------------------- processes


CLI = [sys.executable, "-m", "controller"]


@dataclass
class Spawned:
    """A ``machinepool-controller`` subprocess in its own session, logging to a file."""

    args: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *CLI, *self.args, stdout=out, stderr=out, start_new_session=True
            )

    async def kill(self) -> None:
        """SIGKILL the process group and wait for it."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@contextlib.asynccontextmanager
async def spawned(*, args: list[str], log: Path) -> AsyncIterator[Spawned]:
    process = Spawned(args=args, log=log)
    await process.start()
    try:
        yield process
    finally:
        await process.kill()


async def simulator_instances(port: int, group: str) -> list[str]:
    """Live instances of ``group`` through the simulator's HTTP API."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/v1/groups/{group}") as resp,
    ):
        if resp.status == 404:
            return []
        resp.raise_for_status()
        data: dict[str, Any] = await resp.json()
    return [str(i["providerId"]) for i in data["instances"] if i["state"] in ("pending", "running")]


async def simulator_group(port: int, group: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/v1/groups/{group}") as resp,
    ):
        if resp.status == 404:
            return {}
        data: dict[str, Any] = await resp.json()
        return data


async def scrape(port: int) -> dict[str, float]:
    """A process's ``/metrics``, as ``{sample line name{labels}: value}``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def scraped_requests(samples: Mapping[str, float]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in samples.items():
        if key.startswith("rest_client_requests_total{"):
            method = key.split('method="', 1)[1].split('"', 1)[0]
            out[method] = out.get(method, 0) + int(value)
    out["writes"] = sum(out.get(v, 0) for v in WRITES)
    out["total"] = sum(v for k, v in out.items() if k not in ("writes", "total"))
    return out
