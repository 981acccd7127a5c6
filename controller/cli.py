"""The ``machinepool-controller`` command line: one sub-command per job.

- ``crds``: print (or write) the CRDs generated from the API models.
- ``local-cluster``: a real local control plane in the foreground until SIGINT/SIGTERM.
- ``demo``: start a local control plane and show a MachinePool (grows with the product).
- ``version``: print the version.

Failure: every expected failure (a bad flag, a control plane that cannot start) is one line
on stderr prefixed ``machinepool-controller: error:`` and a non-zero exit status; tracebacks
are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

PROG = "machinepool-controller"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus a pointer to --help), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """A problem with what the user asked for; reported as one line, exit status 2."""


def _version() -> str:
    try:
        return metadata.version("machinepool-controller")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"{PROG} {_version()}")
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from controller.api.crdgen import render_crds_yaml, write_crds

    if args.output_dir is not None:
        for path in write_crds(output_dir=args.output_dir):
            print(path)
        return 0
    rendered = render_crds_yaml()
    sys.stdout.write("---\n".join(rendered[name] for name in sorted(rendered)))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.app import run_controller
    from controller.options import OptionError, RunOptions
    from controller.runtime.logging import configure_logging

    try:
        options = RunOptions.from_args(args)
    except OptionError as exc:
        raise UsageError(str(exc)) from exc
    configure_logging(fmt=options.log_format, level=options.log_level)  # type: ignore[arg-type]
    return _run_async(lambda: run_controller(options))


def _cmd_simulator(args: argparse.Namespace) -> int:
    from controller.providers.inmemory.process import run_simulator

    return _run_async(
        lambda: run_simulator(
            listen=args.listen, state_file=args.state_file, kubeconfig=args.kubeconfig
        )
    )


def _cmd_local_cluster(args: argparse.Namespace) -> int:
    from controller.local_cluster import run_local_cluster

    return _run_async(lambda: run_local_cluster(kubeconfig_out=args.kubeconfig_out))


def _cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    return _run_async(lambda: run_demo(keep=args.keep, short=args.short))


def _run_async(factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(factory())


def build_parser() -> argparse.ArgumentParser:
    from controller.options import add_run_arguments

    parser = _Parser(
        prog=PROG, description="Cluster API's MachinePool feature as an asyncio controller."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("run", help="run the controller against a management cluster")
    add_run_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "simulator", help="run the in-memory cloud simulator as its own process (HTTP API)"
    )
    p.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT (default: %(default)s)")
    p.add_argument(
        "--state-file", type=Path, default=None,
        help="keep the simulated cloud here across restarts (default: memory only)",
    )  # fmt: skip
    p.add_argument(
        "--kubeconfig", type=Path, default=None,
        help="management cluster, to find <cluster>-kubeconfig Secrets and register Nodes "
        "(default: $KUBECONFIG, else in-cluster, else no Nodes)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_simulator)

    p = sub.add_parser("crds", help="print the CRDs generated from the API models")
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write one YAML file per CRD into this directory instead of printing",
    )
    p.set_defaults(func=_cmd_crds)

    p = sub.add_parser(
        "local-cluster",
        help="run a real local control plane (etcd + kube-apiserver) until SIGINT/SIGTERM",
    )
    p.add_argument(
        "--kubeconfig-out",
        type=Path,
        required=True,
        help="where to write the admin kubeconfig (overwritten)",
    )
    p.set_defaults(func=_cmd_local_cluster)

    p = sub.add_parser("demo", help="start a local control plane and show a MachinePool")
    p.add_argument(
        "--keep", action="store_true", help="keep the control plane running until Ctrl-C"
    )
    p.add_argument("--short", action="store_true", help="no boot or ready delays (what CI runs)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    from controller.app import StartupError
    from controller.runtime.logging import configure_logging
    from controller.testing.errors import ControlPlaneError

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(fmt="console", level="info")
    try:
        code = args.func(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = 2
    except (ControlPlaneError, StartupError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
