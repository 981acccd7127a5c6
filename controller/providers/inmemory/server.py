"""The simulator's HTTP API: one route per provider call, JSON in and out.

=======  ==============================================  ===============================
method   path                                            call
=======  ==============================================  ===============================
PUT      ``/v1/groups/{name}``                           ``ensure_group`` → group status
GET      ``/v1/groups/{name}``                           ``describe_group`` → status
GET      ``/v1/groups``                                  ``list_groups`` → ``{"groups"}``
PUT      ``/v1/groups/{name}/capacity``                  ``set_capacity`` ``{"desired"}``
DELETE   ``/v1/groups/{name}/instances/{id}?shrink=``    ``delete_instance`` (true|false)
DELETE   ``/v1/groups/{name}``                           ``delete_group`` ``{"ownerTags"}``
                                                         (absent is fine)
POST     ``/v1/groups/{name}/instances/{id}/fail``       crash an instance (chaos)
GET/PUT  ``/v1/faults``                                  read/replace the injected faults
GET      ``/healthz``                                    ``ok``
=======  ==============================================  ===============================

Successful writes without a body answer 204. Errors are ``{"code", "message"}`` with:
404 ``GroupNotFound`` / ``InstanceNotFound`` (and ``NotFound`` for an unknown route);
400 ``BadRequest`` (a body or query that cannot be read); 422 ``ValidationError`` and any
other permanent error (e.g. a capacity outside min/max, ``GroupOwnedByOthers`` for a group
whose tags lack the caller's ``ownerTags``); 429 ``Throttling`` with a
``Retry-After`` header (whole seconds, rounded up) and the exact ``retryAfter`` in the body;
500 ``InternalError`` and 503 ``ServiceUnavailable`` for retryable errors. An unexpected
exception is logged with its traceback and answered 500; the server keeps serving.

Lifecycle: ``async with SimulatorServer(simulator=..., port=0) as server``; the listener is
bound on entry (``server.port`` / ``server.url`` give the bound address; a bind failure
raises :class:`OSError`) and closed on exit, after releasing calls hung by the ``hang``
fault so shutdown does not wait for them. The server does not own the simulator.
"""

from __future__ import annotations

import json
import math
from types import TracebackType
from typing import Any, Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from controller.providers.base import PermanentError, ProviderError, ThrottledError
from controller.providers.inmemory.faults import Faults
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.wire import (
    error_body,
    owner_tags_from_json,
    spec_from_json,
    status_to_json,
)

__all__ = ["SimulatorServer", "build_app"]

_log = structlog.get_logger(__name__)

_SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)


class _BadRequest(Exception):
    """The request cannot be read (400)."""


def build_app(*, simulator: Simulator) -> web.Application:
    """The aiohttp application serving ``simulator``."""
    app = web.Application(middlewares=[_errors])
    app[_SIMULATOR] = simulator
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/faults", _get_faults)
    app.router.add_put("/v1/faults", _put_faults)
    app.router.add_get("/v1/groups", _list_groups)
    app.router.add_put("/v1/groups/{name}", _ensure_group)
    app.router.add_get("/v1/groups/{name}", _describe_group)
    app.router.add_delete("/v1/groups/{name}", _delete_group)
    app.router.add_put("/v1/groups/{name}/capacity", _set_capacity)
    app.router.add_delete("/v1/groups/{name}/instances/{instance_id}", _delete_instance)
    app.router.add_post("/v1/groups/{name}/instances/{instance_id}/fail", _fail_instance)
    return app


class SimulatorServer:
    """Serves a :class:`Simulator` over HTTP on ``host:port``; see the module docstring."""

    def __init__(
        self,
        *,
        simulator: Simulator,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self._simulator = simulator
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the server is not running")
        return self._bound_port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(
            build_app(simulator=self._simulator),
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])
        _log.info("simulator API serving", url=self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._simulator.release_hung_calls()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._bound_port = None


# ---------------------------------------------------------------------- middleware


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProviderError as exc:
        return _error_response(exc)
    except _BadRequest as exc:
        return _json(400, error_body(code="BadRequest", message=str(exc)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "NotFound" if exc.status == 404 else exc.reason.replace(" ", "")
        return _json(
            exc.status,
            error_body(code=code, message=f"{request.method} {request.path}: {exc.reason}"),
        )
    except Exception as exc:
        _log.exception("simulator API handler failed", method=request.method, path=request.path)
        return _json(500, error_body(code="InternalError", message=type(exc).__name__))


def _error_response(exc: ProviderError) -> web.Response:
    headers: dict[str, str] = {}
    retry_after: float | None = None
    if exc.code in ("GroupNotFound", "InstanceNotFound"):
        status = 404
    elif isinstance(exc, ThrottledError):
        status = 429
        if exc.retry_after is not None:
            retry_after = exc.retry_after
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
    elif exc.retryable:
        status = 503 if exc.code == "ServiceUnavailable" else 500
    elif exc.code == "BadRequest":
        status = 400
    else:
        status = 422
    body = error_body(code=exc.code, message=exc.message, retry_after=retry_after)
    return _json(status, body, headers=headers)


def _json(status: int, body: object, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _BadRequest(f"the body is not JSON: {exc}") from exc


# ---------------------------------------------------------------------- handlers


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def _get_faults(request: web.Request) -> web.StreamResponse:
    return _json(200, request.app[_SIMULATOR].faults.to_json())


async def _put_faults(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if not isinstance(body, dict):
        raise _BadRequest("faults must be a JSON object")
    try:
        faults = Faults.from_json(body)
    except ValueError as exc:
        raise PermanentError(str(exc), code="ValidationError") from exc
    simulator = request.app[_SIMULATOR]
    simulator.faults = faults
    return _json(200, faults.to_json())


async def _list_groups(request: web.Request) -> web.StreamResponse:
    groups = await request.app[_SIMULATOR].list_groups()
    return _json(200, {"groups": [status_to_json(g) for g in groups]})


async def _ensure_group(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    try:
        spec = spec_from_json(name=request.match_info["name"], data=body)
    except ValueError as exc:
        raise _BadRequest(str(exc)) from exc
    status = await request.app[_SIMULATOR].ensure_group(spec=spec)
    return _json(200, status_to_json(status))


async def _describe_group(request: web.Request) -> web.StreamResponse:
    status = await request.app[_SIMULATOR].describe_group(name=request.match_info["name"])
    return _json(200, status_to_json(status))


async def _delete_group(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    try:
        owner_tags = owner_tags_from_json(body)
    except ValueError as exc:
        raise _BadRequest(str(exc)) from exc
    await request.app[_SIMULATOR].delete_group(
        name=request.match_info["name"], owner_tags=owner_tags
    )
    return web.Response(status=204)


async def _set_capacity(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    desired = body.get("desired") if isinstance(body, dict) else None
    if isinstance(desired, bool) or not isinstance(desired, int):
        raise _BadRequest('the body must be {"desired": <integer>}')
    await request.app[_SIMULATOR].set_capacity(name=request.match_info["name"], desired=desired)
    return web.Response(status=204)


async def _delete_instance(request: web.Request) -> web.StreamResponse:
    shrink = request.query.get("shrink", "false").lower()
    if shrink not in ("true", "false"):
        raise _BadRequest("shrink must be true or false")
    await request.app[_SIMULATOR].delete_instance(
        name=request.match_info["name"],
        instance_id=request.match_info["instance_id"],
        shrink=shrink == "true",
    )
    return web.Response(status=204)


async def _fail_instance(request: web.Request) -> web.StreamResponse:
    await request.app[_SIMULATOR].fail_instance(
        name=request.match_info["name"], instance_id=request.match_info["instance_id"]
    )
    return web.Response(status=204)
