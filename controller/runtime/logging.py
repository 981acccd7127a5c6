"""Process-wide structured logging (structlog), JSON for machines or console for people.

:func:`configure_logging` is called once by the CLI before anything logs. Every log line
carries a timestamp, level and logger name; context bound with
``structlog.contextvars.bind_contextvars`` (a reconcile's object key and reconcile id) is
merged into every line emitted inside that context. Standard-library loggers (aiohttp,
kubernetes_asyncio) are routed through the same renderer so the output stays one format.

Invariant: a traceback (either format) never shows local variables, which may hold Secret
content; callers log fixed-text errors, never a Secret's data.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console"]


def configure_logging(*, fmt: LogFormat = "console", level: str = "info") -> None:
    """Configure structlog and the standard library for this process."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # The default (rich) formatter prints every frame's local variables: a kubeconfig,
        # a token. Plain tracebacks show code and the exception only.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
