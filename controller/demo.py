"""``make demo``: a local control plane with a MachinePool in it, shown on the terminal.

Starts :class:`controller.testing.ControlPlane` (real etcd + kube-apiserver with our CRDs),
applies ``examples/inmemory-machinepool.yaml`` (a Cluster, a bootstrap Secret, an
InMemoryMachinePool and a MachinePool, written exactly as for Cluster API), reads the
MachinePool back and prints it. With ``--keep`` it leaves the control plane running until
Ctrl-C and prints the ``KUBECONFIG`` line for kubectl.

The demo grows with the product: once the reconciler exists it runs the controller and shows
the pool converging and scaling.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from controller.api.kinds import ALL_KINDS
from controller.runtime.kube import SECRETS, KubeClient, ResourceLike, RestMetrics
from controller.runtime.signals import shutdown_on_signals
from controller.testing import ControlPlane

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "inmemory-machinepool.yaml"
KUBECONFIG_OUT = Path("demo.kubeconfig")


def _resources() -> dict[tuple[str, str], ResourceLike]:
    found: dict[tuple[str, str], ResourceLike] = {(k.api_version, k.kind): k for k in ALL_KINDS}
    found[(SECRETS.api_version, SECRETS.kind)] = SECRETS
    return found


async def apply_manifest(*, kube: KubeClient, path: Path, namespace: str) -> list[dict[str, Any]]:
    """Server-side apply every document of ``path`` into ``namespace``; returns the results."""
    resources = _resources()
    applied = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        resource = resources[(doc["apiVersion"], doc["kind"])]
        name = doc["metadata"]["name"]
        doc["metadata"].setdefault("namespace", namespace)
        applied.append(await kube.apply(resource, namespace=namespace, name=name, body=doc))
    return applied


async def run_demo(*, keep: bool) -> int:
    console = Console()
    if not EXAMPLE.is_file():
        console.print(f"[red]the example manifest {EXAMPLE} is missing; run the demo from a clone")
        return 1
    async with shutdown_on_signals() as shutdown, contextlib.AsyncExitStack() as stack:
        with console.status("starting a local control plane (etcd + kube-apiserver) ..."):
            cp = await stack.enter_async_context(ControlPlane())
        console.print(f"[green]control plane ready[/] in {cp.start_seconds:.1f}s at {cp.server}")
        async with cp.api_client() as api:
            kube = KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))
            applied = await apply_manifest(kube=kube, path=EXAMPLE, namespace="default")
            table = Table(title=f"applied {EXAMPLE.name}")
            for column in ("kind", "name", "details"):
                table.add_column(column)
            for obj in applied:
                spec = obj.get("spec", {})
                details = ""
                if obj["kind"] == "MachinePool":
                    details = (
                        f"replicas={spec.get('replicas')} cluster={spec.get('clusterName')} "
                        f"infra={spec['template']['spec']['infrastructureRef']['kind']}"
                    )
                table.add_row(obj["kind"], obj["metadata"]["name"], details)
            console.print(table)
            pool = next(o for o in applied if o["kind"] == "MachinePool")
            console.print(yaml.safe_dump({"spec": pool["spec"]}, sort_keys=False))
        if keep:
            shutil.copyfile(cp.kubeconfig_path, KUBECONFIG_OUT)
            console.print(
                f"export KUBECONFIG={KUBECONFIG_OUT.resolve()}\n"
                "kubectl get mp,machines,inmemorymachinepools\n"
                "Press Ctrl-C to stop."
            )
            await shutdown.wait()
            KUBECONFIG_OUT.unlink(missing_ok=True)
    console.print("[green]demo finished[/]")
    return 0
