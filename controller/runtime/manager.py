"""The manager: shared informers, controllers, leader election, probes, and shutdown.

Lifecycle of :meth:`Manager.run`:

1. The probe/metrics server starts (``/metrics`` over HTTPS with TokenReview and
   SubjectAccessReview when ``metrics_secure``; a certificate from ``metrics_cert_dir`` is
   reloaded when its files change) (``/healthz`` answers at once; ``/readyz`` only once
   every informer has synced, for a standby replica too, as in controller-runtime).
2. Every informer starts, leader or not, so a standby has warm caches when it takes over;
   so does the event loop lag monitor (:mod:`controller.runtime.looplag`).
3. With leader election, the controllers start only once this replica holds the Lease; losing
   the Lease cancels them at once and :meth:`run` raises
   :class:`~controller.runtime.leaderelection.LeadershipLost` (the process must exit
   non-zero). Without it, they start once the caches have synced.
4. On shutdown (the ``shutdown`` event), controllers stop taking work and in-flight
   reconciles get ``graceful_shutdown_timeout`` seconds to finish; then informers stop, the
   Lease is released when configured, and :meth:`run` returns.

Informers are shared: asking twice for the same resource, namespaces and label selector gives
the same informer (one informer covers several namespaces; see :mod:`controller.runtime.informer`).

The manager owns the process's work-priority state (:attr:`Manager.urgency`, shared by its
controllers) and installs the policy's write hook (:func:`~controller.runtime.urgency.note_write`)
on the client it is given, unless that client already has one, so the controllers' writes
carry urgency along the chain (see :mod:`controller.runtime.urgency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from controller.runtime.controller import Controller
from controller.runtime.informer import Informer, Namespaces, namespace_scope
from controller.runtime.kube import KubeClient, ResourceLike, resource_name
from controller.runtime.leaderelection import LeaderElector
from controller.runtime.looplag import monitor_loop_lag
from controller.runtime.metrics import REGISTRY
from controller.runtime.metricsauth import MetricsAuth
from controller.runtime.server import ProbeServer
from controller.runtime.servingcert import ServingCertificate, self_signed
from controller.runtime.urgency import Urgency, note_write

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LeaderElectionOptions:
    namespace: str
    name: str = "machinepool-controller-leader-election"
    identity: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = False


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    sync_period: float | None = 10 * 3600.0
    graceful_shutdown_timeout: float = 30.0
    metrics_address: str = ":8080"
    health_address: str = ":8081"
    #: HTTPS and TokenReview/SubjectAccessReview on ``/metrics`` (``run`` defaults it on).
    metrics_secure: bool = False
    #: ``tls.crt``/``tls.key`` to serve; None: a self-signed certificate made at start.
    metrics_cert_dir: Path | None = None
    #: How often a ``metrics_cert_dir`` certificate is checked for rotation.
    metrics_cert_reload_period: float = 10.0
    leader_election: LeaderElectionOptions | None = None
    informer_inactivity_timeout: float = 70.0


class Manager:
    """Owns informers and controllers for one process; see the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        options: ManagerOptions | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.kube = kube
        self.options = options or ManagerOptions()
        self.registry = registry
        self._informers: dict[
            tuple[ResourceLike, tuple[str | None, ...], str | None], Informer
        ] = {}
        self._controllers: list[Controller] = []
        #: Shared by the controllers: a person's change and its chain go first (see urgency).
        self.urgency = Urgency()
        if kube.on_write is None:  # writes made by urgent reconciles carry the urgency on
            kube.on_write = note_write
        self._runnables: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        tls: ssl.SSLContext | None = None
        self.metrics_auth: MetricsAuth | None = None
        if self.options.metrics_secure:
            self.metrics_auth = MetricsAuth(kube=kube)
            if self.options.metrics_cert_dir is not None:
                cert = ServingCertificate(directory=self.options.metrics_cert_dir)
                tls = cert.context
                self.add_runnable(
                    name="metrics certificate",
                    run=lambda: _reload_periodically(
                        cert, period=self.options.metrics_cert_reload_period
                    ),
                )
            else:
                tls = self_signed()
        self.probes = ProbeServer(
            metrics_address=self.options.metrics_address,
            health_address=self.options.health_address,
            registry=registry,
            metrics_tls=tls,
            metrics_auth=self.metrics_auth,
        )
        self.elector: LeaderElector | None = None
        le = self.options.leader_election
        if le is not None:
            self.elector = LeaderElector(
                kube=kube,
                namespace=le.namespace,
                name=le.name,
                identity=le.identity,
                lease_duration=le.lease_duration,
                renew_deadline=le.renew_deadline,
                retry_period=le.retry_period,
                release_on_cancel=le.release_on_cancel,
                registry=registry,
            )
        #: Set once the controllers have started (we lead, or no election).
        self.controllers_started = asyncio.Event()
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------- assembly

    def informer(
        self,
        resource: ResourceLike,
        *,
        namespace: Namespaces = None,
        label_selector: str | None = None,
    ) -> Informer:
        """The shared informer for ``resource`` (in ``namespace``: one name, a tuple of names,
        or ``None`` for all; with ``label_selector``)."""
        scope = namespace_scope(namespace if resource.namespaced else None)
        key = (resource, scope, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                kube=self.kube,
                resource=resource,
                namespace=namespace,
                label_selector=label_selector,
                resync_period=self.options.sync_period,
                inactivity_timeout=self.options.informer_inactivity_timeout,
            )
            self._informers[key] = informer
        return informer

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)

    def add_runnable(self, *, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` beside the informers (leader or not) until the manager stops."""
        self._runnables.append((name, run))

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers)

    def caches_synced(self) -> str | None:
        """Readiness check: None once every informer has synced."""
        waiting = [resource_name(k[0]) for k, i in self._informers.items() if not i.synced]
        return f"informers not synced: {', '.join(sorted(waiting))}" if waiting else None

    # ------------------------------------------------------------- running

    async def run(self, *, shutdown: asyncio.Event) -> None:
        """Run until ``shutdown`` is set (or leadership is lost); see the module docstring."""
        async with self.probes as probes:
            probes.healthz.add(name="ping", check=lambda: None)
            probes.readyz.add(name="informers", check=self.caches_synced)
            if self.elector is not None:
                probes.healthz.add(name="leaderElection", check=self.elector.check)
            informer_tasks = [
                asyncio.create_task(i.run(), name=f"informer {resource_name(k[0])}")
                for k, i in self._informers.items()
            ] + [asyncio.create_task(run(), name=name) for name, run in self._runnables]
            informer_tasks.append(
                asyncio.create_task(monitor_loop_lag(registry=self.registry), name="loop lag")
            )
            try:
                await self._run_until_shutdown(shutdown=shutdown)
            finally:
                for task in informer_tasks:
                    task.cancel()
                await asyncio.gather(*informer_tasks, return_exceptions=True)

    async def _run_until_shutdown(self, *, shutdown: asyncio.Event) -> None:
        if self.elector is not None:
            main = asyncio.create_task(
                self.elector.run(on_started_leading=self._lead), name="leader election"
            )
        else:
            main = asyncio.create_task(self._lead(), name="controllers")
        stop = asyncio.create_task(shutdown.wait(), name="shutdown signal")
        try:
            await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()  # LeadershipLost or a bug: propagate
                return
            _log.info("shutting down", grace=self.options.graceful_shutdown_timeout)
            self._stopping.set()
            if not self.controllers_started.is_set():
                return  # nothing in flight: still waiting for the Lease or for caches
            await self._stop_controllers()
            try:
                async with asyncio.timeout(self.options.graceful_shutdown_timeout):
                    await main
            except TimeoutError:
                _log.warning("controllers did not stop within the grace period")
        finally:
            stop.cancel()
            if not main.done():
                main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await main

    async def _lead(self) -> None:
        """Start the controllers once caches are synced; return once shutdown has stopped them.

        Leading lasts until shutdown, even with no controllers or when they all return, so a
        leader never gives up its Lease (and a standby never takes over) while this process
        is still running normally.
        """
        await asyncio.gather(*(i.wait_for_sync() for i in self._informers.values()))
        _log.info("caches synced, starting controllers", controllers=len(self._controllers))
        self.controllers_started.set()
        await asyncio.gather(*(c.run() for c in self._controllers))
        await self._stopping.wait()

    async def _stop_controllers(self) -> None:
        grace = self.options.graceful_shutdown_timeout
        await asyncio.gather(*(c.stop(grace=grace) for c in self._controllers))


async def _reload_periodically(cert: ServingCertificate, *, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        cert.reload()
