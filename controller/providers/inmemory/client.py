"""``InMemoryProvider``: the provider protocol over the simulator's HTTP API.

Implements :class:`~controller.providers.base.InstanceGroupProvider` with aiohttp. It is an
async context manager that owns its ``ClientSession``; calls outside the block raise
:class:`RuntimeError`.

Each call has one deadline (``timeout``, default 10 s, covering connect, send and reading the
answer) and is made exactly once: retry policy belongs to the reconciler. Answers map to the
protocol's typed errors:

=========================================  ===================================================
answer                                     error
=========================================  ===================================================
429                                        :class:`ThrottledError`, ``retry_after`` from the
                                           ``Retry-After`` header (seconds or an HTTP date)
5xx, timeout, connection failure,          :class:`RetryableError` (code from the body, else
malformed answer                           ``HTTP<status>``, ``Timeout``, ``ConnectionError``,
                                           ``InvalidResponse``)
404 ``GroupNotFound`` (or no code)         :class:`GroupNotFoundError`
4xx ``GroupOwnedByOthers``                   :class:`GroupOwnedByOthersError`
other 4xx (incl. 404 ``InstanceNotFound``) :class:`PermanentError` with the server's code and
                                           message
=========================================  ===================================================

Every call is counted in ``machinepool_provider_requests_total{provider="inmemory",...}`` and
timed in ``machinepool_provider_request_duration_seconds`` (see :mod:`.metrics`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from controller.providers.base import (
    GROUP_OWNED_BY_OTHERS,
    GroupNotFoundError,
    GroupOwnedByOthersError,
    GroupSpec,
    GroupStatus,
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
)
from controller.providers.inmemory.metrics import provider_metrics
from controller.providers.inmemory.wire import spec_to_json, status_from_json
from controller.runtime.metrics import REGISTRY, CollectorRegistry

__all__ = ["PROVIDER_NAME", "InMemoryProvider"]

PROVIDER_NAME = "inmemory"


class InMemoryProvider:
    """The in-memory simulator's client; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float = 10.0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._metrics = provider_metrics(registry)
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers={"Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ the protocol

    async def ensure_group(self, *, spec: GroupSpec) -> GroupStatus:
        try:
            body = json.loads(json.dumps(spec_to_json(spec)))
        except (TypeError, ValueError) as exc:
            raise PermanentError(
                f"the group template is not JSON data: {exc}", code="ValidationError"
            ) from exc
        data = await self._call("ensure_group", "PUT", _group_path(spec.name), body=body)
        return _status(data)

    async def describe_group(self, *, name: str) -> GroupStatus:
        return _status(await self._call("describe_group", "GET", _group_path(name)))

    async def list_groups(self) -> list[GroupStatus]:
        """Every group of the simulator in one call (for batching across pools)."""
        data = await self._call("list_groups", "GET", "/v1/groups")
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list):
            raise RetryableError("the answer has no group list", code="InvalidResponse")
        return [_status(group) for group in groups]

    async def set_capacity(self, *, name: str, desired: int) -> None:
        await self._call(
            "set_capacity", "PUT", f"{_group_path(name)}/capacity", body={"desired": desired}
        )

    async def delete_instance(self, *, name: str, instance_id: str, shrink: bool) -> None:
        await self._call(
            "delete_instance",
            "DELETE",
            f"{_group_path(name)}/instances/{quote(instance_id, safe='')}",
            params={"shrink": "true" if shrink else "false"},
        )

    async def delete_group(self, *, name: str, owner_tags: Mapping[str, str]) -> None:
        await self._call(
            "delete_group", "DELETE", _group_path(name), body={"ownerTags": dict(owner_tags)}
        )

    # ------------------------------------------------------------------ transport

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        session = self._session
        if session is None:
            raise RuntimeError("use `async with InMemoryProvider(...)` before calling it")
        started = time.perf_counter()
        code = "OK"
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    async with session.request(
                        method, self._base_url + path, json=body, params=params
                    ) as resp:
                        raw = await resp.read()
                        if resp.status >= 400:
                            raise _error(resp.status, resp.headers, raw)
                        if not raw:
                            return None
                        try:
                            return json.loads(raw)
                        except ValueError as exc:
                            raise RetryableError(
                                f"{operation}: the answer is not JSON", code="InvalidResponse"
                            ) from exc
            except TimeoutError as exc:
                raise RetryableError(
                    f"{operation}: no answer within {self._timeout:g}s", code="Timeout"
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise RetryableError(
                    f"{operation}: {type(exc).__name__}: {exc}", code="ConnectionError"
                ) from exc
        except ProviderError as exc:
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = "Cancelled"
            raise
        finally:
            self._metrics.observe(
                provider=PROVIDER_NAME,
                operation=operation,
                code=code,
                seconds=time.perf_counter() - started,
            )


def _group_path(name: str) -> str:
    return f"/v1/groups/{quote(name, safe='')}"


def _status(data: object) -> GroupStatus:
    try:
        return status_from_json(data)
    except ValueError as exc:
        raise RetryableError(f"malformed group status: {exc}", code="InvalidResponse") from exc


def _error(status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
    code, message = f"HTTP{status}", raw.decode(errors="replace")[:500]
    has_code = False
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code, has_code = body["code"], True
        message = str(body.get("message", ""))
    if status == 429:
        return ThrottledError(
            message,
            code=code if has_code else "Throttling",
            retry_after=_retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        return RetryableError(message, code=code)
    if status == 404 and (not has_code or code == "GroupNotFound"):
        return GroupNotFoundError(message, code="GroupNotFound")
    if code == GROUP_OWNED_BY_OTHERS:
        return GroupOwnedByOthersError(message)
    return PermanentError(message, code=code)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
