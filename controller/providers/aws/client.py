"""One region's AWS API: aiobotocore clients with retries, typed errors and metrics.

:class:`AwsApi` owns an ``autoscaling`` and an ``ec2`` client for one region (credentials
from the standard chain: environment, shared files, web identity, instance metadata), and
exposes a single :meth:`AwsApi.call`. Every attempt is counted in
``machinepool_provider_requests_total{provider="aws",operation,code}`` and timed in
``machinepool_provider_request_duration_seconds``; ``code`` is ``OK`` or the AWS error code
(``Throttling``, ``ValidationError``, ...), or ``ConnectionError``/``Timeout``.

Retries: botocore's own retryer is off (one attempt per botocore call), so every attempt is
visible in the metrics and the policy is ours: throttling (``Throttling``,
``RequestLimitExceeded``, ...), 5xx answers, timeouts and connection failures are retried up
to ``max_attempts`` times with full-jitter exponential backoff, and a ``Retry-After`` header
(seconds) is honoured when the answer has one. What is still failing after that is raised as
:class:`~controller.providers.base.ThrottledError` or
:class:`~controller.providers.base.RetryableError`, with the hint as ``retry_after``.
Every other AWS error is a :class:`~controller.providers.base.PermanentError` carrying the
AWS code and message; callers that expect a particular code (a group that is already gone)
catch it.

Secrets: request parameters (user data holds bootstrap tokens) and credentials are never
logged or put into errors; error messages are scrubbed of anything shaped like an access key,
and the SDK's own loggers (which dump whole requests at DEBUG) are held at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError
from prometheus_client import CollectorRegistry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from controller.providers.base import (
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
)
from controller.providers.metrics import provider_metrics
from controller.runtime.metrics import REGISTRY

__all__ = ["THROTTLING_CODES", "AwsApi", "classify"]

_log = structlog.get_logger(__name__)

#: AWS error codes that mean "slow down".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
    }
)
#: AWS error codes that are transient whatever the HTTP status.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "ScalingActivityInProgress",
        "ResourceInUse",
        "IDPCommunicationError",
    }
)
_ACCESS_KEY = re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
_MAX_MESSAGE = 1000


#: botocore and aiobotocore log whole requests (user data, signed headers) at DEBUG; they
#: never log below INFO here, whatever the root level.
_QUIET_LOGGERS = ("botocore", "aiobotocore", "urllib3")


def _quiet_sdk_loggers() -> None:
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


def _scrub(message: str) -> str:
    return _ACCESS_KEY.sub("<redacted>", message)[:_MAX_MESSAGE]


def _retry_after(headers: dict[str, Any]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException) -> ProviderError:
    """The typed error for what botocore/aiohttp raised."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        message = _scrub(str(error.get("Message") or exc.__class__.__name__))
        status = int(meta.get("HTTPStatusCode") or 0)
        hint = _retry_after(meta.get("HTTPHeaders") or {})
        if code in THROTTLING_CODES or status == 429:
            return ThrottledError(message, code=code, retry_after=hint)
        if code in _TRANSIENT_CODES or status >= 500:
            return RetryableError(message, code=code, retry_after=hint)
        return PermanentError(message, code=code)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | asyncio.TimeoutError):
        return RetryableError(_scrub(str(exc)), code="Timeout")
    if isinstance(
        exc, EndpointConnectionError | BotoConnectionError | aiohttp.ClientError | OSError
    ):
        return RetryableError(_scrub(str(exc)), code="ConnectionError")
    if isinstance(exc, ResponseParserError):
        # A garbled answer (an HTML 5xx page from a proxy): botocore says retries may succeed.
        return RetryableError("unparseable response from AWS", code="ResponseParserError")
    if isinstance(exc, BotoCoreError):
        # Parameter validation and the like: our bug or bad input, retrying will not help.
        return PermanentError(_scrub(str(exc)), code=exc.__class__.__name__)
    raise exc


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class AwsApi:
    """The AWS calls of one region; see the module docstring. Use as an async context manager."""

    provider_name = "aws"

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        registry: CollectorRegistry = REGISTRY,
        max_attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        give_up_after: float = 45.0,
        max_in_flight: int = 32,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        session: AioSession | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        _quiet_sdk_loggers()
        self.region = region
        self.endpoint_url = endpoint_url
        self.metrics = provider_metrics(registry)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self._session = session or get_session()
        self._config = AioConfig(
            region_name=region,
            retries={"total_max_attempts": 1},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_in_flight,
        )
        self._limit = asyncio.Semaphore(max_in_flight)
        self._rng = rng
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def __aenter__(self) -> Self:
        for service in ("autoscaling", "ec2"):
            self._clients[service] = await self._stack.enter_async_context(
                self._session.create_client(
                    service, endpoint_url=self.endpoint_url, config=self._config
                )
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._clients.clear()
        await self._stack.aclose()

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """``operation`` (``DescribeAutoScalingGroups``) on ``service``, retried as documented."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.give_up_after),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, RetryableError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(service, operation, params)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_delay) + self._rng() * self.base_delay
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (int(state.attempt_number) - 1))
        if isinstance(exc, ThrottledError):
            ceiling = min(self.max_delay, ceiling * 2)
        return self._rng() * ceiling

    async def _once(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        client = self._clients.get(service)
        if client is None:
            raise RuntimeError(f"AwsApi for {self.region} is not open (use `async with`)")
        method = getattr(client, _snake(operation))
        async with self._limit:
            started = time.perf_counter()
            code = "OK"
            try:
                response: dict[str, Any] = await method(**params)
            except (
                BotoCoreError, ClientError, ResponseParserError, aiohttp.ClientError, OSError,
                TimeoutError,
            ) as exc:  # fmt: skip
                error = classify(exc)
                code = error.code
                if error.retryable:
                    _log.debug(
                        "aws call failed, will retry",
                        operation=operation,
                        code=error.code,
                        retry_after=error.retry_after,
                    )
                raise error from None
            finally:
                self.metrics.observe(
                    provider=self.provider_name,
                    operation=operation,
                    code=code,
                    seconds=time.perf_counter() - started,
                )
        return response
