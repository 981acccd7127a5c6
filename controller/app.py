"""The composition root of ``machinepool-controller run``.

Builds the management-cluster client, checks the API server answers, assembles the manager
with its controllers, and runs it until SIGTERM/SIGINT (handled in
:mod:`controller.runtime.signals`, the one place for signals).

It owns the pieces the controllers share, each made once: the registry of infra kinds
(:class:`~controller.providers.registry.KindRegistry`: each kind's adapter and cloud, handed
to the core and to the infrastructure controllers alike), the workload cluster connections
(:class:`~controller.workload.clusters.WorkloadClusters`, lent to the MachinePool, Machine and
MachineHealthCheck controllers), and the shared informers with their named indexes
(:mod:`controller.shared`); each ``setup_*`` gets one
:class:`~controller.shared.ControllerOptions`.

Feature gate ``MachinePool`` off (``--feature-gates=MachinePool=false`` or
``EXP_MACHINE_POOL=false``): neither half is set up, so no MachinePool or infrastructure pool
is read, changed or deleted; a warning at start and the ``featureGates`` entry of
``/readyz?verbose`` say so. ``--watch-filter`` becomes a label selector on the informers of
the objects each half owns (see the setup modules).

Exit status: 0 after a clean shutdown; 1 when leadership was lost (the pod restarts and
campaigns again, as controller-runtime does); start-up failures raise :class:`StartupError`
with one line naming the cause (no kubeconfig, API server unreachable, a port in use).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from kubernetes_asyncio import client, config

from controller.healthcheck.setup import setup_healthcheck_controller
from controller.infrastructure.reconciler import DEFAULT_MAX_REPLICAS
from controller.infrastructure.setup import setup_infrastructure_controller
from controller.machinepool.setup import setup_machinepool_controller
from controller.machines.setup import setup_machine_controller
from controller.options import RunOptions, in_cluster_namespace
from controller.providers.aws.adapter import AwsPoolAdapter
from controller.providers.aws.provider import AwsProvider
from controller.providers.base import InstanceGroupProvider
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.client import InMemoryProvider
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.registry import CloudKind, KindRegistry
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Namespaces
from controller.runtime.kube import ApiError, KubeClient, rest_metrics_for
from controller.runtime.leaderelection import LeadershipLost
from controller.runtime.manager import LeaderElectionOptions, Manager, ManagerOptions
from controller.runtime.server import BindError
from controller.runtime.servingcert import CertificateError
from controller.runtime.signals import shutdown_on_signals
from controller.shared import ControllerOptions, SharedInformers
from controller.workload.clusters import WorkloadClusters

_log = structlog.get_logger(__name__)


class StartupError(RuntimeError):
    """The controller cannot start; the message is one line naming the cause."""


async def load_configuration(*, kubeconfig: Path | None) -> client.Configuration:
    """Client configuration from ``kubeconfig``, ``$KUBECONFIG``, or the pod's service account."""
    cfg = client.Configuration()
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    try:
        if path is not None:
            await config.load_kube_config(config_file=str(path), client_configuration=cfg)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            raise StartupError(
                "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run inside a cluster"
            )
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"cannot load kubeconfig {path or '(in-cluster)'}: {exc}") from exc
    return cfg


async def preflight(*, kube: KubeClient) -> str:
    """GET /version; returns the server's gitVersion or raises :class:`StartupError`."""
    try:
        version = await kube.request(method="GET", path="/version")
    except ApiError as exc:
        if exc.status in (401, 403):
            raise StartupError(
                f"the API server at {kube.api.configuration.host} refused our credentials "
                f"({exc.status} {exc.reason})"
            ) from exc
        raise StartupError(
            f"the API server at {kube.api.configuration.host} answered {exc.status}: {exc.message}"
        ) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise StartupError(
            f"cannot reach the Kubernetes API server at {kube.api.configuration.host}: "
            f"{exc.__class__.__name__}: {exc}"
        ) from exc
    return str(version.get("gitVersion", "unknown"))


def manager_options(options: RunOptions) -> ManagerOptions:
    election = None
    if options.leader_elect:
        namespace = options.leader_election_namespace or in_cluster_namespace()
        if not namespace:
            raise StartupError(
                "--leader-elect needs --leader-election-namespace when not running in a pod"
            )
        election = LeaderElectionOptions(
            namespace=namespace,
            name=options.leader_election_id,
            lease_duration=options.lease_duration,
            renew_deadline=options.renew_deadline,
            retry_period=options.retry_period,
            release_on_cancel=options.leader_elect_release_on_cancel,
        )
    return ManagerOptions(
        sync_period=options.sync_period,
        graceful_shutdown_timeout=options.graceful_shutdown_timeout,
        metrics_address=options.metrics_bind_address,
        health_address=options.health_probe_bind_address,
        metrics_secure=options.metrics_secure,
        metrics_cert_dir=options.metrics_cert_path,
        leader_election=election,
    )


async def run_controller(options: RunOptions) -> int:
    """Run the controller until a signal; see the module docstring for the exit status."""
    cfg = await load_configuration(kubeconfig=options.kubeconfig)
    async with shutdown_on_signals() as shutdown, client.ApiClient(configuration=cfg) as api:
        kube = KubeClient(api=api)
        version = await preflight(kube=kube)
        try:
            manager = Manager(kube=kube, options=manager_options(options))
        except CertificateError as exc:
            raise StartupError(str(exc)) from exc
        recorder = EventRecorder(kube=kube)
        gates = options.feature_gates
        manager.probes.readyz.add_note(name="featureGates", note=gate_note(options))
        if not options.machine_pool_enabled:
            _log.warning(
                "the MachinePool feature gate is disabled: MachinePools and their "
                "infrastructure pools are not reconciled, and nothing is deleted",
                feature_gates=gates.describe(),
            )
        _log.info(
            "starting",
            server=cfg.host,
            server_version=version,
            namespaces=",".join(options.namespaces) or "(all)",
            leader_election=options.leader_elect,
            feature_gates=gates.describe(),
            watch_filter=options.label_selector() or "(none)",
        )
        for message in options.controller_deprecations():
            _log.warning(message)
        async with contextlib.AsyncExitStack() as stack:
            shared = controller_options(
                manager=manager,
                namespace=options.namespaces,
                recorder=recorder,
                concurrency=options.concurrency,
                reconcile_timeout=options.reconcile_timeout,
                watch_filter=options.label_selector(),
            )
            enabled = options.machine_pool_enabled
            kinds = KindRegistry()
            inmemory: InstanceGroupProvider | None = None
            if enabled and options.runs("inmemory"):
                inmemory = await stack.enter_async_context(inmemory_provider(options, kube=kube))
            kinds.add(CloudKind(adapter=InMemoryPoolAdapter(), provider=inmemory))
            if enabled and options.runs("aws"):
                assert options.aws_region is not None  # checked with the options
                aws = await stack.enter_async_context(
                    AwsProvider(
                        region=options.aws_region,
                        endpoint_url=options.aws_endpoint_url,
                        registry=manager.registry,
                        poll_interval=options.aws_poll_interval,
                    )
                )
                # The provider's poll interval is also its describe cache's lifetime, so a
                # converged pool is looked at once per interval, served by batched calls.
                adapter = AwsPoolAdapter(secrets=shared.informers.secrets, templates=aws.templates)
                kinds.add(
                    CloudKind(adapter=adapter, provider=aws, steady_poll=options.aws_poll_interval)
                )
            if enabled:
                setup_controllers(
                    options=shared,
                    kinds=kinds,
                    pools=options.runs("machinepool"),
                    allow_insecure_kubeconfigs=options.allow_insecure_workload_kubeconfigs,
                    max_replicas=options.max_replicas_per_pool,
                )
            await stack.enter_async_context(recorder)
            return await _run_manager(manager, shutdown=shutdown.requested)


def controller_options(
    *,
    manager: Manager,
    namespace: Namespaces,
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    watch_filter: str | None = None,
) -> ControllerOptions:
    """The one options object every controller of ``manager`` gets, with the shared
    informers (made on first use). ``watch_filter`` is ``--watch-filter``'s label selector."""
    return ControllerOptions(
        manager=manager,
        namespace=namespace,
        recorder=recorder,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        watch_filter=watch_filter,
        informers=SharedInformers(manager=manager, namespace=namespace, watch_filter=watch_filter),
    )


def workload_clusters(
    *, options: ControllerOptions, allow_insecure_kubeconfigs: bool = False
) -> WorkloadClusters:
    """The one set of workload cluster connections of the process, fed by the shared Secret
    and Cluster informers and run by the manager; the MachinePool, Machine and
    MachineHealthCheck controllers listen to its Node events."""
    workloads = WorkloadClusters(
        rest_metrics=rest_metrics_for(options.registry),
        allow_insecure=allow_insecure_kubeconfigs,
        # Writes to workload clusters count for the work priority as the manager's own do.
        on_write=options.manager.kube.on_write,
    )
    options.informers.secrets.add_handler(workloads.handle_secret_event)
    # Only an existing Cluster's kubeconfig Secret is connected to.
    options.informers.clusters.add_handler(workloads.handle_cluster_event)
    options.manager.add_runnable(name="workload clusters", run=workloads.run)
    return workloads


def setup_controllers(
    *,
    options: ControllerOptions,
    kinds: KindRegistry,
    pools: bool,
    health_checks: bool = True,
    allow_insecure_kubeconfigs: bool = False,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> WorkloadClusters | None:
    """Every controller of the product on one manager: with ``pools``, the MachinePool and
    Machine controllers for the infra kinds of ``kinds`` (and, with ``health_checks``, the
    MachineHealthCheck controller), on one set of workload cluster connections (returned);
    and an infrastructure controller for each kind that has a provider (the others are
    known to the core, reconciled elsewhere). The one place tests, the demo and ``run``
    compose the product. ``allow_insecure_kubeconfigs`` is
    ``--allow-insecure-workload-kubeconfigs``; ``max_replicas`` ``--max-replicas-per-pool``."""
    workloads: WorkloadClusters | None = None
    if pools:
        workloads = workload_clusters(
            options=options, allow_insecure_kubeconfigs=allow_insecure_kubeconfigs
        )
        setup_machinepool_controller(
            options=options,
            workloads=workloads,
            infra_kinds=kinds.pool_kinds,
            infra_machine_kinds=kinds.machine_kinds,
        )
        setup_machine_controller(
            options=options, workloads=workloads, infra_machine_kinds=kinds.machine_kinds
        )
        if health_checks:
            setup_healthcheck_controller(options=options, workloads=workloads)
    for cloud in kinds.reconciled:
        setup_infrastructure_controller(options=options, cloud=cloud, max_replicas=max_replicas)
    return workloads


def gate_note(options: RunOptions) -> str:
    """What ``/readyz?verbose`` says about the feature gates."""
    note = options.feature_gates.describe()
    if not options.machine_pool_enabled:
        note += "; MachinePools are not reconciled"
    return note


async def _run_manager(manager: Manager, *, shutdown: asyncio.Event) -> int:
    try:
        await manager.run(shutdown=shutdown)
    except LeadershipLost as exc:
        _log.error("leader election lost, exiting", reason=str(exc))
        return 1
    except BindError as exc:
        raise StartupError(str(exc)) from exc
    _log.info("stopped")
    return 0


@contextlib.asynccontextmanager
async def inmemory_provider(
    options: RunOptions, *, kube: KubeClient
) -> AsyncIterator[InstanceGroupProvider]:
    """The in-memory cloud: a remote simulator, or one running inside this process."""
    if options.inmemory_endpoint:
        async with InMemoryProvider(base_url=options.inmemory_endpoint) as remote:
            yield remote
        return
    async with (
        contextlib.aclosing(
            KubeNodeRegistrar(
                management=kube, allow_insecure=options.allow_insecure_workload_kubeconfigs
            )
        ) as registrar,
        Simulator(registrar=registrar, state_file=options.inmemory_state_file) as sim,
    ):
        yield sim
