"""The AWS provider never adopts, changes or deletes a group or launch template whose tags do
not prove it is the pool's (moto in server mode, through the fault proxy)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from controller.providers.aws.client import AwsApi
from controller.providers.aws.emulator import FaultProxy
from controller.providers.aws.provider import AwsProvider
from controller.providers.base import GroupOwnedByOthersError, PermanentError

from .conftest import REGION, ZONES
from .test_provider import AMI, spec

OWNER = {
    "machinepool.cluster.x-k8s.io/pool-namespace": "ns",
    "machinepool.cluster.x-k8s.io/pool-name": "p1",
    "sigs.k8s.io/cluster-api-provider-aws/cluster/c1": "owned",
}


def ours(name: str = "ns-p1") -> Any:
    base = spec(name=name)
    return dataclasses.replace(base, tags={**base.tags, **OWNER}, owner_tags=OWNER)


@pytest_asyncio.fixture(loop_scope="session")
async def aws(proxy: FaultProxy) -> AsyncIterator[AwsProvider]:
    api = AwsApi(
        region=REGION, endpoint_url=proxy.url, registry=CollectorRegistry(), base_delay=0.01,
        max_delay=0.2,
    )  # fmt: skip
    async with api, AwsProvider(region=REGION, api=api, busy_interval=0.5) as provider:
        yield provider


async def _foreign_group(
    aws: AwsProvider, name: str, *, tags: dict[str, str], with_group: bool = True
) -> None:
    """A group (and its template) someone else made, with capacity 1."""
    lt_tags = [{"Key": k, "Value": v} for k, v in tags.items()]
    created = await aws.api.call(
        "ec2", "CreateLaunchTemplate", LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"},
        **({"TagSpecifications": [{"ResourceType": "launch-template", "Tags": lt_tags}]}
           if tags else {}),
    )  # fmt: skip
    if not with_group:
        return
    await aws.api.call(
        "autoscaling", "CreateAutoScalingGroup", AutoScalingGroupName=name, MinSize=0,
        MaxSize=3, DesiredCapacity=1, AvailabilityZones=list(ZONES),
        LaunchTemplate={"LaunchTemplateId": created["LaunchTemplate"]["LaunchTemplateId"],
                        "Version": "$Latest"},
        Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
               "PropagateAtLaunch": False} for k, v in tags.items()],
    )  # fmt: skip


async def _snapshot(aws: AwsProvider, name: str) -> tuple[Any, ...]:
    groups = await aws.api.call(
        "autoscaling", "DescribeAutoScalingGroups", AutoScalingGroupNames=[name]
    )
    try:
        templates = await aws.api.call("ec2", "DescribeLaunchTemplates", LaunchTemplateNames=[name])
    except PermanentError as exc:
        if exc.code != "InvalidLaunchTemplateName.NotFoundException":
            raise
        templates = {}
    group = (groups.get("AutoScalingGroups") or [None])[0]
    shape = None
    if group is not None:
        shape = (
            group["MinSize"], group["MaxSize"], group["DesiredCapacity"],
            group.get("LaunchTemplate"), sorted((t["Key"], t["Value"]) for t in group["Tags"]),
        )  # fmt: skip
    lts = [(t["LaunchTemplateId"], t["LatestVersionNumber"], t["DefaultVersionNumber"],
            sorted((x["Key"], x["Value"]) for x in t.get("Tags") or []))
           for t in templates.get("LaunchTemplates") or []]  # fmt: skip
    return shape, lts


@pytest.mark.parametrize(
    "tags",
    [{}, {**OWNER, "sigs.k8s.io/cluster-api-provider-aws/cluster/c1": "shared"},
     {**OWNER, "machinepool.cluster.x-k8s.io/pool-namespace": "other"}],
    ids=["untagged", "other-cluster-tag", "other-namespace"],
)  # fmt: skip
async def test_a_foreign_group_is_neither_adopted_nor_deleted(
    aws: AwsProvider, tags: dict[str, str]
) -> None:
    await _foreign_group(aws, "ns-p1", tags=tags)
    before = await _snapshot(aws, "ns-p1")
    assert before[0] is not None

    with pytest.raises(GroupOwnedByOthersError) as raised:
        await aws.ensure_group(spec=ours())
    assert raised.value.code == "GroupOwnedByOthers"
    assert "ns-p1" in raised.value.message
    with pytest.raises(GroupOwnedByOthersError):
        await aws.delete_group(name="ns-p1", owner_tags=OWNER)

    assert await _snapshot(aws, "ns-p1") == before


async def test_a_foreign_launch_template_alone_stops_the_group_being_made(
    aws: AwsProvider,
) -> None:
    await _foreign_group(aws, "ns-p1", tags={"team": "b"}, with_group=False)
    before = await _snapshot(aws, "ns-p1")

    with pytest.raises(GroupOwnedByOthersError, match="launch template ns-p1"):
        await aws.ensure_group(spec=ours())
    with pytest.raises(GroupOwnedByOthersError, match="launch template ns-p1"):
        await aws.delete_group(name="ns-p1", owner_tags=OWNER)

    assert await _snapshot(aws, "ns-p1") == before  # no group created, template unchanged


async def test_our_own_group_is_adopted_after_a_restart_and_deleted(
    aws: AwsProvider, proxy: FaultProxy
) -> None:
    await aws.ensure_group(spec=ours())
    api = AwsApi(region=REGION, endpoint_url=proxy.url, registry=CollectorRegistry())
    async with api, AwsProvider(region=REGION, api=api) as fresh:  # nothing in memory
        status = await fresh.ensure_group(spec=ours())
        assert status.name == "ns-p1"
        await fresh.delete_group(name="ns-p1", owner_tags=OWNER)
    assert await _snapshot(aws, "ns-p1") == (None, [])
