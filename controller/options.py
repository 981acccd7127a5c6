"""Command-line options of ``machinepool-controller run``, parsed and checked.

Durations accept Go's notation as Kubernetes controllers do (``15s``, ``10m``, ``1h30m``,
``500ms``) or plain seconds. ``--namespace`` takes a comma-separated list and may be
repeated (``--namespace a,b`` is ``--namespace a --namespace b``); none, or only empty values,
means every namespace; each name must be a DNS-1123 label. Every check failure raises
:class:`OptionError` with a message naming the flag, which the CLI prints as one line with
exit status 2.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.api.duration import parse_go_duration
from controller.api.labels import WATCH_FILTER_LABEL
from controller.infrastructure.reconciler import DEFAULT_MAX_REPLICAS
from controller.runtime.featuregates import FeatureGate, FeatureGateError, FeatureGates, resolve
from controller.runtime.server import parse_bind_address

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: A namespace name: a DNS-1123 label (at most 63 characters, checked apart).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


#: The parts ``--controllers`` can select: ``machinepool`` is the core half (the MachinePool,
#: Machine and MachineHealthCheck controllers); each cloud is named by itself and runs the
#: infrastructure controller of its infra kind (``inmemory``: InMemoryMachinePool, ``aws``:
#: AWSMachinePool).
CONTROLLERS = ("machinepool", "inmemory", "aws")
#: Old spellings still accepted, with a deprecation warning at start: name -> new name.
DEPRECATED_CONTROLLERS = {"infrastructure": "inmemory"}
#: What runs without ``--controllers`` (AWS needs a region and credentials: opt-in).
DEFAULT_CONTROLLERS = ("machinepool", "inmemory")


#: Feature gates ``--feature-gates`` knows, as Cluster API's: ``MachinePool`` (Beta, on by
#: default), also set by ``EXP_MACHINE_POOL`` when the flag does not name it (flag wins).
FEATURE_GATES: Mapping[str, FeatureGate] = {
    "MachinePool": FeatureGate(default=True, stage="Beta", env="EXP_MACHINE_POOL"),
}
MACHINE_POOL_GATE = "MachinePool"
#: What ``--watch-filter`` accepts: a label value.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def default_feature_gates() -> FeatureGates:
    """Every gate at its default (ignores the environment)."""
    return resolve(known=FEATURE_GATES, flag="", environ={})


class OptionError(ValueError):
    """A flag has a value we cannot use."""


def parse_duration(value: str) -> float:
    """``"1h30m"`` → 5400.0; ``"2.5"`` → 2.5 seconds. Raises ValueError when malformed."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a duration (examples: 30s, 10m, 1h30m, 500ms)"
        ) from None


def _bool(value: str) -> bool:
    """Go's flag booleans: ``--flag``, ``--flag=true``, ``--flag=false`` (and 1/0, t/f)."""
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class RunOptions:
    kubeconfig: Path | None
    #: The namespaces to watch, in the order given, without repeats; empty: all namespaces.
    namespaces: tuple[str, ...]
    concurrency: int
    reconcile_timeout: float
    sync_period: float
    leader_elect: bool
    leader_election_namespace: str | None
    leader_election_id: str
    lease_duration: float
    renew_deadline: float
    retry_period: float
    leader_elect_release_on_cancel: bool
    metrics_bind_address: str
    health_probe_bind_address: str
    graceful_shutdown_timeout: float
    log_format: str
    log_level: str
    controllers: tuple[str, ...] = DEFAULT_CONTROLLERS
    inmemory_endpoint: str | None = None
    inmemory_state_file: Path | None = None
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    aws_poll_interval: float = 60.0
    feature_gates: FeatureGates = field(default_factory=default_feature_gates)
    watch_filter: str | None = None
    metrics_secure: bool = True
    metrics_cert_path: Path | None = None
    allow_insecure_workload_kubeconfigs: bool = False
    max_replicas_per_pool: int = DEFAULT_MAX_REPLICAS

    @property
    def machine_pool_enabled(self) -> bool:
        """The ``MachinePool`` feature gate: off means no MachinePool is reconciled."""
        return self.feature_gates.enabled(MACHINE_POOL_GATE)

    def runs(self, name: str) -> bool:
        """True when ``--controllers`` selects ``name`` (one of :data:`CONTROLLERS`), under
        its name or a deprecated spelling of it."""
        return any(DEPRECATED_CONTROLLERS.get(c, c) == name for c in self.controllers)

    def controller_deprecations(self) -> list[str]:
        """One warning per deprecated ``--controllers`` spelling given (logged at start)."""
        return [
            f"--controllers {old} is deprecated; use {DEPRECATED_CONTROLLERS[old]}"
            for old in dict.fromkeys(self.controllers)
            if old in DEPRECATED_CONTROLLERS
        ]

    def label_selector(self) -> str | None:
        """The label selector ``--watch-filter`` puts on the informers of our own objects."""
        return f"{WATCH_FILTER_LABEL}={self.watch_filter}" if self.watch_filter else None

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, *, environ: Mapping[str, str] | None = None
    ) -> RunOptions:
        try:
            gates = resolve(
                known=FEATURE_GATES,
                flag=args.feature_gates,
                environ=os.environ if environ is None else environ,
            )
        except FeatureGateError as exc:
            raise OptionError(str(exc)) from None
        options = cls(
            kubeconfig=args.kubeconfig,
            namespaces=parse_namespaces(args.namespace or ()),
            concurrency=args.concurrency,
            reconcile_timeout=args.reconcile_timeout,
            sync_period=args.sync_period,
            leader_elect=args.leader_elect,
            leader_election_namespace=args.leader_election_namespace,
            leader_election_id=args.leader_election_id,
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
            leader_elect_release_on_cancel=args.leader_elect_release_on_cancel,
            metrics_bind_address=args.metrics_bind_address,
            health_probe_bind_address=args.health_probe_bind_address,
            graceful_shutdown_timeout=args.graceful_shutdown_timeout,
            log_format=args.log_format,
            log_level=args.log_level,
            controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
            inmemory_endpoint=args.inmemory_endpoint or None,
            inmemory_state_file=args.inmemory_state_file,
            aws_region=args.aws_region
            or (os.environ if environ is None else environ).get("AWS_REGION")
            or None,
            aws_endpoint_url=args.aws_endpoint_url or None,
            aws_poll_interval=args.aws_poll_interval,
            feature_gates=gates,
            watch_filter=args.watch_filter or None,
            metrics_secure=args.metrics_secure,
            metrics_cert_path=args.metrics_cert_path,
            allow_insecure_workload_kubeconfigs=args.allow_insecure_workload_kubeconfigs,
            max_replicas_per_pool=args.max_replicas_per_pool,
        )
        options.check()
        return options

    def check(self) -> None:
        for name in self.namespaces:
            if not (len(name) <= 63 and _DNS1123_LABEL.match(name)):
                raise OptionError(
                    f"--namespace {name!r} is not a valid namespace name (at most 63 lowercase "
                    "letters, digits or '-', starting and ending with a letter or digit)"
                )
        unknown = sorted(set(self.controllers) - set(CONTROLLERS) - set(DEPRECATED_CONTROLLERS))
        if unknown or not self.controllers:
            raise OptionError(
                f"--controllers: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(CONTROLLERS)}"
            )
        if self.watch_filter is not None and not (
            len(self.watch_filter) <= 63 and _LABEL_VALUE.match(self.watch_filter)
        ):
            raise OptionError(f"--watch-filter {self.watch_filter!r} is not a valid label value")
        if self.concurrency < 1:
            raise OptionError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_replicas_per_pool < 1:
            raise OptionError(
                f"--max-replicas-per-pool must be at least 1, got {self.max_replicas_per_pool}"
            )
        for flag, value in (
            ("--reconcile-timeout", self.reconcile_timeout),
            ("--sync-period", self.sync_period),
            ("--graceful-shutdown-timeout", self.graceful_shutdown_timeout),
        ):
            if value <= 0:
                raise OptionError(f"{flag} must be positive, got {value:g}s")
        for flag, address in (
            ("--metrics-bind-address", self.metrics_bind_address),
            ("--health-probe-bind-address", self.health_probe_bind_address),
        ):
            try:
                parse_bind_address(address)
            except ValueError as exc:
                raise OptionError(f"{flag}: {exc}") from None
        if self.metrics_cert_path is not None:
            if not self.metrics_secure:
                raise OptionError("--metrics-cert-path needs --metrics-secure (plain HTTP has no "
                                  "certificate)")  # fmt: skip
            missing = [f for f in ("tls.crt", "tls.key")
                       if not (self.metrics_cert_path / f).is_file()]  # fmt: skip
            if missing:
                raise OptionError(
                    f"--metrics-cert-path {self.metrics_cert_path}: no {' or '.join(missing)}"
                )
        if self.inmemory_endpoint and not re.match(r"^https?://", self.inmemory_endpoint):
            raise OptionError(
                f"--inmemory-endpoint {self.inmemory_endpoint!r} is not an http(s):// URL"
            )
        if self.runs("aws") and not self.aws_region:
            raise OptionError("--controllers aws needs --aws-region (or AWS_REGION)")
        if self.aws_endpoint_url and not re.match(r"^https?://", self.aws_endpoint_url):
            raise OptionError(f"--aws-endpoint-url {self.aws_endpoint_url!r} is not a URL")
        if self.aws_poll_interval <= 0:
            raise OptionError(
                f"--aws-poll-interval must be positive, got {self.aws_poll_interval:g}s"
            )
        if self.kubeconfig is not None and not self.kubeconfig.is_file():
            raise OptionError(f"--kubeconfig {self.kubeconfig}: no such file")
        if self.leader_elect:
            if not _DNS1123.match(self.leader_election_id):
                raise OptionError(
                    f"--leader-election-id {self.leader_election_id!r} is not a valid Lease name"
                )
            if not (self.lease_duration > self.renew_deadline > 1.2 * self.retry_period > 0):
                raise OptionError(
                    "leader election timings must satisfy lease-duration > renew-deadline > "
                    f"1.2 x retry-period > 0 (got {self.lease_duration:g}s, "
                    f"{self.renew_deadline:g}s, {self.retry_period:g}s)"
                )


def parse_namespaces(values: Sequence[str]) -> tuple[str, ...]:
    """The namespaces of every ``--namespace`` value (each comma-separated), first occurrence
    first, repeats dropped. An empty value adds nothing; an empty name inside a list
    (``a,,b`` or ``a,``) raises :class:`OptionError`. Names are checked by
    :meth:`RunOptions.check`."""
    names: list[str] = []
    for value in values:
        if not value.strip():
            continue
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise OptionError(f"--namespace {value!r}: empty namespace name in the list")
            if name not in names:
                names.append(name)
    return tuple(names)


def in_cluster_namespace() -> str | None:
    """The pod's namespace when running in a cluster (from the service account mount)."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or None
    except OSError:
        return os.environ.get("POD_NAMESPACE") or None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run``, named as controller-runtime based controllers name them."""
    add = parser.add_argument
    add(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig of the management cluster (default: $KUBECONFIG, else in-cluster)",
    )
    add(
        "--namespace",
        action="append",
        default=None,
        help="only watch these namespaces: comma-separated, or repeat the flag "
        "(default: all namespaces)",
    )
    add(
        "--watch-filter",
        default="",
        help=f"only reconcile objects labelled {WATCH_FILTER_LABEL}=VALUE (default: all objects)",
    )
    add(
        "--allow-insecure-workload-kubeconfigs",
        action="store_true",
        help="accept workload kubeconfigs with insecure-skip-tls-verify: true (default: refused, "
        "the cluster gets reason UnsupportedKubeconfig)",
    )
    add(
        "--feature-gates",
        default="",
        help="Name=true|false pairs, comma-separated; known: MachinePool (Beta, default true; "
        "$EXP_MACHINE_POOL sets it when this flag does not)",
    )
    add(
        "--concurrency",
        type=int,
        default=10,
        help="reconciles run in parallel per controller (default: 10)",
    )
    add(
        "--reconcile-timeout",
        type=_duration,
        default=60.0,
        help="cancel and retry a reconcile that runs longer than this (default: 1m)",
    )
    add(
        "--sync-period",
        type=_duration,
        default=10 * 3600.0,
        help="re-reconcile every object this often even without changes (default: 10h)",
    )
    add(
        "--leader-elect",
        action="store_true",
        help="elect a leader on a Lease so only one replica reconciles",
    )
    add(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease (default: the pod's namespace)",
    )
    add(
        "--leader-election-id",
        default="machinepool-controller-leader-election",
        help="name of the Lease (default: machinepool-controller-leader-election)",
    )
    add(
        "--leader-elect-lease-duration",
        type=_duration,
        default=15.0,
        help="how long standbys wait before taking over an unrenewed lease (default: 15s)",
    )
    add(
        "--leader-elect-renew-deadline",
        type=_duration,
        default=10.0,
        help="how long the leader retries renewing before giving up (default: 10s)",
    )
    add(
        "--leader-elect-retry-period",
        type=_duration,
        default=2.0,
        help="how often to try to acquire or renew the lease (default: 2s)",
    )
    add(
        "--leader-elect-release-on-cancel",
        action="store_true",
        help="release the lease on clean shutdown so a standby takes over at once",
    )
    add(
        "--metrics-bind-address",
        default=":8080",
        help="address for /metrics, or 0 to disable (default: :8080)",
    )
    add(
        "--metrics-secure",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="true|false",
        help="serve /metrics over HTTPS, only to callers whose bearer token the API server "
        "authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview); "
        "false: plain HTTP, open to anyone who reaches the port (default: true)",
    )
    add(
        "--metrics-cert-path",
        type=Path,
        default=None,
        help="directory with tls.crt and tls.key for /metrics, reloaded when they change "
        "(default: a self-signed certificate made at start)",
    )
    add(
        "--health-probe-bind-address",
        default=":8081",
        help="address for /healthz and /readyz, or 0 to disable (default: :8081)",
    )
    add(
        "--graceful-shutdown-timeout",
        type=_duration,
        default=30.0,
        help="how long in-flight reconciles may run after SIGTERM (default: 30s)",
    )
    add(
        "--log-format",
        choices=("json", "console"),
        default="json",
        help="log format (default: json)",
    )
    add(
        "--controllers",
        default=",".join(DEFAULT_CONTROLLERS),
        help=f"comma-separated reconcilers to run, of {','.join(CONTROLLERS)} "
        f"(default: {','.join(DEFAULT_CONTROLLERS)})",
    )
    add(
        "--aws-region",
        default="",
        help="AWS region of the AWSMachinePools' Auto Scaling groups (default: $AWS_REGION)",
    )
    add(
        "--aws-endpoint-url",
        default="",
        help="send AWS calls here instead of AWS (a local emulator such as moto)",
    )
    add(
        "--aws-poll-interval",
        type=_duration,
        default=60.0,
        help="how often a converged AWSMachinePool is compared with its group; also the "
        "lifetime of the batched DescribeAutoScalingGroups cache (default: 1m)",
    )
    add(
        "--max-replicas-per-pool",
        type=int,
        default=DEFAULT_MAX_REPLICAS,
        help="the largest spec.replicas (and minSize) of a pool whose provider sets no maxSize "
        "(an InMemoryMachinePool without one); above it the pool is refused with "
        f"Ready=False ReplicasOutOfRange before any cloud call (default: {DEFAULT_MAX_REPLICAS})",
    )
    add(
        "--inmemory-endpoint",
        default="",
        help="URL of a `machinepool-controller simulator` serving InMemoryMachinePools "
        "(default: run the simulator inside this process)",
    )
    add(
        "--inmemory-state-file",
        type=Path,
        default=None,
        help="where the in-process simulator keeps its state across restarts (default: memory)",
    )
    add(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level (default: info)",
    )
