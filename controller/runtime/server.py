"""The HTTP endpoints a controller pod exposes: ``/metrics``, ``/healthz`` and ``/readyz``.

Two listeners as in controller-runtime: metrics on ``--metrics-bind-address`` (default
``:8080``) and probes on ``--health-probe-bind-address`` (default ``:8081``); an address of
``0`` disables a listener.

The metrics listener is secure when given ``metrics_tls`` (HTTPS) and ``metrics_auth`` (every
request's bearer token authenticated and authorized by the API server, 401/403 otherwise;
see :mod:`controller.runtime.metricsauth`); without them it is plain HTTP open to anyone who
reaches the port. Probes stay plain HTTP without authentication, as in controller-runtime:
the kubelet calls them and they reveal nothing.

Checks are named callables returning ``None`` when healthy or a short reason string when
not; a check that raises counts as failing with the exception as the reason. ``/readyz`` and
``/healthz`` answer 200 ``ok`` when every check passes, else 500 and the failing checks;
``?verbose`` lists every check in Kubernetes' ``[+]name ok`` / ``[-]name failed: reason``
format, and ``/readyz/<name>`` runs a single check. A *note* (:meth:`Checks.add_note`) is a
check that always passes and shows a fixed explanation in the verbose listing
(``[+]featureGates ok: MachinePool=false ...``), for facts an operator must see, such as a
disabled feature gate.

Lifecycle: ``async with ProbeServer(...) as server``; listeners are bound on entry (a bind
failure raises :class:`BindError` naming the address) and closed on exit.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from controller.runtime.metrics import REGISTRY
from controller.runtime.metricsauth import MetricsAuth

Check = Callable[[], str | None]


class BindError(RuntimeError):
    """A listener could not bind its address."""


def parse_bind_address(value: str) -> tuple[str, int] | None:
    """``":8080"`` → ``("0.0.0.0", 8080)``; ``"0"`` → ``None`` (disabled)."""
    if value in ("0", ""):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bind address {value!r} is not HOST:PORT, :PORT or 0")
    return (host.strip("[]") or "0.0.0.0", int(port))


class Checks:
    """A named set of health checks."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._notes: dict[str, str] = {}

    def add(self, *, name: str, check: Check) -> None:
        self._checks[name] = check

    def add_note(self, *, name: str, note: str) -> None:
        """A check named ``name`` that always passes; verbose output shows ``note``."""
        self._checks[name] = lambda: None
        self._notes[name] = note

    def note(self, name: str) -> str | None:
        """The note of check ``name``, if it is one."""
        return self._notes.get(name)

    def run(self, *, only: str | None = None) -> list[tuple[str, str | None]]:
        results: list[tuple[str, str | None]] = []
        for name, check in self._checks.items():
            if only is not None and name != only:
                continue
            try:
                results.append((name, check()))
            except Exception as exc:
                results.append((name, f"{exc.__class__.__name__}: {exc}"))
        return results


def _line(checks: Checks, name: str, reason: str | None) -> str:
    if reason is not None:
        return f"[-]{name} failed: {reason}"
    note = checks.note(name)
    return f"[+]{name} ok: {note}" if note else f"[+]{name} ok"


def _probe_handler(checks: Checks) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        only = request.match_info.get("name")
        results = checks.run(only=only)
        if only is not None and not results:
            return web.Response(status=404, text=f"no check named {only}\n")
        failed = [(n, r) for n, r in results if r is not None]
        lines = [_line(checks, n, r) for n, r in results]
        verbose = "verbose" in request.query
        if failed:
            body = "\n".join(lines) + f"\n{request.path} check failed\n"
            return web.Response(status=500, text=body)
        body = ("\n".join(lines) + f"\n{request.path} check passed\n") if verbose else "ok"
        return web.Response(status=200, text=body)

    return handle


class ProbeServer:
    """Serves metrics and health probes; see the module docstring."""

    def __init__(
        self,
        *,
        metrics_address: str = ":8080",
        health_address: str = ":8081",
        registry: CollectorRegistry = REGISTRY,
        metrics_tls: ssl.SSLContext | None = None,
        metrics_auth: MetricsAuth | None = None,
    ) -> None:
        self.healthz = Checks()
        self.readyz = Checks()
        self._metrics_address = parse_bind_address(metrics_address)
        self._health_address = parse_bind_address(health_address)
        self._registry = registry
        self._metrics_tls = metrics_tls
        self._metrics_auth = metrics_auth
        self._runners: list[web.AppRunner] = []
        #: Bound ports (useful when an address asked for port 0... or an ephemeral port).
        self.metrics_port: int | None = None
        self.health_port: int | None = None

    async def __aenter__(self) -> Self:
        try:
            if self._metrics_address is not None:
                auth = self._metrics_auth
                app = web.Application(middlewares=[auth.middleware()] if auth else [])
                app.router.add_get("/metrics", make_aiohttp_handler(registry=self._registry))
                self.metrics_port = await self._serve(
                    app=app, address=self._metrics_address, tls=self._metrics_tls
                )
            if self._health_address is not None:
                app = web.Application()
                for path, checks in (("/healthz", self.healthz), ("/readyz", self.readyz)):
                    handler = _probe_handler(checks)
                    app.router.add_get(path, handler)
                    app.router.add_get(path + "/{name}", handler)
                self.health_port = await self._serve(app=app, address=self._health_address)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _serve(
        self, *, app: web.Application, address: tuple[str, int], tls: ssl.SSLContext | None = None
    ) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host=address[0], port=address[1], ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise BindError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from exc
        server = site._server  # aiohttp keeps the asyncio.Server here
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else address[1]

    async def _close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
