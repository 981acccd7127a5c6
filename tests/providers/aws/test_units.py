"""Pure logic of the AWS provider: error classification, backoff, the describe cache's
batching, and how an AWSMachinePool becomes a GroupSpec. No network."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError
from prometheus_client import CollectorRegistry
from tenacity import RetryCallState

from controller.providers.aws.adapter import (
    LAST_APPLIED_TAGS_ANNOTATION,
    AwsPoolAdapter,
    parse_duration_seconds,
)
from controller.providers.aws.client import AwsApi, classify
from controller.providers.aws.describe import GroupDescriber
from controller.providers.base import PermanentError, RetryableError, ThrottledError
from controller.runtime.informer import Informer

Obj = dict[str, Any]


def client_error(code: str, status: int, *, message: str = "m", **headers: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
        },
        "Op",
    )


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (client_error("Throttling", 400), ThrottledError, "Throttling"),
        (client_error("RequestLimitExceeded", 503), ThrottledError, "RequestLimitExceeded"),
        (client_error("Whatever", 429), ThrottledError, "Whatever"),
        (client_error("InternalFailure", 500), RetryableError, "InternalFailure"),
        (client_error("ScalingActivityInProgress", 400), RetryableError,
         "ScalingActivityInProgress"),
        (client_error("ValidationError", 400), PermanentError, "ValidationError"),
        (client_error("UnauthorizedOperation", 403), PermanentError, "UnauthorizedOperation"),
        (client_error("LimitExceeded", 400), PermanentError, "LimitExceeded"),
        (EndpointConnectionError(endpoint_url="http://x"), RetryableError, "ConnectionError"),
        (ResponseParserError("html"), RetryableError, "ResponseParserError"),
        (TimeoutError(), RetryableError, "Timeout"),
    ],
)  # fmt: skip
def test_errors_are_classified(error: Exception, kind: type[Exception], code: str) -> None:
    typed = classify(error)
    assert type(typed) is kind
    assert typed.code == code


def test_retry_hint_is_read_and_access_keys_are_scrubbed() -> None:
    typed = classify(
        client_error(
            "Throttling", 400, message="slow down AKIAABCDEFGHIJKLMNOP", **{"retry-after": "3"}
        )
    )
    assert typed.retry_after == 3.0
    assert "AKIA" not in typed.message
    assert "<redacted>" in typed.message


def _state(attempt: int, exc: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_backoff_has_jitter_honours_hints_and_is_capped() -> None:
    api = AwsApi(region="r", registry=CollectorRegistry(), base_delay=0.1, max_delay=5.0,
                 rng=lambda: 1.0)  # fmt: skip
    throttled = ThrottledError("x", code="Throttling")
    assert api._wait(_state(1, throttled)) == pytest.approx(0.2)  # throttling backs off harder
    assert api._wait(_state(3, RetryableError("x", code="InternalError"))) == pytest.approx(0.4)
    assert api._wait(_state(20, throttled)) == 5.0
    hinted = ThrottledError("x", code="Throttling", retry_after=2.0)
    assert api._wait(_state(1, hinted)) == pytest.approx(2.1)
    low = AwsApi(region="r", registry=CollectorRegistry(), rng=lambda: 0.0)
    assert low._wait(_state(4, throttled)) == 0.0  # full jitter reaches zero


class FakeAsg:
    """Answers DescribeAutoScalingGroups from a dict; counts calls; can fail."""

    def __init__(self, groups: dict[str, Obj]) -> None:
        self.groups = groups
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None

    async def call(self, service: str, operation: str, **params: Any) -> Obj:
        assert (service, operation) == ("autoscaling", "DescribeAutoScalingGroups")
        self.calls.append(list(params["AutoScalingGroupNames"]))
        if self.fail is not None:
            raise self.fail
        return {
            "AutoScalingGroups": [
                self.groups[n] for n in params["AutoScalingGroupNames"] if n in self.groups
            ]
        }


def _group(name: str, *, desired: int = 0, states: tuple[str, ...] = ()) -> Obj:
    instances = [{"InstanceId": f"i-{k}", "LifecycleState": s} for k, s in enumerate(states)]
    return {"AutoScalingGroupName": name, "DesiredCapacity": desired, "Instances": instances}


async def test_describer_batches_caches_and_refreshes_everyone_at_once() -> None:
    now = [0.0]
    fake = FakeAsg({f"g{i}": _group(f"g{i}") for i in range(250)})
    describer = GroupDescriber(api=fake, ttl=60, busy_ttl=2, clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        found = await asyncio.gather(*(describer.get(f"g{i}") for i in range(250)))
        assert [g["AutoScalingGroupName"] for g in found if g] == [f"g{i}" for i in range(250)]
        assert [len(c) for c in fake.calls] == [100, 100, 50]
        assert await describer.get("missing") is None

        fake.calls.clear()
        now[0] = 30.0
        await describer.get("g5")
        assert fake.calls == []  # within ttl
        now[0] = 61.0
        await describer.get("g5")  # expired: one refresh brings all 250 (and "missing") along
        assert sorted(len(c) for c in fake.calls) == [51, 100, 100]
        fake.calls.clear()
        now[0] = 62.0
        await asyncio.gather(*(describer.get(f"g{i}") for i in range(250)))
        assert fake.calls == []

        describer.invalidate("g7")
        await describer.get("g7")
        assert fake.calls == [["g7"]]  # fresh look after our own write (nothing else stale)
    finally:
        await describer.close()


async def test_describer_looks_sooner_at_groups_in_flux_and_shares_failures() -> None:
    now = [0.0]
    fake = FakeAsg({"busy": _group("busy", desired=2, states=("Pending", "InService"))})
    describer = GroupDescriber(api=fake, ttl=60, busy_ttl=2, clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        await describer.get("busy")
        now[0] = 3.0
        await describer.get("busy")
        assert len(fake.calls) == 2
        fake.fail = ThrottledError("slow down", code="Throttling")
        now[0] = 6.0
        results = await asyncio.gather(
            describer.get("busy"), describer.get("busy"), return_exceptions=True
        )
        assert all(isinstance(r, ThrottledError) for r in results)
        fake.fail = None
        assert await describer.get("busy") is not None  # nothing cached from the failure
    finally:
        await describer.close()


CAPA = """
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachinePool
metadata: {name: workers, namespace: team-a}
spec:
  minSize: 1
  maxSize: 5
  subnets: [{id: subnet-1}, {id: subnet-2}]
  awsLaunchTemplate:
    instanceType: m6i.large
    ami: {id: ami-1}
    iamInstanceProfile: nodes
    sshKeyName: ops
    rootVolume: {size: 80, type: gp3}
    additionalSecurityGroups: [{id: sg-1}]
  additionalTags: {team: a}
  suspendProcesses: {processes: {azRebalance: true, launch: false, healthCheck: true}}
  lifecycleHooks:
  - name: drain
    lifecycleTransition: "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeatTimeout: 1h30m
  defaultCooldown: 5m
  strategy: {type: InstanceRefresh}
  refreshPreferences: {minHealthyPercentage: 90}
"""
POOL: Obj = {
    "metadata": {"name": "workers", "namespace": "team-a"},
    "spec": {
        "clusterName": "prod",
        "template": {"spec": {"bootstrap": {"dataSecretName": "boot"}}},
    },
}


class _Secrets:
    def __init__(self, items: dict[str, Obj]) -> None:
        self.store = items


def _adapter(value: bytes | None = b"#cloud-config") -> AwsPoolAdapter:
    items = {}
    if value is not None:
        items["team-a/boot"] = {"data": {"value": base64.b64encode(value).decode()}}
    secrets: Informer = _Secrets(items)  # type: ignore[assignment]
    return AwsPoolAdapter(secrets=secrets)


def test_a_capa_manifest_becomes_a_group_spec() -> None:
    infra = yaml.safe_load(CAPA)
    spec = _adapter().group_spec(infra=infra, pool=POOL)
    assert spec.name == "team-a-workers-20d57b3b66c6a446"  # prefix + sha256("team-a/workers")
    assert spec.owner_tags == {
        "machinepool.cluster.x-k8s.io/pool-namespace": "team-a",
        "machinepool.cluster.x-k8s.io/pool-name": "workers",
        "sigs.k8s.io/cluster-api-provider-aws/cluster/prod": "owned",
    }
    assert dict(spec.owner_tags).items() <= dict(spec.tags).items()
    assert (spec.min_size, spec.max_size) == (1, 5)
    assert spec.bootstrap_data == b"#cloud-config"
    t: Any = spec.template
    assert t["launchTemplate"] == {
        "imageId": "ami-1", "instanceType": "m6i.large", "iamInstanceProfile": "nodes",
        "sshKeyName": "ops", "rootVolume": {"size": 80, "type": "gp3"},
        "securityGroupIds": ["sg-1"],
    }  # fmt: skip
    assert t["subnets"] == ["subnet-1", "subnet-2"]
    assert t["suspendProcesses"] == ["AZRebalance", "HealthCheck"]
    assert t["lifecycleHooks"][0]["heartbeatTimeout"] == 5400
    assert t["defaultCooldown"] == 300
    assert t["instanceRefresh"] == {"enabled": True, "minHealthyPercentage": 90}
    assert spec.tags["team"] == "a"
    assert spec.tags["sigs.k8s.io/cluster-api-provider-aws/cluster/prod"] == "owned"
    assert spec.tags["kubernetes.io/cluster/prod"] == "owned"


def test_template_version_follows_the_shape_only() -> None:
    infra = yaml.safe_load(CAPA)
    base = _adapter().group_spec(infra=infra, pool=POOL).template_version
    assert _adapter(b"other token").group_spec(infra=infra, pool=POOL).template_version == base
    infra["spec"]["additionalTags"] = {"team": "b"}
    assert _adapter().group_spec(infra=infra, pool=POOL).template_version == base
    infra["spec"]["awsLaunchTemplate"]["instanceType"] = "m6i.xlarge"
    assert _adapter().group_spec(infra=infra, pool=POOL).template_version != base


def test_missing_bootstrap_data_is_a_permanent_error_with_a_reason() -> None:
    infra = yaml.safe_load(CAPA)
    with pytest.raises(PermanentError) as caught:
        _adapter(None).group_spec(infra=infra, pool=POOL)
    assert caught.value.code == "BootstrapDataNotFound"
    assert "team-a/boot" in caught.value.message


def test_last_applied_tags_are_read_and_recorded_in_capas_format() -> None:
    adapter = _adapter()
    infra = yaml.safe_load(CAPA)  # additionalTags {team: a}, no record yet
    assert adapter.group_spec(infra=infra, pool=POOL).applied_tag_keys == frozenset()
    record = {LAST_APPLIED_TAGS_ANNOTATION: '{"team":"a"}'}
    assert adapter.remembered_annotations(infra=infra, applied=False) == record
    assert adapter.remembered_annotations(infra=infra, applied=True) == record

    # Recorded {team, env}; the spec now has {team: b, zone: z}.
    infra["metadata"]["annotations"] = {LAST_APPLIED_TAGS_ANNOTATION: '{"env":"dev","team":"a"}'}
    infra["spec"]["additionalTags"] = {"team": "b", "zone": "z"}
    spec = adapter.group_spec(infra=infra, pool=POOL)
    assert spec.applied_tag_keys == {"env", "team"}
    # Before ensure_group: everything that may reach the group; after: exactly what did.
    assert adapter.remembered_annotations(infra=infra, applied=False) == {
        LAST_APPLIED_TAGS_ANNOTATION: '{"env":"dev","team":"b","zone":"z"}'
    }
    assert adapter.remembered_annotations(infra=infra, applied=True) == {
        LAST_APPLIED_TAGS_ANNOTATION: '{"team":"b","zone":"z"}'
    }

    # An unreadable record removes nothing; no tags and no record: nothing to write.
    infra["metadata"]["annotations"] = {LAST_APPLIED_TAGS_ANNOTATION: "not json"}
    assert adapter.group_spec(infra=infra, pool=POOL).applied_tag_keys == frozenset()
    infra["metadata"]["annotations"] = {}
    infra["spec"]["additionalTags"] = {}
    assert adapter.remembered_annotations(infra=infra, applied=True) == {}


def test_defaults_long_names_and_durations() -> None:
    adapter = _adapter()
    assert adapter.size_bounds(infra={"spec": {}}) == (1, 1)  # CAPA's defaults
    long = {"metadata": {"namespace": "n" * 63, "name": "p" * 253}}
    name = adapter.group_name(infra=long)
    assert len(name) == 128  # the launch template's limit; the group shares its name
    other = {"metadata": {"namespace": "n" * 63, "name": "p" * 252 + "q"}}
    assert name != adapter.group_name(infra=other)
    assert [parse_duration_seconds(v) for v in ("90s", "1m30s", "1h", "300", 42)] == [
        90, 90, 3600, 300, 42,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_seconds("soon")


class GatedAsg(FakeAsg):
    """Holds every call until ``gate`` opens."""

    def __init__(self, groups: dict[str, Obj]) -> None:
        super().__init__(groups)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def call(self, service: str, operation: str, **params: Any) -> Obj:
        self.entered.set()
        await self.gate.wait()
        return await super().call(service, operation, **params)


async def test_a_read_joins_the_call_already_on_its_way() -> None:
    now = [0.0]
    fake = GatedAsg({"a": _group("a"), "b": _group("b")})
    describer = GroupDescriber(api=fake, ttl=60, busy_ttl=2, clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        fake.gate.set()
        await asyncio.gather(describer.get("a"), describer.get("b"))
        assert len(fake.calls) == 1
        fake.gate.clear()
        fake.entered.clear()
        now[0] = 61.0
        first = asyncio.create_task(describer.get("a"))  # refreshes "b" too
        await fake.entered.wait()
        second = asyncio.create_task(describer.get("b"))  # b is stale, but on its way
        fresh = asyncio.create_task(describer.get("b", fresh=True))  # must not join
        await asyncio.sleep(0)  # let both reads reach their await (one step each)
        fake.gate.set()
        await asyncio.gather(first, second, fresh)
        assert fake.calls[1:] == [["a", "b"], ["b"]]
    finally:
        await describer.close()


def test_run_flags_for_aws() -> None:
    from controller.cli import build_parser
    from controller.options import OptionError, RunOptions

    parser = build_parser()
    args = parser.parse_args(
        ["run", "--controllers", "machinepool,aws", "--aws-region", "eu-west-1",
         "--aws-endpoint-url", "http://127.0.0.1:5000", "--aws-poll-interval", "30s"]
    )  # fmt: skip
    options = RunOptions.from_args(args)
    assert options.controllers == ("machinepool", "aws")
    assert (options.aws_region, options.aws_poll_interval) == ("eu-west-1", 30.0)
    assert RunOptions.from_args(parser.parse_args(["run"])).controllers == (
        "machinepool",
        "inmemory",
    )
    args = parser.parse_args(["run", "--controllers", "aws"])
    saved = os.environ.pop("AWS_REGION", None)
    try:
        with pytest.raises(OptionError, match="--aws-region"):
            RunOptions.from_args(args)
    finally:
        if saved is not None:
            os.environ["AWS_REGION"] = saved
