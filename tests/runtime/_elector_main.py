"""A leader-election candidate in a process of its own, driven by test_leaderelection.py.

    python -m tests.runtime._elector_main --kubeconfig K --namespace N --name LEASE \\
        --identity ID [--lease-duration S --renew-deadline S --retry-period S] \\
        [--release-on-cancel]

It prints one fact a line on stdout, flushed: ``<WORD> <identity> <time.monotonic()>
[detail]``. ``CLOCK_MONOTONIC`` is system-wide, so the test compares the times across
processes. Words:

- ``READY``: the elector is about to campaign.
- ``OBSERVED <holder|->``: the holder this elector has observed changed.
- ``LEADING``: ``on_started_leading`` began; ``HEARTBEAT`` every 0.1 s while it runs.
- ``STOPPED``: the leading task was cancelled (printed before any release of the Lease).
- ``LOST``: ``run()`` raised ``LeadershipLost``; the process exits 1.
- ``DONE``: SIGTERM/SIGINT stopped the elector cleanly; the process exits 0.

Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from kubernetes_asyncio import config
from prometheus_client import CollectorRegistry

from controller.runtime.kube import KubeClient, RestMetrics
from controller.runtime.leaderelection import LeaderElector, LeadershipLost
from controller.runtime.logging import configure_logging
from controller.runtime.signals import shutdown_on_signals


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.runtime._elector_main")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--lease-duration", type=float, default=3.0)
    parser.add_argument("--renew-deadline", type=float, default=2.0)
    parser.add_argument("--retry-period", type=float, default=0.5)
    parser.add_argument("--release-on-cancel", action="store_true")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    identity: str = args.identity

    def say(word: str, detail: str = "") -> None:
        print(f"{word} {identity} {time.monotonic():.6f} {detail}".rstrip(), flush=True)

    api = await config.new_client_from_config(config_file=args.kubeconfig)
    async with api:
        elector = LeaderElector(
            kube=KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry())),
            namespace=args.namespace,
            name=args.name,
            identity=identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            release_on_cancel=args.release_on_cancel,
            registry=CollectorRegistry(),
        )

        async def lead() -> None:
            say("LEADING")
            try:
                while True:
                    say("HEARTBEAT")
                    await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                say("STOPPED")
                raise

        async def report_observed() -> None:
            last: str | None = None
            while True:
                if elector.leader_identity != last:
                    last = elector.leader_identity
                    say("OBSERVED", last or "-")
                await asyncio.sleep(0.02)

        async with shutdown_on_signals() as shutdown:
            say("READY")
            running = asyncio.create_task(elector.run(on_started_leading=lead))
            observer = asyncio.create_task(report_observed())
            stop = asyncio.create_task(shutdown.wait())
            try:
                await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                observer.cancel()
                stop.cancel()
                running.cancel()
                await asyncio.wait({running, observer, stop})
        try:
            running.result()
        except asyncio.CancelledError:
            say("DONE")
            return 0
        except LeadershipLost as exc:
            say("LOST", str(exc).replace("\n", " "))
            return 1
        say("DONE")
        return 0


def main() -> None:
    args = _parse(sys.argv[1:])
    configure_logging(fmt="console", level="info")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
