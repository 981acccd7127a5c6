"""``make demo`` as a person runs it: ``machinepool-controller demo`` in its short form (what
CI runs) goes through every step and exits 0; ``--keep`` prints a KUBECONFIG line that
kubectl can use while the demo keeps running, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

KUBECTL = Path(sys.executable).parent / "kubectl"
STEPS = ["create 3 replicas", "scale to 5", "scale to 2", "delete the pool"]


@contextlib.asynccontextmanager
async def spawned(*args: str, cwd: Path | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """``machinepool-controller ARGS`` in ``cwd``; killed with its group if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120"}, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.mark.usefixtures("control_plane")  # the binaries are built (and the test integration)
async def test_short_demo_shows_every_step_and_exits_zero() -> None:
    async with spawned("demo", "--short") as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-3000:] + text[-3000:]
    positions = [text.index(f"{step}  (") for step in STEPS]  # each step's live table title
    assert positions == sorted(positions), "the steps are shown in order"
    assert "Running" in text
    assert "deleted" in text
    summary = text[text.index("summary") :]
    assert all(step in summary for step in STEPS)
    assert "total" in summary
    assert text.rstrip().endswith("demo finished")


@pytest.mark.usefixtures("control_plane")
async def test_keep_prints_a_kubeconfig_kubectl_can_use(tmp_path: Path) -> None:
    async with spawned("demo", "--short", "--keep", cwd=tmp_path) as proc:
        assert proc.stdout is not None
        kubeconfig = None
        async with asyncio.timeout(180):
            while kubeconfig is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "the demo ended before printing the KUBECONFIG line"
                if line.startswith("export KUBECONFIG="):
                    kubeconfig = line.strip().removeprefix("export KUBECONFIG=")
        assert Path(kubeconfig) == tmp_path / "demo.kubeconfig"
        kubectl = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--kubeconfig", kubeconfig,
            "get", "mp,machines,inmemorymachinepools,nodes", "-n", "default", "-o", "name",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(kubectl.communicate(), 60)
        assert kubectl.returncode == 0, err.decode()
        names = out.decode().split()
        assert "machinepool.cluster.x-k8s.io/demo-pool" in names
        assert sum(n.startswith("node/") for n in names) == 2  # scaled to 2 before keeping
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
    assert not (tmp_path / "demo.kubeconfig").exists()
