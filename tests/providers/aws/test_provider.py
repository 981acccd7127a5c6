"""The AWS provider against moto in server mode, through the fault proxy (no faults unless a
test sets them): our real aiobotocore client makes real HTTP calls; nothing of ours is patched.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import structlog.testing
from prometheus_client import CollectorRegistry

from controller.providers.aws.client import AwsApi
from controller.providers.aws.emulator import FaultProxy, Faults
from controller.providers.aws.provider import AwsProvider
from controller.providers.base import (
    GroupNotFoundError,
    GroupSpec,
    PermanentError,
    RetryableError,
    ThrottledError,
)

from .conftest import REGION, ZONES

AMI = "ami-12c6146b"  # one of moto's built-in images
PROVIDER_ID = re.compile(r"^aws:///us-east-1[ab]/i-[0-9a-f]+$")


def spec(name: str = "ns-p1", **changes: Any) -> GroupSpec:
    template: dict[str, Any] = {
        "launchTemplate": {"imageId": AMI, "instanceType": "t3.large"},
        "subnets": [],
        "capacityRebalance": False,
        "suspendProcesses": [],
        "lifecycleHooks": [],
    }
    template.update(changes.pop("template", {}))
    base = GroupSpec(
        name=name,
        cluster="ns/c1",
        template=template,
        template_version="shape-1",
        min_size=0,
        max_size=10,
        zones=ZONES,
        bootstrap_data=b"#cloud-config\nruncmd: [kubeadm join]\n",
        tags={"kubernetes.io/cluster/c1": "owned", "Name": "p1"},
    )
    return dataclasses.replace(base, **changes)


@pytest_asyncio.fixture(loop_scope="session")
async def aws(proxy: FaultProxy) -> AsyncIterator[AwsProvider]:
    api = AwsApi(
        region=REGION, endpoint_url=proxy.url, registry=CollectorRegistry(), base_delay=0.01,
        max_delay=0.2,
    )  # fmt: skip
    async with api, AwsProvider(region=REGION, api=api, busy_interval=0.5) as provider:
        yield provider


async def ec2(provider: AwsProvider, operation: str, **params: Any) -> dict[str, Any]:
    return await provider.api.call("ec2", operation, **params)


async def asg(provider: AwsProvider, operation: str, **params: Any) -> dict[str, Any]:
    return await provider.api.call("autoscaling", operation, **params)


async def test_group_lifecycle_scale_out_shrink_and_delete(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    status = await aws.ensure_group(spec=spec())
    assert status.desired_capacity == 0
    assert status.instances == []
    assert status.template_version == "shape-1"

    await aws.set_capacity(name="ns-p1", desired=3)
    status = await aws.describe_group(name="ns-p1")
    assert status.desired_capacity == 3
    assert len(status.instances) == 3
    for inst in status.instances:
        assert PROVIDER_ID.match(inst.provider_id), inst.provider_id
        assert inst.provider_id.endswith(inst.instance_id)
        assert inst.zone in ZONES
        assert inst.state == "running"
        assert inst.version == "shape-1"  # from our instance tag, not moto's version number

    # The launch template carries the bootstrap data and the tags.
    versions = await ec2(
        aws, "DescribeLaunchTemplateVersions", LaunchTemplateName="ns-p1", Versions=["$Latest"]
    )
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert base64.b64decode(data["UserData"]) == spec().bootstrap_data
    assert data["InstanceType"] == "t3.large"

    # AWS never picks the victim: the one we name goes, and the group shrinks with it.
    victim = status.instances[1].instance_id
    await aws.delete_instance(name="ns-p1", instance_id=victim, shrink=True)
    status = await aws.describe_group(name="ns-p1")
    assert status.desired_capacity == 2
    assert victim not in {i.instance_id for i in status.instances}
    # (Terminating an instance that is already gone: AWS answers ValidationError "not found",
    # which counts as done; moto answers 500, so that case is not tested here.)

    await aws.delete_group(name="ns-p1", owner_tags={})
    with pytest.raises(GroupNotFoundError):
        await aws.describe_group(name="ns-p1")
    listed = await ec2(aws, "DescribeLaunchTemplates")
    assert listed["LaunchTemplates"] == []
    await aws.delete_group(name="ns-p1", owner_tags={})  # already gone: still success


async def test_converged_group_costs_no_calls(aws: AwsProvider, proxy: FaultProxy) -> None:
    await aws.ensure_group(spec=spec())
    await aws.set_capacity(name="ns-p1", desired=2)
    await aws.ensure_group(spec=spec())
    proxy.reset_counts()
    for _ in range(5):
        status = await aws.ensure_group(spec=spec())
    assert len(status.instances) == 2
    assert proxy.total_calls == 0, dict(proxy.record.calls)


async def test_a_new_launch_template_version_only_on_change_and_old_ones_pruned(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    await aws.ensure_group(spec=spec())
    await aws.set_capacity(name="ns-p1", desired=1)
    await aws.ensure_group(spec=spec())
    for n in range(2, 6):
        changed = spec(
            template={"launchTemplate": {"imageId": AMI, "instanceType": f"m5.{n}xlarge"}},
            template_version=f"shape-{n}",
        )
        status = await aws.ensure_group(spec=changed)
        assert status.template_version == f"shape-{n}"
    listed = await ec2(aws, "DescribeLaunchTemplates", LaunchTemplateNames=["ns-p1"])
    template = listed["LaunchTemplates"][0]
    assert template["LatestVersionNumber"] == 5
    assert template["DefaultVersionNumber"] == 5
    # moto cannot delete versions; the proxy answers for it and tells us what was asked.
    deletes = [params for action, params in proxy.record.canned if action.startswith("Delete")]
    assert deletes, "old versions pruned"
    member = re.compile(r"^(LaunchTemplateVersion|Versions?)\.\d+$")
    asked = {v for params in deletes for k, vs in params.items() if member.match(k) for v in vs}
    assert asked == {"1", "2"}  # keep the newest 3 of 5

    # The old instance reports the old shape; a new one the new shape.
    await aws.set_capacity(name="ns-p1", desired=2)
    status = await aws.describe_group(name="ns-p1")
    assert sorted(i.version for i in status.instances) == ["shape-1", "shape-5"]

    # User data alone: a new version, but instances are not out of date.
    proxy.reset_counts()
    status = await aws.ensure_group(
        spec=spec(
            template={"launchTemplate": {"imageId": AMI, "instanceType": "m5.5xlarge"}},
            template_version="shape-5",
            bootstrap_data=b"#cloud-config\n# rotated token\n",
        )
    )
    assert proxy.record.calls["CreateLaunchTemplateVersion"] == 1
    assert status.template_version == "shape-5"


async def test_group_shape_tags_processes_and_hooks_follow_the_spec(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    hooks = [
        {
            "name": "drain",
            "lifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "heartbeatTimeout": 300,
            "defaultResult": "CONTINUE",
        }
    ]
    wanted = spec(
        min_size=1,
        max_size=4,
        template={
            "suspendProcesses": ["AZRebalance", "ReplaceUnhealthy"],
            "lifecycleHooks": hooks,
            "capacityRebalance": True,
        },
    )
    await aws.ensure_group(spec=wanted)
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    assert (group["MinSize"], group["MaxSize"], group["CapacityRebalance"]) == (1, 4, True)
    assert {p["ProcessName"] for p in group["SuspendedProcesses"]} == {
        "AZRebalance",
        "ReplaceUnhealthy",
    }
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["kubernetes.io/cluster/c1"] == "owned"
    listed = await asg(aws, "DescribeLifecycleHooks", AutoScalingGroupName="ns-p1")
    [hook] = listed["LifecycleHooks"]
    assert (hook["LifecycleHookName"], hook["HeartbeatTimeout"]) == ("drain", 300)

    proxy.reset_counts()
    changed = dataclasses.replace(
        wanted,
        max_size=6,
        tags={**wanted.tags, "team": "blue"},
        template={**wanted.template, "suspendProcesses": ["AZRebalance"], "lifecycleHooks": []},
    )
    await aws.ensure_group(spec=changed)
    calls = proxy.record.calls
    assert calls["UpdateAutoScalingGroup"] == 1
    assert calls["CreateOrUpdateTags"] == 1
    assert calls["ResumeProcesses"] == 1
    assert calls["DeleteLifecycleHook"] == 1
    assert calls["SetDesiredCapacity"] == 0  # ensure_group never touches the capacity
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    assert group["MaxSize"] == 6
    assert {p["ProcessName"] for p in group["SuspendedProcesses"]} == {"AZRebalance"}
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["team"] == "blue"


async def test_mixed_instances_policy(aws: AwsProvider, proxy: FaultProxy) -> None:
    mip = {
        "instancesDistribution": {
            "onDemandBaseCapacity": 1,
            "onDemandPercentageAboveBaseCapacity": 25,
        },
        "overrides": [{"instanceType": "m5.large"}, {"instanceType": "m5a.large"}],
    }
    await aws.ensure_group(spec=spec(template={"mixedInstancesPolicy": mip}))
    await aws.set_capacity(name="ns-p1", desired=2)
    status = await aws.describe_group(name="ns-p1")
    assert status.desired_capacity == 2
    assert status.instances  # (moto launches fewer than asked with such a policy)
    # What AWS reports back matches what we asked for: no update on the next reconcile.
    aws.groups.invalidate("ns-p1")
    proxy.reset_counts()
    await aws.ensure_group(spec=spec(template={"mixedInstancesPolicy": mip}))
    assert proxy.record.calls["UpdateAutoScalingGroup"] == 0
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    policy = group["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "m5.large",
        "m5a.large",
    ]
    assert policy["InstancesDistribution"]["OnDemandBaseCapacity"] == 1


async def test_instance_refresh_is_opt_in(aws: AwsProvider, proxy: FaultProxy) -> None:
    refresh = {"instanceRefresh": {"enabled": True, "minHealthyPercentage": 90}}
    await aws.ensure_group(spec=spec(template=refresh))
    await aws.set_capacity(name="ns-p1", desired=1)
    changed = spec(
        template={**refresh, "launchTemplate": {"imageId": AMI, "instanceType": "m5.large"}},
        template_version="shape-2",
    )
    await aws.ensure_group(spec=changed)
    starts = [p for action, p in proxy.record.canned if action == "StartInstanceRefresh"]
    assert len(starts) == 1
    assert starts[0]["Preferences.MinHealthyPercentage"] == ["90"]
    # Without the opt-in, a shape change starts no refresh.
    await aws.ensure_group(spec=spec(name="ns-p2"))
    await aws.ensure_group(spec=spec(name="ns-p2", template_version="shape-2"))
    assert len([a for a, _ in proxy.record.canned if a == "StartInstanceRefresh"]) == 1


async def test_one_describe_call_serves_many_groups(aws: AwsProvider, proxy: FaultProxy) -> None:
    names = [f"ns-g{i}" for i in range(150)]
    for name in names:
        await asg(
            aws, "CreateAutoScalingGroup", AutoScalingGroupName=name, MinSize=0, MaxSize=1,
            AvailabilityZones=list(ZONES),
            LaunchTemplate={"LaunchTemplateId": await _template_id(aws), "Version": "$Latest"},
        )  # fmt: skip
    proxy.reset_counts()
    statuses = await asyncio.gather(*(aws.describe_group(name=n) for n in names))
    assert [s.name for s in statuses] == names
    assert proxy.record.calls["DescribeAutoScalingGroups"] == 2  # 100 names a call
    # A later look at one of them, within the poll interval, is served from the cache.
    await aws.describe_group(name="ns-g7")
    assert proxy.record.calls["DescribeAutoScalingGroups"] == 2


async def _template_id(aws: AwsProvider) -> str:
    known = aws.templates.known("shared")
    if known is not None:
        return known.id
    state, _ = await aws.templates.ensure(
        name="shared", data={"ImageId": AMI}, version="x", tags={}, owner_tags={}
    )
    return state.id


async def test_throttling_and_5xx_are_retried_with_backoff(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(throttle_rate=0.25, error_rate=0.15)
    await aws.ensure_group(spec=spec())
    await aws.set_capacity(name="ns-p1", desired=2)
    status = await aws.describe_group(name="ns-p1")
    assert len(status.instances) == 2
    assert sum(proxy.record.faults.values()) > 0
    proxy.faults = Faults()
    metrics = aws.api.metrics.requests
    codes = {labels["code"] for labels in _label_sets(metrics)}
    assert codes >= {"OK"}
    assert codes & {"Throttling", "RequestLimitExceeded", "ServiceUnavailable", "InternalError"}


def _label_sets(counter: Any) -> list[dict[str, str]]:
    return [s.labels for metric in counter.collect() for s in metric.samples]


async def test_persistent_throttling_gives_up_with_the_retry_hint(proxy: FaultProxy) -> None:
    proxy.faults = Faults(throttle_rate=1.0, retry_after=0.05)
    api = AwsApi(
        region=REGION, endpoint_url=proxy.url, registry=CollectorRegistry(), max_attempts=3
    )
    async with api:
        with pytest.raises(ThrottledError) as caught:
            await api.call("autoscaling", "DescribeAutoScalingGroups")
    assert caught.value.code == "Throttling"
    assert caught.value.retry_after == 0.05
    assert proxy.record.calls["DescribeAutoScalingGroups"] == 3


async def test_permanent_errors_carry_the_aws_code(aws: AwsProvider) -> None:
    with pytest.raises(PermanentError) as caught:
        await aws.ensure_group(spec=spec(template={"subnets": ["subnet-0000deadbeef"]}))
    assert caught.value.code == "InvalidSubnetID.NotFound"
    assert "subnet-0000deadbeef" in caught.value.message
    assert not caught.value.retryable


async def test_nothing_secret_reaches_the_logs(
    aws: AwsProvider, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's request dumps stay off even at DEBUG
    token = "abcdef.0123456789abcdef"  # a kubeadm join token in the user data
    proxy.faults = Faults(throttle_rate=0.25, error_rate=0.1)
    with structlog.testing.capture_logs() as logs:
        await aws.ensure_group(spec=spec(bootstrap_data=f"kubeadm join --token {token}".encode()))
        with pytest.raises(PermanentError) as caught:
            await aws.ensure_group(spec=spec(name="bad", template={"subnets": ["subnet-0"]}))
    proxy.faults = Faults()
    assert any(entry.get("code") for entry in logs), "the retries were logged"
    # botocore dumps the request (user data included) at DEBUG: held at INFO.
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO
    text = repr(logs) + str(caught.value) + caplog.text
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert token not in text
    assert base64.b64encode(f"kubeadm join --token {token}".encode()).decode() not in text
    assert f"={secret}" not in text
    assert "UserData" not in text


async def test_a_launch_template_deleted_behind_our_back_is_recreated(aws: AwsProvider) -> None:
    await aws.ensure_group(spec=spec())
    old = aws.templates.known("ns-p1")
    assert old is not None
    await ec2(aws, "DeleteLaunchTemplate", LaunchTemplateId=old.id)
    changed = spec(template_version="shape-2")
    with pytest.raises(RetryableError):
        await aws.ensure_group(spec=changed)
    status = await aws.ensure_group(spec=changed)
    new = aws.templates.known("ns-p1")
    assert new is not None
    assert new.id != old.id
    assert status.template_version == "shape-2"
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    assert group["LaunchTemplate"]["LaunchTemplateId"] == new.id


async def test_cooldown_and_warmup_are_applied_once(aws: AwsProvider, proxy: FaultProxy) -> None:
    wanted = spec(template={"defaultCooldown": 120, "defaultInstanceWarmup": 60})
    await aws.ensure_group(spec=wanted)
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    assert group["DefaultCooldown"] == 120
    aws.groups.invalidate("ns-p1")
    proxy.reset_counts()
    await aws.ensure_group(spec=wanted)
    assert proxy.record.calls["UpdateAutoScalingGroup"] == 0, dict(proxy.record.calls)


async def test_instances_carry_their_ec2_addresses_without_extra_calls(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    await aws.ensure_group(spec=spec())
    await aws.set_capacity(name="ns-p1", desired=2)
    proxy.reset_counts()
    status = await aws.describe_group(name="ns-p1")
    assert proxy.record.calls["DescribeInstances"] == 1  # one batch for both new instances
    ids = [i.instance_id for i in status.instances]
    described = await ec2(aws, "DescribeInstances", InstanceIds=ids)
    ec2_by_id = {
        inst["InstanceId"]: inst for r in described["Reservations"] for inst in r["Instances"]
    }
    for instance in status.instances:
        found = ec2_by_id[instance.instance_id]
        wanted = [
            (kind, found.get(field))
            for kind, field in (
                ("InternalIP", "PrivateIpAddress"),
                ("InternalDNS", "PrivateDnsName"),
                ("ExternalIP", "PublicIpAddress"),
                ("ExternalDNS", "PublicDnsName"),
            )
            if found.get(field)
        ]
        assert [(a.type, a.address) for a in instance.addresses] == wanted
        assert {"InternalIP", "InternalDNS"} <= {a.type for a in instance.addresses}
    proxy.reset_counts()
    again = await aws.describe_group(name="ns-p1")
    assert [i.addresses for i in again.instances] == [i.addresses for i in status.instances]
    assert proxy.record.calls["DescribeInstances"] == 0  # served from memory


async def test_tags_dropped_from_the_spec_are_removed_and_no_others(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    base = spec()
    first = dataclasses.replace(base, tags={**base.tags, "team": "blue", "env": "dev"})
    await aws.ensure_group(spec=first)
    # Someone adds a tag of their own by hand.
    await asg(
        aws, "CreateOrUpdateTags",
        Tags=[{"ResourceId": "ns-p1", "ResourceType": "auto-scaling-group", "Key": "by-hand",
               "Value": "x", "PropagateAtLaunch": False}],
    )  # fmt: skip
    aws.groups.invalidate("ns-p1")

    # "env" leaves the spec; the caller says it applied "team" and "env" last time (and,
    # wrongly, the ownership tag and the hand-made one: both are still not removed, the first
    # because the spec still has it).
    proxy.reset_counts()
    second = dataclasses.replace(
        base,
        tags={**base.tags, "team": "blue"},
        applied_tag_keys=frozenset({"team", "env", "kubernetes.io/cluster/c1"}),
    )
    await aws.ensure_group(spec=second)
    assert proxy.record.calls["DeleteTags"] == 1
    assert proxy.record.calls["CreateOrUpdateTags"] == 0
    group = (await asg(aws, "DescribeAutoScalingGroups", AutoScalingGroupNames=["ns-p1"]))[
        "AutoScalingGroups"
    ][0]
    assert {t["Key"]: t["Value"] for t in group["Tags"]} == {
        "kubernetes.io/cluster/c1": "owned",
        "Name": "p1",
        "team": "blue",
        "by-hand": "x",
    }

    # Converged: the remembered key that is already gone costs no call.
    proxy.reset_counts()
    await aws.ensure_group(spec=second)
    assert proxy.record.calls["DeleteTags"] == 0
    assert proxy.record.calls["CreateOrUpdateTags"] == 0
