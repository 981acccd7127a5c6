"""The one place where the process reacts to SIGINT and SIGTERM.

:func:`shutdown_on_signals` installs handlers on the running loop for the life of an
``async with`` block and yields a :class:`Shutdown` whose ``requested`` event is set by the
first signal: everything that runs long awaits that event and winds down in order. A second
signal means "now": the process exits at once with status 130 (SIGINT) or 143 (SIGTERM),
skipping graceful drains, as people expect from a controller stuck in shutdown.

On exit from the block the previous handlers are restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

_log = structlog.get_logger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Shutdown:
    """Set when the first shutdown signal arrives."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    signal_name: str | None = None

    async def wait(self) -> None:
        await self.requested.wait()


@contextlib.asynccontextmanager
async def shutdown_on_signals() -> AsyncIterator[Shutdown]:
    """Install SIGINT/SIGTERM handlers for the block; see the module docstring."""
    loop = asyncio.get_running_loop()
    shutdown = Shutdown()

    def on_signal(sig: signal.Signals) -> None:
        if shutdown.requested.is_set():
            _log.warning("second signal, exiting now", signal=sig.name)
            os._exit(128 + int(sig))
        shutdown.signal_name = sig.name
        _log.info("shutdown requested", signal=sig.name)
        shutdown.requested.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield shutdown
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
