"""The one place for signals: the first SIGTERM asks for a graceful shutdown, a second one
exits at once (real signals to a real child process)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import asyncio
    from controller.runtime.signals import shutdown_on_signals

    async def main() -> None:
        async with shutdown_on_signals() as shutdown:
            print("ready", flush=True)
            await shutdown.wait()
            print("draining", flush=True)
            await asyncio.sleep(3600)  # a drain that never ends

    asyncio.run(main())
    """
)


async def _line(proc: asyncio.subprocess.Process, wanted: bytes) -> None:
    """Read stdout until ``wanted`` (structlog's default output shares stdout)."""
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while (line := await proc.stdout.readline()) != wanted:
            assert line, f"the child ended before printing {wanted!r}"


async def _child() -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, stdout=asyncio.subprocess.PIPE
    )
    await _line(proc, b"ready\n")
    return proc


async def test_first_signal_requests_shutdown_second_exits_at_once() -> None:
    proc = await _child()
    assert proc.stdout is not None
    try:
        proc.send_signal(signal.SIGTERM)
        await _line(proc, b"draining\n")
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 128 + signal.SIGTERM
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigint_twice_exits_130() -> None:
    proc = await _child()
    assert proc.stdout is not None
    try:
        proc.send_signal(signal.SIGINT)
        await _line(proc, b"draining\n")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
