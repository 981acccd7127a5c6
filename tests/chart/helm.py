"""Helpers for the chart tests: helm (built from its Go module by ``hack/helm/build.sh``),
rendering the chart to documents, and kubectl against the local control plane.

Every tool runs as a subprocess with its own HOME-like directories, so a developer's helm
repositories or kubeconfig never leak into a test; each call has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "machinepool-controller"
HELM_BUILD = ROOT / "hack" / "helm" / "build.sh"
KUBECTL = Path(sys.executable).parent / "kubectl"
#: The API server the tests run against (hack/envtest/versions.env).
KUBE_VERSION = "1.35.4"
MONITORING = "monitoring.coreos.com/v1"


@dataclass(frozen=True, slots=True)
class Completed:
    code: int
    out: str
    err: str


async def run_tool(
    *args: str | Path, env: Mapping[str, str] | None = None, stdin: str | None = None,
    timeout: float = 120,
) -> Completed:  # fmt: skip
    """Run a command to completion; it is killed if it outlives ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        *(str(a) for a in args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Completed(code=proc.returncode, out=out.decode(), err=err.decode())


@dataclass(frozen=True, slots=True)
class Helm:
    """The helm binary with a private home (config, cache and data directories)."""

    binary: Path
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }

    async def run(self, *args: str | Path, timeout: float = 120) -> Completed:
        return await run_tool(self.binary, *args, env=self.env, timeout=timeout)

    async def template(
        self,
        *,
        values: Mapping[str, Any] | None = None,
        namespace: str = "mpc-system",
        release: str = "mpc",
        api_versions: Sequence[str] = (),
        include_crds: bool = False,
    ) -> Completed:
        """``helm template`` of the chart; the values go in as a file, as a user's would."""
        values_file = self.home / f"values-{os.getpid()}-{id(values)}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values or {})))
        args: list[str | Path] = [
            "template", release, CHART, "--namespace", namespace, "-f", values_file,
            "--kube-version", KUBE_VERSION,
        ]  # fmt: skip
        for api in api_versions:
            args += ["--api-versions", api]
        if include_crds:
            args.append("--include-crds")
        try:
            return await self.run(*args)
        finally:
            values_file.unlink(missing_ok=True)

    async def render(self, **kwargs: Any) -> list[dict[str, Any]]:
        """The rendered documents; fails the test with helm's message when rendering fails."""
        done = await self.template(**kwargs)
        assert done.code == 0, done.err
        return [d for d in yaml.safe_load_all(done.out) if d]


async def build_helm() -> Path:
    """The helm binary (built once per version, cached outside the repository)."""
    done = await run_tool("bash", HELM_BUILD, timeout=1200)
    if done.code != 0:
        raise RuntimeError(f"hack/helm/build.sh failed: {done.err.strip()}")
    return Path(done.out.strip().splitlines()[-1])


def find(docs: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered document of ``kind`` (and ``name``)."""
    found = [
        d for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]  # fmt: skip
    assert len(found) == 1, f"{len(found)} documents of kind {kind} {name or ''}"
    return dict(found[0])


def kinds(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(str(d["kind"]) for d in docs)


async def kubectl(
    *args: str | Path, kubeconfig: str | Path, stdin: str | None = None, timeout: float = 60
) -> Completed:
    return await run_tool(KUBECTL, "--kubeconfig", kubeconfig, *args, stdin=stdin, timeout=timeout)


def to_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([json.loads(json.dumps(d)) for d in docs])
