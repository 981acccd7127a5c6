"""One child process of the local control plane, with its log and its lifecycle.

Invariants:

- The child runs in its own session (process group) and gets ``SIGKILL`` from the kernel if
  the process that started it dies (``PR_SET_PDEATHSIG``), so a test run that is itself
  killed leaves no etcd or kube-apiserver behind.
- :meth:`Process.stop` always ends the child: ``SIGTERM``, a grace period, then ``SIGKILL``;
  if it is cancelled while waiting it still kills the child before re-raising.
- stdout and stderr go to one log file; :meth:`Process.last_log_line` gives the line that most
  likely names the cause when the child exits early.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PLAIN_CAUSE = re.compile(r"flag provided but not defined|^Error:|address already in use")
_KLOG_ERROR = re.compile(r"^[EF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """A started child process; create with :meth:`start`."""

    def __init__(self, *, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self._proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, *, name: str, argv: Sequence[str], log_path: Path) -> Process:
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(name=name, proc=proc, log_path=log_path)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def running(self) -> bool:
        return self._proc.returncode is None

    def last_log_line(self) -> str:
        """The log line most likely to name why the child failed, in one line.

        Preference: etcd's last JSON error entry, then a plain Go start-up error (bad flag,
        port in use), then kube-apiserver's last klog error line, then the last line.
        """
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines()]
        except OSError:
            return ""
        lines = [ln for ln in lines if ln]
        chosen = (
            next((c for c in map(_json_error, reversed(lines)) if c), None)
            or next((ln for ln in lines if _PLAIN_CAUSE.search(ln)), None)
            or next(
                (_KLOG_ERROR.sub("", ln) for ln in reversed(lines) if _KLOG_ERROR.match(ln)), None
            )
            or (lines[-1] if lines else "")
        )
        return chosen[:300]

    def kill(self) -> None:
        """Send SIGKILL to the child's process group now (for fault injection and cleanup)."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        return await self._proc.wait()

    async def stop(self, *, grace: float = 10.0) -> None:
        """Terminate the child and wait for it; kill it when the grace period runs out."""
        if self._proc.returncode is not None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout=grace)
            except TimeoutError:
                self.kill()
                await self._proc.wait()
        except BaseException:
            self.kill()
            raise


def _json_error(line: str) -> str | None:
    """``msg: error`` for a structured (zap/JSON) log entry at error level or above."""
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("level") not in ("error", "fatal", "panic"):
        return None
    parts = [str(entry.get("msg", "")), str(entry.get("error", ""))]
    return ": ".join(p for p in parts if p) or None
