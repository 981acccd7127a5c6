"""The simulator's state file: atomic writes, debounced after changes, read at start.

Invariants:

- A write never leaves a partial file: the document goes to a temporary file in the same
  directory, is flushed and fsynced, then renamed over the state file (``os.replace`` is
  atomic on POSIX); a failed write removes its temporary file.
- Writes never overlap and happen in the order of the snapshots they carry: one writer task
  at a time, and :meth:`DebouncedSaver.aclose` waits for a write in flight before the final
  one, so the last state on disk is the state at close.
- Changes are coalesced: after :meth:`DebouncedSaver.mark_dirty` the saver waits
  ``debounce`` seconds (on the simulator's clock), then snapshots and writes once.

Failure: a write that fails (disk full, directory gone) is logged and retried after
``retry_delay``; the simulator keeps serving. :func:`load_state_document` raises
:class:`StateFileError` for a file that exists but cannot be read or parsed: the caller must
not start with an empty cloud in place of a real one (that would duplicate instances).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from controller.providers.inmemory.clock import SimClock

__all__ = ["DebouncedSaver", "StateFileError", "load_state_document", "write_state_document"]

_log = structlog.get_logger(__name__)


class StateFileError(RuntimeError):
    """The state file exists but cannot be used."""


def load_state_document(path: Path) -> object | None:
    """The JSON document in ``path``; None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc}") from exc
    try:
        document: object = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"state file {path} is not valid JSON: {exc}") from exc
    return document


def write_state_document(path: Path, document: object) -> None:
    """Atomically replace ``path`` with ``document`` as JSON (blocking; run in a thread)."""
    data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class DebouncedSaver:
    """Writes ``snapshot()`` to ``path`` shortly after changes; see the module docstring."""

    def __init__(
        self,
        *,
        path: Path,
        snapshot: Callable[[], dict[str, Any]],
        clock: SimClock,
        debounce: float = 0.2,
        retry_delay: float = 1.0,
    ) -> None:
        self._path = path
        self._snapshot = snapshot
        self._clock = clock
        self._debounce = debounce
        self._retry_delay = retry_delay
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._write: asyncio.Task[None] | None = None
        self.writes = 0

    def mark_dirty(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"save {self._path.name}")

    async def aclose(self) -> None:
        """Stop the saver and write the final state if anything changed since the last write."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._write is not None:
            with contextlib.suppress(Exception):
                await self._write
        if self._dirty.is_set():
            try:
                await self.save()
            except OSError as exc:
                _log.error("final state write failed", path=str(self._path), error=str(exc))

    async def save(self) -> None:
        """Snapshot now and write it; waits for a write in flight first."""
        if self._write is not None and not self._write.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._write)
        self._dirty.clear()
        document = self._snapshot()
        self._write = asyncio.ensure_future(
            asyncio.to_thread(write_state_document, self._path, document)
        )
        try:
            await asyncio.shield(self._write)
        except OSError:
            self._dirty.set()
            raise
        self.writes += 1

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await self._clock.sleep(self._debounce)
            try:
                await self.save()
            except OSError as exc:
                _log.warning("state write failed; retrying", path=str(self._path), error=str(exc))
                await self._clock.sleep(self._retry_delay)
