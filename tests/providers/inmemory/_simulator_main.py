"""The simulator as a process of its own, driven by test_process.py.

    python -m tests.providers.inmemory._simulator_main LISTEN [STATE_FILE]

Runs :func:`controller.providers.inmemory.process.run_simulator` (as the CLI's ``simulator``
command will) with logs on stderr, and exits with its status.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from controller.providers.inmemory.process import run_simulator
from controller.runtime.logging import configure_logging


def main() -> int:
    configure_logging(fmt="console", level="info")
    listen = sys.argv[1]
    state_file = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    return asyncio.run(run_simulator(listen=listen, state_file=state_file, kubeconfig=None))


if __name__ == "__main__":
    sys.exit(main())
