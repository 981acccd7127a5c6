"""Leader election against the real API server.

Short timings (lease 3 s, renew deadline 2 s, retry 0.5 s) keep real lease expiry - the
behaviour under test - inside a few seconds. Candidates that must survive a SIGKILL run in
processes of their own (``tests/runtime/_elector_main.py``); they print what they do with
``time.monotonic()`` stamps (one system-wide clock), from which the test rebuilds every
process's leading intervals and checks that no two overlap and that each agrees with the
Lease sampled throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypedDict

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.kube import LEASES, ApiError, KubeClient, RestMetrics
from controller.runtime.leaderelection import JITTER_FACTOR, LeaderElector, LeadershipLost
from controller.runtime.store import Obj

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5


class Timings(TypedDict, total=False):
    lease_duration: float
    renew_deadline: float
    retry_period: float


TIMINGS: Timings = {"lease_duration": LEASE, "renew_deadline": RENEW, "retry_period": RETRY}
#: The longest a candidate sleeps between two attempts.
MAX_RETRY_SLEEP = RETRY * (1 + JITTER_FACTOR)
REPO = Path(__file__).resolve().parents[2]


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


def _status(registry: CollectorRegistry, name: str) -> float | None:
    value: float | None = registry.get_sample_value("leader_election_master_status", {"name": name})
    return value


async def _eventually(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def _read_lease(kube: KubeClient, *, namespace: str, name: str) -> Obj:
    return await kube.get(LEASES, name=name, namespace=namespace)


def _parse_micro_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass
class Leading:
    """A stand-in for the controllers: records when it ran and how it ended."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_at: float | None = None

    async def __call__(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled_at = time.monotonic()
            raise


@contextlib.asynccontextmanager
async def running(elector: LeaderElector, leading: Leading) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(elector.run(on_started_leading=leading))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await task


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ({"lease_duration": 10.0, "renew_deadline": 10.0}, "lease_duration .* greater than"),
        ({"lease_duration": 5.0, "renew_deadline": 10.0}, "lease_duration .* greater than"),
        ({"renew_deadline": 2.4, "retry_period": 2.0}, r"renew_deadline .* 1.2 \* retry_period"),
        ({"retry_period": 0.0}, "retry_period must be a finite number > 0"),
        ({"renew_deadline": -1.0}, "renew_deadline must be a finite number > 0"),
        ({"lease_duration": math.nan}, "lease_duration must be a finite number > 0"),
        ({"lease_duration": math.inf}, "lease_duration must be a finite number > 0"),
    ],
)
async def test_config_is_validated(
    api_client: client.ApiClient, timings: Timings, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LeaderElector(
            kube=_kube(api_client),
            namespace="default",
            name="x",
            registry=CollectorRegistry(),
            **timings,
        )


async def test_defaults_and_identity(api_client: client.ApiClient) -> None:
    elector = LeaderElector(
        kube=_kube(api_client), namespace="default", name="x", registry=CollectorRegistry()
    )
    assert (elector.lease_duration, elector.renew_deadline, elector.retry_period) == (15, 10, 2)
    host, _, suffix = elector.identity.rpartition("_")
    assert host
    assert len(suffix) == 36  # a uuid4
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(
            kube=_kube(api_client),
            namespace="default",
            name="x",
            identity="",
            registry=CollectorRegistry(),
        )


# -------------------------------------------------------------- in process


async def test_one_of_two_leads_and_the_lease_says_so(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    a = LeaderElector(
        kube=kube,
        namespace=namespace,
        name="pair",
        identity="a",
        registry=CollectorRegistry(),
        **TIMINGS,
    )
    b = LeaderElector(
        kube=kube,
        namespace=namespace,
        name="pair",
        identity="b",
        registry=CollectorRegistry(),
        **TIMINGS,
    )
    work_a, work_b = Leading(), Leading()
    async with running(a, work_a), running(b, work_b):
        await _eventually(lambda: a.is_leader or b.is_leader, timeout=10, what="a leader")
        leader, other = (a, b) if a.is_leader else (b, a)
        await _eventually(
            lambda: other.leader_identity == leader.identity,
            timeout=5,
            what="the standby to observe the leader",
        )
        first = await _read_lease(kube, namespace=namespace, name="pair")
        # Several renewals: the leader stays, the standby stays out.
        deadline = time.monotonic() + 3 * RETRY
        while time.monotonic() < deadline:
            assert leader.is_leader
            assert not other.is_leader
            assert not (a.is_leader and b.is_leader)
            await asyncio.sleep(0.05)
        lease = await _read_lease(kube, namespace=namespace, name="pair")

    assert leader.acquired.is_set()
    assert not other.acquired.is_set()
    assert (work_a if leader is a else work_b).started.is_set()
    assert not (work_b if leader is a else work_a).started.is_set()
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    spec = lease["spec"]
    assert spec["holderIdentity"] == leader.identity
    assert spec["leaseDurationSeconds"] == 3
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == first["spec"]["acquireTime"]
    assert _parse_micro_time(spec["renewTime"]) > _parse_micro_time(first["spec"]["renewTime"])
    assert _parse_micro_time(spec["acquireTime"]) <= _parse_micro_time(spec["renewTime"])


async def test_release_on_cancel_hands_over_at_once(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    # A long lease, so a hand-over well before it would expire is clearly the release.
    timings: Timings = {"lease_duration": 8.0, "renew_deadline": 4.0, "retry_period": RETRY}
    a = LeaderElector(
        kube=kube,
        namespace=namespace,
        name="handover",
        identity="a",
        release_on_cancel=True,
        registry=CollectorRegistry(),
        **timings,
    )
    b = LeaderElector(
        kube=kube,
        namespace=namespace,
        name="handover",
        identity="b",
        registry=CollectorRegistry(),
        **timings,
    )
    work_a, work_b = Leading(), Leading()
    async with running(a, work_a) as task_a:
        await asyncio.wait_for(a.acquired.wait(), timeout=10)
        async with running(b, work_b):
            await _eventually(lambda: b.leader_identity == "a", timeout=5, what="b to see a")
            cancelled = time.monotonic()
            task_a.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task_a
            released = (await _read_lease(kube, namespace=namespace, name="handover"))["spec"]
            assert work_a.cancelled_at is not None
            assert not a.is_leader
            await asyncio.wait_for(b.acquired.wait(), timeout=8.0)
            handed_over = time.monotonic() - cancelled
            lease = (await _read_lease(kube, namespace=namespace, name="handover"))["spec"]

    # Either b was quicker than our read, or we see the released record.
    if released["holderIdentity"] != "b":
        assert released["holderIdentity"] == ""
        assert released["leaseDurationSeconds"] == 1
        assert released["leaseTransitions"] == 0
    assert handed_over < MAX_RETRY_SLEEP + 1.0 < 8.0
    assert lease["holderIdentity"] == "b"
    assert lease["leaseTransitions"] == 1


async def test_leader_whose_lease_is_taken_loses_at_once(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    registry = CollectorRegistry()
    elector = LeaderElector(
        kube=kube, namespace=namespace, name="taken", identity="a", registry=registry, **TIMINGS
    )
    assert _status(registry, "taken") == 0
    work = Leading()
    async with running(elector, work) as task:
        await asyncio.wait_for(elector.acquired.wait(), timeout=10)
        await asyncio.wait_for(work.started.wait(), timeout=1)
        assert _status(registry, "taken") == 1
        assert elector.is_leader
        assert elector.check() is None

        # Someone else deletes the Lease and recreates it as theirs.
        old = await _read_lease(kube, namespace=namespace, name="taken")
        spec = {**old["spec"], "holderIdentity": "intruder", "leaseTransitions": 7}
        while True:
            await kube.delete(LEASES, name="taken", namespace=namespace)
            try:
                await kube.create(
                    LEASES,
                    namespace=namespace,
                    body={
                        "apiVersion": LEASES.api_version,
                        "kind": LEASES.kind,
                        "metadata": {"name": "taken", "namespace": namespace},
                        "spec": spec,
                    },
                )
                break
            except ApiError as exc:  # the elector recreated it in between: again
                if not exc.conflict:
                    raise
        taken = time.monotonic()
        with pytest.raises(LeadershipLost, match="held by intruder"):
            await asyncio.wait_for(task, timeout=RENEW + 2)

    assert work.cancelled_at is not None
    assert work.cancelled_at - taken < RETRY + 1.0  # at the next renewal, not the deadline
    assert not elector.is_leader
    assert elector.leader_identity == "intruder"
    assert _status(registry, "taken") == 0
    lease = await _read_lease(kube, namespace=namespace, name="taken")
    assert lease["spec"]["holderIdentity"] == "intruder"


async def test_a_blocked_event_loop_does_not_lose_the_lease(
    api_client: client.ApiClient, namespace: str
) -> None:
    """The Lease is renewed on the elector's own thread and loop: a main loop busy for
    longer than the renew deadline and the lease (a huge reconcile, a slow callback) keeps
    its leadership, and its work runs on."""
    kube = _kube(api_client)
    registry = CollectorRegistry()
    elector = LeaderElector(
        kube=kube, namespace=namespace, name="busy", identity="a", registry=registry, **TIMINGS
    )
    work = Leading()
    async with running(elector, work) as task:
        await asyncio.wait_for(work.started.wait(), timeout=10)
        blocked_at = datetime.now(UTC)
        time.sleep(LEASE + 1.0)  # noqa: ASYNC251 - the point: the main loop is blocked
        lease = (await _read_lease(kube, namespace=namespace, name="busy"))["spec"]
        assert lease["holderIdentity"] == "a"
        # Renewed while the main loop was blocked, past the renew deadline.
        assert _parse_micro_time(lease["renewTime"]) > blocked_at + timedelta(seconds=RENEW)
        assert lease["leaseTransitions"] == 0
        assert elector.is_leader
        assert elector.check() is None
        assert _status(registry, "busy") == 1
        await asyncio.sleep(RETRY * 2)  # the old renew loop would now see its deadline passed
        assert not task.done()
        assert work.cancelled_at is None
        assert elector.is_leader


@dataclass
class Injected:
    failing: bool = False
    failures: int = 0


class FlakyKube(KubeClient):
    """Fails every PUT with 503 while ``injected.failing`` is set; counts the failures.

    The elector renews through a copy of this client bound to its lease thread's own loop;
    the copy shares ``injected``.
    """

    injected: Injected

    async def request(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if self.injected.failing and method == "PUT":
            self.injected.failures += 1
            raise ApiError(status=503, reason="ServiceUnavailable", message="injected")
        return await super().request(
            method=method, path=path, query=query, body=body, content_type=content_type
        )


async def test_leader_whose_renewals_fail_steps_down_at_the_deadline(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = FlakyKube(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    kube.injected = Injected()
    registry = CollectorRegistry()
    elector = LeaderElector(
        kube=kube, namespace=namespace, name="flaky", identity="a", registry=registry, **TIMINGS
    )
    work = Leading()
    seen: list[float | None] = [_status(registry, "flaky")]
    async with running(elector, work) as task:
        await asyncio.wait_for(elector.acquired.wait(), timeout=10)
        seen.append(_status(registry, "flaky"))
        kube.injected.failing = True
        failing_since = time.monotonic()
        with pytest.raises(LeadershipLost, match="renew deadline"):
            await asyncio.wait_for(task, timeout=RENEW + 2)
        seen.append(_status(registry, "flaky"))

    assert seen == [0, 1, 0]
    assert work.cancelled_at is not None
    stopped_after = work.cancelled_at - failing_since
    # The deadline counts from the start of the last good renewal, at most one retry period
    # (plus its request) before the failures began.
    assert RENEW - RETRY - 0.3 < stopped_after < RENEW + 0.3
    assert kube.injected.failures >= 3  # transient errors were retried until the deadline
    assert not elector.is_leader


# ------------------------------------------------------------ in processes


@dataclass
class Candidate:
    """One ``_elector_main`` process and what it printed."""

    identity: str
    proc: asyncio.subprocess.Process
    log: IO[bytes]
    lines: list[tuple[str, float, str]] = field(default_factory=list)
    killed_at: float | None = None
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            word, _identity, stamp, *detail = raw.decode().strip().split(maxsplit=3)
            self.lines.append((word, float(stamp), detail[0] if detail else ""))

    def said(self, word: str, detail: str | None = None) -> float | None:
        """When the process first said ``word`` (with ``detail``), or None."""
        for w, stamp, d in self.lines:
            if w == word and (detail is None or d == detail):
                return stamp
        return None

    def leading_intervals(self, *, now: float) -> list[tuple[float, float]]:
        intervals, start = [], None
        for word, stamp, _ in self.lines:
            if word == "LEADING":
                start = stamp
            elif word == "STOPPED" and start is not None:
                intervals.append((start, stamp))
                start = None
        if start is not None:
            intervals.append((start, self.killed_at or now))
        return intervals

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
            self.killed_at = time.monotonic()


Spawn = Callable[[str], Awaitable[Candidate]]


@pytest_asyncio.fixture(loop_scope="session")
async def spawn(kubeconfig_path: str, namespace: str, tmp_path: Path) -> AsyncIterator[Spawn]:
    # kubernetes_asyncio is ~1500 modules: compiled afresh (PYTHONDONTWRITEBYTECODE) that is
    # seconds of CPU per process. Compile once into a private cache the candidates share.
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    warm = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import tests.runtime._elector_main", cwd=REPO, env=env
    )
    assert await asyncio.wait_for(warm.wait(), timeout=60) == 0
    candidates: list[Candidate] = []

    async def start(identity: str) -> Candidate:
        log = (tmp_path / f"{identity}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.runtime._elector_main",
            "--kubeconfig",
            kubeconfig_path,
            "--namespace",
            namespace,
            "--name",
            "procs",
            "--identity",
            identity,
            "--lease-duration",
            str(LEASE),
            "--renew-deadline",
            str(RENEW),
            "--retry-period",
            str(RETRY),
            "--release-on-cancel",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        candidate = Candidate(identity=identity, proc=proc, log=log)
        candidate.reader = asyncio.create_task(candidate.read())
        candidates.append(candidate)
        return candidate

    try:
        yield start
    finally:
        for candidate in candidates:
            await candidate.kill()
            if candidate.reader is not None:
                candidate.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await candidate.reader
            candidate.log.close()


async def _sample_lease(
    kube: KubeClient, *, namespace: str, samples: list[tuple[float, float, str | None]]
) -> None:
    """Read the Lease every 50 ms: (monotonic before, after, holder)."""
    while True:
        before = time.monotonic()
        try:
            holder = (await _read_lease(kube, namespace=namespace, name="procs"))["spec"].get(
                "holderIdentity"
            )
        except ApiError as exc:
            if not exc.not_found:
                raise
            holder = None
        samples.append((before, time.monotonic(), holder))
        await asyncio.sleep(0.05)


async def test_killed_leader_is_replaced_and_leaders_never_overlap(
    api_client: client.ApiClient, namespace: str, spawn: Spawn
) -> None:
    kube = _kube(api_client)
    samples: list[tuple[float, float, str | None]] = []
    sampler = asyncio.create_task(_sample_lease(kube, namespace=namespace, samples=samples))
    try:
        # Python with kubernetes_asyncio takes seconds to start: start all three together.
        candidates = await asyncio.gather(*(spawn(f"proc-{x}") for x in "abc"))
        await _eventually(
            lambda: any(cand.said("LEADING") is not None for cand in candidates),
            timeout=40,
            what="a first leader",
        )
        a = next(cand for cand in candidates if cand.said("LEADING") is not None)
        b, c = (cand for cand in candidates if cand is not a)
        await _eventually(
            lambda: (
                b.said("OBSERVED", a.identity) is not None
                and c.said("OBSERVED", a.identity) is not None
            ),
            timeout=40,
            what="the standbys to observe the leader",
        )
        await asyncio.sleep(2 * RETRY)  # a few renewals seen by the standbys

        # SIGKILL: no release; the standbys must wait for the lease to expire.
        killed = time.monotonic()
        await a.kill()
        await _eventually(
            lambda: b.said("LEADING") is not None or c.said("LEADING") is not None,
            timeout=LEASE + MAX_RETRY_SLEEP + 5,
            what="a standby to take over",
        )
        new, last = (b, c) if b.said("LEADING") is not None else (c, b)
        took_over = new.said("LEADING")
        assert took_over is not None
        # Not before a's last renewal (at most one retry period before the kill) expired,
        # and at most one (jittered) observation lag after it expired.
        assert LEASE - RETRY - 0.3 < took_over - killed < LEASE + MAX_RETRY_SLEEP + 1.0
        lease = (await _read_lease(kube, namespace=namespace, name="procs"))["spec"]
        assert lease["holderIdentity"] == new.identity
        assert lease["leaseTransitions"] == 1
        await _eventually(
            lambda: last.said("OBSERVED", new.identity) is not None,
            timeout=5,
            what="the last standby to observe the new leader",
        )
        # The Lease sampler must have seen this leader too before it hands over (the samples
        # are checked against the leading intervals below); on a loaded machine its reads can
        # lag the short time the new leader holds on.
        await _eventually(
            lambda: any(holder == new.identity for _, _, holder in samples),
            timeout=10,
            what="the Lease sampler to see the new leader",
        )

        # SIGTERM with --release-on-cancel: the last standby takes over at once.
        terminated = time.monotonic()
        new.proc.send_signal(signal.SIGTERM)
        await _eventually(lambda: last.said("LEADING") is not None, timeout=LEASE, what="handover")
        handed_over = last.said("LEADING")
        assert handed_over is not None
        assert handed_over - terminated < MAX_RETRY_SLEEP + 1.0 < LEASE
        assert await asyncio.wait_for(new.proc.wait(), timeout=5) == 0
        assert new.said("DONE") is not None
        lease = (await _read_lease(kube, namespace=namespace, name="procs"))["spec"]
        assert lease["holderIdentity"] == last.identity
        assert lease["leaseTransitions"] == 2
        await asyncio.sleep(2 * RETRY)  # the new leader renews undisturbed
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

    assert a.proc.returncode == -signal.SIGKILL
    assert last.proc.returncode is None  # still leading
    now = time.monotonic()
    intervals = sorted(
        (start, end, cand.identity)
        for cand in (a, b, c)
        for start, end in cand.leading_intervals(now=now)
    )
    assert [who for _, _, who in intervals] == [a.identity, new.identity, last.identity]
    for (_, end, who), (start, _, next_who) in itertools.pairwise(intervals):
        assert end < start, f"{who} still led when {next_who} started"
    # Every Lease sample agrees with whoever was leading throughout the read.
    assert len(samples) > 50
    for before, after, holder in samples:
        for start, end, who in intervals:
            if start <= before and after <= end:
                assert holder == who, f"{who} led while the Lease said {holder}"
    assert {holder for _, _, holder in samples} >= {a.identity, new.identity, last.identity}
