"""Loopback ports for the control plane's listeners.

A port is free when we can bind it; the kernel hands out an unused one for port 0. There is
a window between our check and the child's bind, so the caller also maps an "address already
in use" exit of the child to the same clear error.
"""

from __future__ import annotations

import socket

from controller.testing.errors import ControlPlaneError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_free(*, port: int, purpose: str) -> None:
    """Raise :class:`ControlPlaneError` when ``port`` on 127.0.0.1 is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise ControlPlaneError(
                f"port {port} on {LOOPBACK} (wanted for {purpose}) is already in use"
            ) from exc
