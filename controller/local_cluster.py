"""``machinepool-controller local-cluster``: the test control plane, for people.

Starts :class:`controller.testing.ControlPlane` with our CRDs, writes the admin kubeconfig to
the requested path, prints how to use it, and waits for SIGINT/SIGTERM; then stops both
processes and removes the kubeconfig it wrote. Start-up failures surface as
:class:`controller.testing.ControlPlaneError` (one line, exit status 1).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from rich.console import Console

from controller.runtime.signals import shutdown_on_signals
from controller.testing import ControlPlane


async def run_local_cluster(*, kubeconfig_out: Path) -> int:
    console = Console(stderr=True)
    async with shutdown_on_signals() as shutdown, ControlPlane() as cp:
        kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cp.kubeconfig_path, kubeconfig_out)
        kubeconfig_out.chmod(0o600)
        console.print(
            f"[green]control plane ready[/] in {cp.start_seconds:.1f}s at {cp.server}\n"
            f"  export KUBECONFIG={kubeconfig_out.resolve()}\n"
            "  kubectl get crds\n"
            "Press Ctrl-C to stop."
        )
        # Flush so a supervising process sees the ready line before we block.
        console.file.flush()
        try:
            await shutdown.wait()
        finally:
            with contextlib.suppress(FileNotFoundError):
                kubeconfig_out.unlink()
    console.print("control plane stopped")
    return 0
