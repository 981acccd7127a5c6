"""A local AWS for tests, demos and benchmarks: moto in server mode, and a fault proxy.

:class:`MotoServer` runs ``python -m moto.server`` (``moto[server]`` is a development
dependency) on a free loopback port as a child process, and waits for its "Running on" line
rather than polling. :meth:`MotoServer.reset` empties it between tests. The process is
stopped on exit, also when the block fails or is cancelled.

:class:`FaultProxy` is an HTTP proxy between our client and moto that can make AWS misbehave
where moto does not: throttle a fraction of calls (``Throttling`` for Auto Scaling,
``RequestLimitExceeded`` for EC2, each in its service's own error format), answer 5xx, add
latency, attach ``Retry-After``. It also answers the few calls moto has not implemented
(``DeleteLaunchTemplateVersions``, ``StartInstanceRefresh``, ``CancelInstanceRefresh``,
``DescribeInstanceRefreshes``) with well-formed successes and records them, so a test can
check that the call was made and with what. It counts every call by action, and every fault
it injected. Faults are drawn from a seeded random generator, so a run is repeatable.

Nothing here is imported by the controller itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

__all__ = ["FaultProxy", "Faults", "MotoServer", "free_port"]

_READY = re.compile(rb"Running on (http://[\d.]+:\d+)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``moto`` in server mode on loopback; see the module docstring."""

    def __init__(self, *, port: int | None = None, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        env = {**os.environ, "MOTO_PORT": str(self.port)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.providers.aws._moto_main",
            "-H", "127.0.0.1", "-p", str(self.port),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            await asyncio.wait_for(self._wait_ready(), self.start_timeout)
        except BaseException:
            await self._stop()
            raise
        return self

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        seen = b""
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                raise RuntimeError(f"moto_server exited before serving: {seen[-2000:]!r}")
            seen += line
            if _READY.search(line):
                self._drain = asyncio.create_task(self._discard(self._proc.stderr))
                return

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            if os.environ.get("MOTO_DEBUG"):
                sys.stderr.write(chunk.decode(errors="replace"))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain

    async def reset(self) -> None:
        """Forget every resource (between tests)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/moto-api/reset") as resp,
        ):
            resp.raise_for_status()


@dataclass
class Faults:
    """What :class:`FaultProxy` does to calls (changeable while it runs)."""

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency: float = 0.0
    retry_after: float | None = None
    #: Only these actions get faults (empty: all).
    actions: frozenset[str] = frozenset()


_AUTOSCALING_ERROR = (
    '<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
    "<Error><Type>{type}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>{rid}</RequestId></ErrorResponse>"
)
_EC2_ERROR = (
    "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    "</Errors><RequestID>{rid}</RequestID></Response>"
)
_CANNED = {
    "DeleteLaunchTemplateVersions": (
        '<DeleteLaunchTemplateVersionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>{rid}</requestId><successfullyDeletedLaunchTemplateVersionSet/>"
        "<unsuccessfullyDeletedLaunchTemplateVersionSet/></DeleteLaunchTemplateVersionsResponse>"
    ),
    "StartInstanceRefresh": (
        '<StartInstanceRefreshResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
        "<StartInstanceRefreshResult><InstanceRefreshId>{rid}</InstanceRefreshId>"
        "</StartInstanceRefreshResult><ResponseMetadata><RequestId>{rid}</RequestId>"
        "</ResponseMetadata></StartInstanceRefreshResponse>"
    ),
    "CancelInstanceRefresh": (
        '<CancelInstanceRefreshResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
        "<CancelInstanceRefreshResult><InstanceRefreshId>{rid}</InstanceRefreshId>"
        "</CancelInstanceRefreshResult><ResponseMetadata><RequestId>{rid}</RequestId>"
        "</ResponseMetadata></CancelInstanceRefreshResponse>"
    ),
    "DescribeInstanceRefreshes": (
        '<DescribeInstanceRefreshesResponse xmlns="http://autoscaling.amazonaws.com/doc/'
        '2011-01-01/"><DescribeInstanceRefreshesResult><InstanceRefreshes/>'
        "</DescribeInstanceRefreshesResult><ResponseMetadata><RequestId>{rid}</RequestId>"
        "</ResponseMetadata></DescribeInstanceRefreshesResponse>"
    ),
}
_SERVICE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")


@dataclass
class _Record:
    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    canned: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)


class FaultProxy:
    """An HTTP proxy in front of moto that injects faults; see the module docstring."""

    def __init__(
        self,
        *,
        upstream: str,
        faults: Faults | None = None,
        seed: int = 7,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults or Faults()
        self._rng = rng or random.Random(seed).random
        self.record = _Record()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def reset_counts(self) -> None:
        self.record = _Record()

    @property
    def total_calls(self) -> int:
        return sum(self.record.calls.values())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params = parse_qs(body.decode(errors="replace")) if body else {}
        params = params or {k: request.query.getall(k) for k in request.query}
        action = (params.get("Action") or ["?"])[0]
        match = _SERVICE.search(request.headers.get("Authorization", ""))
        service = match.group(1) if match else "?"
        self.record.calls[action] += 1
        faults = self.faults
        rid = str(uuid.uuid4())
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if not faults.actions or action in faults.actions:
            draw = self._rng()
            if draw < faults.throttle_rate:
                self.record.faults[f"throttle:{action}"] += 1
                return self._error(service, rid, throttle=True)
            if draw < faults.throttle_rate + faults.error_rate:
                self.record.faults[f"5xx:{action}"] += 1
                return self._error(service, rid, throttle=False)
        canned = _CANNED.get(action)
        if canned is not None:
            self.record.canned.append((action, params))
            return web.Response(body=canned.format(rid=rid), content_type="text/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.rel_url}",
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            return web.Response(status=upstream.status, body=payload, headers=out_headers)

    def _error(self, service: str, rid: str, *, throttle: bool) -> web.Response:
        headers = {}
        if self.faults.retry_after is not None:
            headers["Retry-After"] = f"{self.faults.retry_after:g}"
        if service == "ec2":
            code, message, status = (
                ("RequestLimitExceeded", "Request limit exceeded.", 503)
                if throttle
                else ("InternalError", "An internal error has occurred", 500)
            )
            text = _EC2_ERROR.format(code=code, message=message, rid=rid)
        else:
            code, message, status, kind = (
                ("Throttling", "Rate exceeded", 400, "Sender")
                if throttle
                else ("ServiceUnavailable", "Service is unavailable", 503, "Receiver")
            )
            text = _AUTOSCALING_ERROR.format(type=kind, code=code, message=message, rid=rid)
        return web.Response(status=status, body=text, content_type="text/xml", headers=headers)
