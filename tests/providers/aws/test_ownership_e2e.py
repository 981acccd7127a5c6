"""Cloud names and ownership end to end on AWS (moto): the core and AWS reconcilers against the
real local control plane, as in :mod:`.test_e2e`.

- ``<ns>-a/prod`` and ``<ns>/a-prod`` (both ``<ns>-a-prod`` under the old naming) get two
  Auto Scaling groups and both converge;
- an untagged group (and launch template) with exactly the pool's computed name is left
  untouched, the pool reports ``GroupOwnedByOthers`` with an Event, and deleting the pool
  leaves the group.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import AWS_MACHINE_POOL, MACHINE_POOL
from controller.providers.aws.emulator import FaultProxy
from controller.runtime.events import EventRecorder
from controller.runtime.kube import EVENTS, NAMESPACES, ApiError, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster
from controller.testing.waiting import until

from . import test_e2e
from .conftest import ZONES
from .test_e2e import Env, _controllers

#: The workload cluster fixture of the end-to-end tests (Nodes cleaned up afterwards).
workload = test_e2e.workload

Obj = dict[str, Any]


async def test_pools_whose_old_names_collide_get_two_groups_and_both_converge(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    proxy: FaultProxy,
    workload: set[str],
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    other = f"{namespace}-a"
    await kube.create(NAMESPACES, body={"metadata": {"name": other}})
    try:
        await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=other)
        async with (
            _controllers(api_client=api_client, namespace=other, proxy=proxy,
                         nodes=workload) as env_a,
            _controllers(api_client=api_client, namespace=namespace, proxy=proxy,
                         nodes=workload) as env,
        ):  # fmt: skip
            await env_a.apply(name="prod", replicas=2)
            await env.apply(name="a-prod", replicas=1)
            await until(lambda: env_a.converged("prod", 2), timeout=60, what="prod Running")
            await until(lambda: env.converged("a-prod", 1), timeout=60, what="a-prod Running")
            one = (await env_a.infra("prod"))["status"]["groupName"]
            two = (await env.infra("a-prod"))["status"]["groupName"]
            assert one != two
            assert one == env_a.group_name("prod")
            assert two == env.group_name("a-prod")
            assert len((await env_a.group("prod") or {})["Instances"]) == 2
            assert len((await env.group("a-prod") or {})["Instances"]) == 1
            await env_a.delete("prod")
            await env.delete("a-prod")
    finally:
        await kube.delete(NAMESPACES, name=other)


async def _snapshot(env: Env, name: str) -> tuple[Any, ...]:
    group = await env.group(name)
    assert group is not None
    templates = await env.provider.api.call(
        "ec2", "DescribeLaunchTemplates", LaunchTemplateNames=[env.group_name(name)]
    )
    return (
        group["MinSize"], group["MaxSize"], group["DesiredCapacity"], group["LaunchTemplate"],
        sorted((t["Key"], t["Value"]) for t in group.get("Tags") or []),
        sorted(i["InstanceId"] for i in group["Instances"]),
        [(t["LaunchTemplateId"], t["LatestVersionNumber"], t.get("Tags"))
         for t in templates["LaunchTemplates"]],
    )  # fmt: skip


async def test_an_untagged_group_with_the_pools_name_is_left_untouched_and_reported(
    api_client: client.ApiClient, namespace: str, proxy: FaultProxy, workload: set[str]
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    async with (
        EventRecorder(kube=kube, series_patch_interval=0.2) as recorder,
        _controllers(
            api_client=api_client, namespace=namespace, proxy=proxy, nodes=workload,
            recorder=recorder,
        ) as env,
    ):  # fmt: skip
        name = env.group_name("p1")
        api = env.provider.api
        created = await api.call(
            "ec2", "CreateLaunchTemplate", LaunchTemplateName=name,
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )  # fmt: skip
        await api.call(
            "autoscaling", "CreateAutoScalingGroup", AutoScalingGroupName=name, MinSize=0,
            MaxSize=3, DesiredCapacity=1, AvailabilityZones=list(ZONES),
            LaunchTemplate={"LaunchTemplateId": created["LaunchTemplate"]["LaunchTemplateId"],
                            "Version": "$Latest"},
        )  # fmt: skip
        before = await _snapshot(env, "p1")

        await env.apply(name="p1", replicas=2)

        async def reported() -> bool:
            status = (await env.infra("p1")).get("status") or {}
            ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
            return bool(ready) and ready[0]["reason"] == "GroupOwnedByOthers"

        await until(reported, timeout=30, what="Ready=False GroupOwnedByOthers")
        infra = await env.infra("p1")
        assert infra["status"]["groupName"] == name
        assert not infra["spec"].get("providerIDList")

        async def event() -> bool:
            listed = await env.kube.list(EVENTS, namespace=namespace)
            return any(
                e.get("reason") == "GroupOwnedByOthers" and e["regarding"]["name"] == "p1"
                for e in listed["items"]
            )

        await until(event, timeout=30, what="a GroupOwnedByOthers Event")
        assert await _snapshot(env, "p1") == before

        await env.kube.delete(MACHINE_POOL, namespace=namespace, name="p1")

        async def pool_gone() -> bool:
            try:
                await env.kube.get(AWS_MACHINE_POOL, namespace=namespace, name="p1")
            except ApiError as exc:
                return exc.not_found
            return False

        await until(pool_gone, timeout=60, what="the AWSMachinePool's finalizer removed")
        assert await _snapshot(env, "p1") == before
        with contextlib.suppress(ApiError):
            await env.kube.delete(MACHINE_POOL, namespace=namespace, name="p1")
