"""A real local Kubernetes control plane (etcd + kube-apiserver) for tests, demos and benchmarks.

Public surface::

    async with ControlPlane(crd_dir=...) as cp:
        async with cp.api_client() as api:
            ...

Everything the control plane starts is stopped when the context exits, also when the body
fails or is cancelled. Start-up failures raise :class:`ControlPlaneError` with one line that
names the cause.
"""

from controller.testing.assets import find_assets
from controller.testing.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError", "find_assets"]
