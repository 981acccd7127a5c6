"""Where the kube-apiserver and etcd binaries come from.

Order: ``KUBEBUILDER_ASSETS`` (what setup-envtest and ``make envtest`` print), then the cache
directory that ``hack/envtest/build.sh`` fills for the pinned versions. Nothing is built or
downloaded here: building is the Makefile's job, so a test run never starts a 15-minute
compile by surprise.

Failure: :class:`ControlPlaneError` naming the directory searched and how to fill it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from controller.testing.errors import ControlPlaneError

#: The versions ``hack/envtest/versions.env`` pins; kept in step by a test.
KUBE_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"


@dataclass(frozen=True, slots=True)
class Assets:
    """Paths of the control plane binaries."""

    kube_apiserver: Path
    etcd: Path


def default_cache_dir() -> Path:
    """The directory ``hack/envtest/build.sh`` writes the pinned binaries to."""
    override = os.environ.get("MPC_ENVTEST_CACHE")
    if override:
        root = Path(override)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        root = base / "machinepool-controller" / "envtest"
    return root / f"kube-{KUBE_VERSION}_etcd-{ETCD_VERSION}"


def find_assets(directory: Path | None = None) -> Assets:
    """Locate kube-apiserver and etcd, or raise :class:`ControlPlaneError` saying how."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if directory is not None:
        where, source = directory, "the given assets directory"
    elif env:
        where, source = Path(env), "KUBEBUILDER_ASSETS"
    else:
        where, source = default_cache_dir(), "the envtest cache"
    missing = [name for name in ("kube-apiserver", "etcd") if not os.access(where / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"{' and '.join(missing)} not found in {source} ({where}); "
            "run `make envtest` to build them, or set KUBEBUILDER_ASSETS to a directory "
            "holding kube-apiserver and etcd"
        )
    return Assets(kube_apiserver=where / "kube-apiserver", etcd=where / "etcd")
