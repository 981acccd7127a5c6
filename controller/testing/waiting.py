"""Waiting for state that offers no event to await.

Tests and the demo sometimes wait for something another process owns (the API server, a
controller running in a subprocess, a cache filled by an informer). :func:`until` is the one
place that polls: it checks a predicate every ``interval`` seconds and raises
``TimeoutError`` naming ``what`` when ``timeout`` passes. Prefer awaiting an event where
one exists.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Return once ``predicate()`` is true; raise ``TimeoutError`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}") from None
