"""``machinepool-controller simulator``: the simulated cloud as a process of its own.

Runs a :class:`~.simulator.Simulator` behind its HTTP API (:mod:`.server`) until SIGINT or
SIGTERM (handled by :func:`controller.runtime.signals.shutdown_on_signals`), so the
controller can be restarted, killed or upgraded while the "cloud" and its instances live on.
With ``state_file`` the cloud also outlives its own restarts.

Workload Nodes are written through the management cluster named by ``kubeconfig`` (else
``$KUBECONFIG``, else the pod's service account); with none of those the simulator runs
without registering Nodes and says so.

Output: one line ``simulator listening on http://HOST:PORT`` on stdout once the API answers
(a supervisor waits for it). Exit status 0 after a signal; 1 when start-up fails (a bad state
file, a port in use, an unreadable kubeconfig), with one line on stderr naming the cause;
2 for a ``listen`` address that cannot be parsed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import structlog

from controller.providers.inmemory.nodes import NodeRegistrar
from controller.providers.inmemory.persistence import StateFileError
from controller.providers.inmemory.server import SimulatorServer
from controller.providers.inmemory.simulator import Simulator
from controller.runtime.server import parse_bind_address
from controller.runtime.signals import shutdown_on_signals

__all__ = ["run_simulator"]

_log = structlog.get_logger(__name__)


async def run_simulator(*, listen: str, state_file: Path | None, kubeconfig: Path | None) -> int:
    """Serve the simulator on ``listen`` (``HOST:PORT``) until a signal; see the docstring."""
    try:
        address = parse_bind_address(listen)
        if address is None:
            raise ValueError(f"listen address {listen!r} disables the API")
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    host, port = address
    try:
        async with contextlib.AsyncExitStack() as stack:
            shutdown = await stack.enter_async_context(shutdown_on_signals())
            registrar = await _registrar(stack=stack, kubeconfig=kubeconfig)
            simulator = await stack.enter_async_context(
                Simulator(registrar=registrar, state_file=state_file)
            )
            server = await stack.enter_async_context(
                SimulatorServer(simulator=simulator, host=host, port=port)
            )
            print(f"simulator listening on {server.url}", flush=True)
            await shutdown.wait()
    except (StateFileError, OSError, _ManagementClusterError) as exc:
        print(f"simulator: cannot start: {exc}", file=sys.stderr)
        return 1
    _log.info("simulator stopped")
    return 0


class _ManagementClusterError(RuntimeError):
    """The management cluster's kubeconfig cannot be loaded."""


async def _registrar(
    *, stack: contextlib.AsyncExitStack, kubeconfig: Path | None
) -> NodeRegistrar | None:
    """A Node registrar on the management cluster, closed with ``stack``; None without one.

    The Kubernetes client is imported only here: a simulator without a management cluster
    starts in a fraction of the time.
    """
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if path is None and not in_cluster:
        _log.warning("no management cluster configured: Nodes will not be registered")
        return None
    from kubernetes_asyncio import client, config

    from controller.providers.inmemory.workload import KubeNodeRegistrar
    from controller.runtime.kube import KubeClient

    cfg = client.Configuration()
    try:
        if path is not None:
            await config.load_kube_config(config_file=str(path), client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise _ManagementClusterError(
            f"cannot load kubeconfig {path or '(in-cluster)'}: {exc}"
        ) from exc
    api: client.ApiClient = await stack.enter_async_context(client.ApiClient(configuration=cfg))
    return await stack.enter_async_context(KubeNodeRegistrar(management=KubeClient(api=api)))
