"""``run_simulator`` as a real process: the ready line, signals, and a cloud that outlives
its own restart through the state file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from controller.providers.inmemory.client import InMemoryProvider
from controller.providers.inmemory.process import run_simulator

from .helpers import group_spec

_MAIN = [sys.executable, "-m", "tests.providers.inmemory._simulator_main"]
_READY = "simulator listening on "


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return env


@contextlib.asynccontextmanager
async def simulator_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        *_MAIN,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line.startswith(_READY), line
        yield proc, line.removeprefix(_READY)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_the_cloud_outlives_a_restart_of_the_simulator_process(tmp_path: Path) -> None:
    state = tmp_path / "cloud.json"
    async with simulator_process("127.0.0.1:0", str(state)) as (proc, url):
        async with InMemoryProvider(base_url=url, registry=CollectorRegistry()) as provider:
            await provider.ensure_group(spec=group_spec(boot=60))
            await provider.set_capacity(name="pool", desired=3)
            before = await provider.describe_group(name="pool")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert state.is_file()

    async with simulator_process("127.0.0.1:0", str(state)) as (proc, url):
        async with InMemoryProvider(base_url=url, registry=CollectorRegistry()) as provider:
            after = await provider.describe_group(name="pool")
        assert after == before  # same instances, still booting: nothing duplicated or lost
        assert [i.state for i in after.instances] == ["pending"] * 3
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_broken_state_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    state = tmp_path / "cloud.json"
    state.write_text("][")
    proc = await asyncio.create_subprocess_exec(
        *_MAIN,
        "127.0.0.1:0",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert out == b""
    assert "simulator: cannot start: state file" in err.decode()


async def test_a_bad_listen_address_is_exit_2() -> None:
    assert await run_simulator(listen="nowhere", state_file=None, kubeconfig=None) == 2
