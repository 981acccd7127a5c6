"""The composition root of ``machinepool-controller run``.

Builds the management-cluster client, checks the API server answers, assembles the manager
with its controllers, and runs it until SIGTERM/SIGINT (handled in
:mod:`controller.runtime.signals`, the one place for signals).

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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import structlog
from kubernetes_asyncio import client, config

from controller.healthcheck.setup import setup_healthcheck_controller
from controller.machinepool.setup import setup_machinepool_controller
from controller.machines.setup import setup_machine_controller
from controller.options import RunOptions, in_cluster_namespace
from controller.providers.aws.adapter import AwsPoolAdapter
from controller.providers.aws.provider import AwsProvider
from controller.providers.aws.setup import setup_aws_controller
from controller.providers.base import InstanceGroupProvider
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.inmemory.client import InMemoryProvider
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar
from controller.providers.reconciler import DEFAULT_MAX_REPLICAS, PoolAdapter
from controller.providers.setup import setup_infrastructure_controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Namespaces
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.leaderelection import LeadershipLost
from controller.runtime.manager import LeaderElectionOptions, Manager, ManagerOptions
from controller.runtime.server import BindError
from controller.runtime.servingcert import CertificateError
from controller.runtime.signals import shutdown_on_signals

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
        async with contextlib.AsyncExitStack() as stack:
            providers: list[tuple[PoolAdapter, InstanceGroupProvider | None]] = [
                (InMemoryPoolAdapter(), None)
            ]
            enabled = options.machine_pool_enabled
            if enabled and "infrastructure" in options.controllers:
                provider = await stack.enter_async_context(inmemory_provider(options, kube=kube))
                providers = [(InMemoryPoolAdapter(), provider)]
            aws: AwsProvider | None = None
            if enabled and "aws" in options.controllers:
                assert options.aws_region is not None  # checked with the options
                aws = await stack.enter_async_context(
                    AwsProvider(
                        region=options.aws_region,
                        endpoint_url=options.aws_endpoint_url,
                        registry=manager.registry,
                        poll_interval=options.aws_poll_interval,
                    )
                )
                # The core half knows the kind; its infrastructure controller is wired below
                # (its own poll interval, and its bootstrap Secret watch).
                providers.append((AwsPoolAdapter(), None))
            if enabled:
                setup_controllers(
                    manager=manager,
                    namespace=options.namespaces,
                    pools="machinepool" in options.controllers,
                    providers=providers,
                    recorder=recorder,
                    concurrency=options.concurrency,
                    reconcile_timeout=options.reconcile_timeout,
                    watch_filter=options.label_selector(),
                    allow_insecure_kubeconfigs=options.allow_insecure_workload_kubeconfigs,
                    max_replicas=options.max_replicas_per_pool,
                )
            if aws is not None:
                setup_aws_controller(
                    manager=manager,
                    namespace=options.namespaces,
                    provider=aws,
                    recorder=recorder,
                    concurrency=options.concurrency,
                    reconcile_timeout=options.reconcile_timeout,
                    registry=manager.registry,
                    steady_poll=options.aws_poll_interval,
                    watch_filter=options.label_selector(),
                )
            await stack.enter_async_context(recorder)
            return await _run_manager(manager, shutdown=shutdown.requested)


def setup_controllers(
    *,
    manager: Manager,
    namespace: Namespaces,
    pools: bool,
    providers: Sequence[tuple[PoolAdapter, InstanceGroupProvider | None]],
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    busy_poll: float = 2.0,
    steady_poll: float = 60.0,
    watch_filter: str | None = None,
    health_checks: bool = True,
    allow_insecure_kubeconfigs: bool = False,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> None:
    """Every controller of the product on one manager: with ``pools``, the MachinePool and
    Machine controllers for the infra kinds of ``providers`` (and, with ``health_checks``,
    the MachineHealthCheck controller, which shares their workload cluster connections); and
    an infrastructure controller for each provider given (``None``: the kind is known,
    reconciled elsewhere). The one place tests, the demo and ``run`` compose the product.
    ``watch_filter`` is a label selector every controller's informers share
    (``--watch-filter``); ``allow_insecure_kubeconfigs`` is
    ``--allow-insecure-workload-kubeconfigs``."""
    infra_kinds = [adapter.kind for adapter, _ in providers]
    machine_kinds = [a.machine_kind for a, _ in providers if a.machine_kind is not None]
    if pools:
        pool_controller = setup_machinepool_controller(
            manager=manager,
            namespace=namespace,
            infra_kinds=infra_kinds,
            infra_machine_kinds=machine_kinds,
            recorder=recorder,
            concurrency=concurrency,
            reconcile_timeout=reconcile_timeout,
            registry=manager.registry,
            watch_filter=watch_filter,
            allow_insecure_kubeconfigs=allow_insecure_kubeconfigs,
        )
        setup_machine_controller(
            manager=manager,
            namespace=namespace,
            workloads=pool_controller.workloads,
            infra_machine_kinds=machine_kinds,
            recorder=recorder,
            concurrency=concurrency,
            reconcile_timeout=reconcile_timeout,
            registry=manager.registry,
            watch_filter=watch_filter,
        )
        if health_checks:
            setup_healthcheck_controller(
                manager=manager,
                namespace=namespace,
                workloads=pool_controller.workloads,
                recorder=recorder,
                concurrency=concurrency,
                reconcile_timeout=reconcile_timeout,
                registry=manager.registry,
                watch_filter=watch_filter,
            )
    for adapter, provider in providers:
        if provider is None:
            continue
        setup_infrastructure_controller(
            manager=manager,
            namespace=namespace,
            adapter=adapter,
            provider=provider,
            recorder=recorder,
            concurrency=concurrency,
            reconcile_timeout=reconcile_timeout,
            registry=manager.registry,
            busy_poll=busy_poll,
            steady_poll=steady_poll,
            watch_filter=watch_filter,
            max_replicas=max_replicas,
        )


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
