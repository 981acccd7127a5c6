"""Simulated kubelets against the real local API server: the workload cluster is the same
control plane, reached through a ``<cluster>-kubeconfig`` Secret as in production.

Nodes are cluster-scoped and the control plane is shared by the whole session: every Node
here is named after the test's namespace (the group name carries it) and deleted at the end.

The kubelet tests watch a gone instance's Node go ``Unknown``; the cloud's node lifecycle
controller would delete it at its next pass, so they run it with a period longer than the
test (:data:`KUBELET_ONLY`); its own test runs it every :data:`MONITOR_PERIOD` seconds.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER
from controller.machines.drain import cordon, drain_step
from controller.providers.inmemory.client import InMemoryProvider
from controller.providers.inmemory.nodes import UNINITIALIZED_TAINT, ZONE_LABEL, NodeRegistration
from controller.providers.inmemory.server import SimulatorServer
from controller.providers.inmemory.simulator import Simulator
from controller.providers.inmemory.workload import KubeNodeRegistrar, WorkloadClusterUnavailable
from controller.runtime.kube import NODES, PODS, SECRETS, ApiError, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.waiting import until

from .helpers import group_spec, raw_node

#: A node-monitor period no test here outlives: the first pass (at start) finds nothing.
KUBELET_ONLY = 3600.0
MONITOR_PERIOD = 0.5


@dataclass
class Cloud:
    kube: KubeClient
    registrar: KubeNodeRegistrar
    sim: Simulator
    provider: InMemoryProvider
    group: str
    cluster: str

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """This test's Nodes by provider ID."""
        listed = await self.kube.list(NODES)
        return {
            node["spec"]["providerID"]: node
            for node in listed.get("items", [])
            if node["metadata"]["name"].startswith(self.group)
        }


def _ready(node: dict[str, Any]) -> dict[str, Any] | None:
    for condition in node.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return None


async def _secret(kube: KubeClient, *, namespace: str, control_plane: ControlPlane) -> None:
    """The Cluster ``wl`` and its kubeconfig Secret, as Cluster API writes them."""
    kubeconfig = yaml.safe_dump(control_plane.kubeconfig()).encode()
    await kube.create(CLUSTER, namespace=namespace, body={"metadata": {"name": "wl"}, "spec": {}})
    await kube.create(
        SECRETS,
        namespace=namespace,
        body={
            "metadata": {
                "name": "wl-kubeconfig",
                "labels": {"cluster.x-k8s.io/cluster-name": "wl"},
            },
            "type": "cluster.x-k8s.io/secret",
            "data": {"value": base64.b64encode(kubeconfig).decode()},
        },
    )


@contextlib.asynccontextmanager
async def cloud(
    api_client: client.ApiClient, namespace: str, *, node_monitor_period: float = KUBELET_ONLY
) -> AsyncIterator[Cloud]:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    group = f"{namespace}-pool"
    try:
        async with (
            KubeNodeRegistrar(
                management=kube, rest_metrics=RestMetrics(registry=CollectorRegistry())
            ) as registrar,
            Simulator(
                registrar=registrar,
                seed=3,
                node_retry_initial=0.1,
                node_retry_max=0.5,
                node_monitor_period=node_monitor_period,
            ) as sim,
            SimulatorServer(simulator=sim) as server,
            InMemoryProvider(base_url=server.url, registry=CollectorRegistry()) as provider,
        ):
            yield Cloud(
                kube=kube,
                registrar=registrar,
                sim=sim,
                provider=provider,
                group=group,
                cluster=f"{namespace}/wl",
            )
    finally:
        for pod in (await kube.list(PODS, namespace=namespace)).get("items", []):
            with contextlib.suppress(ApiError):
                await _delete_pod(kube, pod, grace=0)
        listed = await kube.list(NODES)
        for node in listed.get("items", []):
            if node["metadata"]["name"].startswith(group):
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=node["metadata"]["name"])


async def _pod(kube: KubeClient, *, namespace: str, name: str, node: str) -> dict[str, Any]:
    """A Running, Ready pod bound to ``node`` (as if scheduled there and started)."""
    await kube.create(
        PODS,
        namespace=namespace,
        body={
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            },
        },
    )
    return await kube.merge_patch(
        PODS,
        namespace=namespace,
        name=name,
        subresource="status",
        patch={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )


async def _delete_pod(kube: KubeClient, pod: dict[str, Any], *, grace: int | None = None) -> None:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if grace is not None:
        body["gracePeriodSeconds"] = grace
    meta = pod["metadata"]
    await kube.request(
        method="DELETE", path=PODS.path(namespace=meta["namespace"], name=meta["name"]), body=body
    )


async def _pod_or_none(kube: KubeClient, *, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(PODS, namespace=namespace, name=name)
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def test_nodes_register_turn_ready_and_go_unknown_when_deleted(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with cloud(api_client, namespace) as c:
        await _secret(c.kube, namespace=namespace, control_plane=control_plane)
        await c.provider.ensure_group(
            spec=group_spec(
                c.group,
                cluster=c.cluster,
                boot=0.2,
                ready=1.0,
                zones=("zone-a", "zone-b"),
                kubernetesVersion="v1.34.2",
                instanceType="small",
            )
        )
        await c.provider.set_capacity(name=c.group, desired=2)
        status = await c.provider.describe_group(name=c.group)
        wanted = {i.provider_id: i for i in status.instances}

        async def registered() -> bool:
            # created, then status written (as a kubelet does it: two calls)
            found = await c.nodes()
            return set(found) == set(wanted) and all(_ready(n) for n in found.values())

        await until(registered, timeout=15, what="Nodes registered")
        nodes = await c.nodes()
        for provider_id, node in nodes.items():
            inst = wanted[provider_id]
            assert node["metadata"]["name"] == inst.instance_id
            assert node["metadata"]["labels"][ZONE_LABEL] == inst.zone
            assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "small"
            # (the API server adds node.kubernetes.io/not-ready itself, as for any new Node)
            assert UNINITIALIZED_TAINT in node["spec"]["taints"]
            assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.2"
            ready = _ready(node)
            assert ready is not None
            assert ready["status"] in ("False", "True")  # True once readyDelaySeconds passed

        async def all_ready() -> bool:
            found = await c.nodes()
            return all((_ready(n) or {}).get("status") == "True" for n in found.values())

        await until(all_ready, timeout=15, what="Nodes Ready")

        victim, survivor = status.instances
        await c.provider.delete_instance(name=c.group, instance_id=victim.instance_id, shrink=True)

        async def victim_unknown() -> bool:
            node = (await c.nodes()).get(victim.provider_id)
            return node is not None and (_ready(node) or {}).get("status") == "Unknown"

        await until(victim_unknown, timeout=15, what="the deleted instance's Node Unknown")
        nodes = await c.nodes()
        ready = _ready(nodes[victim.provider_id])
        assert ready is not None
        assert ready["reason"] == "NodeStatusUnknown"
        assert (_ready(nodes[survivor.provider_id]) or {}).get("status") == "True"
        assert (await c.provider.describe_group(name=c.group)).desired_capacity == 1


async def test_an_unreachable_workload_cluster_is_retried_until_its_secret_appears(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with cloud(api_client, namespace) as c:
        await c.provider.ensure_group(
            spec=group_spec(c.group, cluster=c.cluster, boot=0.1, ready=0.1)
        )
        await c.provider.set_capacity(name=c.group, desired=1)

        async def running() -> bool:
            status = await c.provider.describe_group(name=c.group)
            return [i.state for i in status.instances] == ["running"]

        await until(running, timeout=10, what="the instance running")
        view = c.sim.inspect(name=c.group)
        assert view is not None
        assert view.instances[0].node == "absent"  # no Secret yet: nothing registered
        assert await c.nodes() == {}

        await _secret(c.kube, namespace=namespace, control_plane=control_plane)

        async def ready() -> bool:
            found = list((await c.nodes()).values())
            return len(found) == 1 and (_ready(found[0]) or {}).get("status") == "True"

        await until(ready, timeout=15, what="the Node registered and Ready")


async def test_the_kubelet_finishes_evicted_pods_only_while_its_instance_runs(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with cloud(api_client, namespace) as c:
        await _secret(c.kube, namespace=namespace, control_plane=control_plane)
        await c.provider.ensure_group(
            spec=group_spec(c.group, cluster=c.cluster, boot=0.1, ready=0.1)
        )
        await c.provider.set_capacity(name=c.group, desired=2)

        async def both_ready() -> bool:
            found = await c.nodes()
            return len(found) == 2 and all(
                (_ready(n) or {}).get("status") == "True" for n in found.values()
            )

        await until(both_ready, timeout=15, what="two Ready Nodes")
        victim, survivor = (await c.provider.describe_group(name=c.group)).instances
        await until(
            lambda: (
                c.registrar.live_nodes(cluster=c.cluster)
                == {victim.instance_id, survivor.instance_id}
            ),
            timeout=5,
            what="both kubelets live",
        )
        await _pod(c.kube, namespace=namespace, name="on-victim", node=victim.instance_id)
        await _pod(c.kube, namespace=namespace, name="web", node=survivor.instance_id)

        # A drain of the survivor's Node: the eviction leaves the pod terminating, and its
        # kubelet finishes it, so the next pass finds the Node drained.
        await cordon(kube=c.kube, node=survivor.instance_id)
        first = await drain_step(
            kube=c.kube, node=survivor.instance_id, now=datetime.now(UTC), node_unreachable=False
        )
        assert first.evicted == (f"{namespace}/web",)

        async def web_gone() -> bool:
            return await _pod_or_none(c.kube, namespace=namespace, name="web") is None

        await until(web_gone, timeout=10, what="the kubelet to finish the evicted pod")
        second = await drain_step(
            kube=c.kube, node=survivor.instance_id, now=datetime.now(UTC), node_unreachable=False
        )
        assert second.done

        # The victim's instance goes away: its kubelet no longer finishes anything.
        await c.provider.delete_instance(name=c.group, instance_id=victim.instance_id, shrink=True)

        async def victim_unknown() -> bool:
            node = (await c.nodes()).get(victim.provider_id)
            return node is not None and (_ready(node) or {}).get("status") == "Unknown"

        await until(victim_unknown, timeout=15, what="the victim's Node Unknown")
        assert c.registrar.live_nodes(cluster=c.cluster) == {survivor.instance_id}
        on_victim = await c.kube.get(PODS, namespace=namespace, name="on-victim")
        await _delete_pod(c.kube, on_victim)
        # A later deletion on the live Node is finished; the informer handles events in order,
        # so by then the victim's pod has been seen deleting and left alone.
        later = await _pod(c.kube, namespace=namespace, name="later", node=survivor.instance_id)
        await _delete_pod(c.kube, later)

        async def later_gone() -> bool:
            return await _pod_or_none(c.kube, namespace=namespace, name="later") is None

        await until(later_gone, timeout=10, what="the live kubelet to finish its pod")
        stuck = await _pod_or_none(c.kube, namespace=namespace, name="on-victim")
        assert stuck is not None
        assert stuck["metadata"].get("deletionTimestamp")


async def test_a_pod_deleted_before_its_node_registers_is_finished_once_it_does(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with cloud(api_client, namespace) as c:
        await c.provider.ensure_group(
            spec=group_spec(c.group, cluster=c.cluster, boot=0.1, ready=0.1)
        )
        await c.provider.set_capacity(name=c.group, desired=1)

        async def running() -> bool:
            status = await c.provider.describe_group(name=c.group)
            return [i.state for i in status.instances] == ["running"]

        await until(running, timeout=10, what="the instance running")
        (inst,) = (await c.provider.describe_group(name=c.group)).instances
        pod = await _pod(c.kube, namespace=namespace, name="early", node=inst.instance_id)
        await _delete_pod(c.kube, pod)
        assert (await c.kube.get(PODS, namespace=namespace, name="early"))["metadata"][
            "deletionTimestamp"
        ]

        await _secret(c.kube, namespace=namespace, control_plane=control_plane)

        async def early_gone() -> bool:
            return await _pod_or_none(c.kube, namespace=namespace, name="early") is None

        await until(early_gone, timeout=15, what="the registered kubelet to finish the pod")


async def test_the_cloud_deletes_not_ready_nodes_of_gone_instances_and_nothing_else(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    async with cloud(api_client, namespace, node_monitor_period=MONITOR_PERIOD) as c:
        await _secret(c.kube, namespace=namespace, control_plane=control_plane)
        await c.provider.ensure_group(
            spec=group_spec(c.group, cluster=c.cluster, boot=0.1, ready=0.1, zones=("zone-a",))
        )
        await c.provider.set_capacity(name=c.group, desired=2)

        async def both_ready() -> bool:
            found = await c.nodes()
            return len(found) == 2 and all(
                (_ready(n) or {}).get("status") == "True" for n in found.values()
            )

        await until(both_ready, timeout=15, what="two Ready Nodes")
        victim, survivor = (await c.provider.describe_group(name=c.group)).instances
        # Nodes the cloud must leave alone: another cloud's, one without a provider ID, and
        # the Node of a live instance that is not Ready.
        others = {
            f"{c.group}-aws": f"aws:///zone-a/{c.group}-aws",
            f"{c.group}-bare": None,
        }
        for name, provider_id in others.items():
            await c.kube.create(NODES, body=raw_node(name, provider_id=provider_id, ready=None))
        await c.kube.merge_patch(
            NODES, name=survivor.instance_id, subresource="status",
            patch={"status": {"conditions": [{"type": "Ready", "status": "False",
                                              "reason": "Test", "message": "set by the test"}]}},
        )  # fmt: skip
        # A Node of an instance this cloud never had (registered, then its instance vanished
        # before anyone recorded it), with no status at all.
        ghost = f"{c.group}-0000dead"
        await c.kube.create(
            NODES, body=raw_node(ghost, provider_id=f"inmemory:///zone-a/{ghost}", ready=None)
        )
        await c.provider.delete_instance(name=c.group, instance_id=victim.instance_id, shrink=True)

        async def gone() -> bool:
            names = {n["metadata"]["name"] for n in (await c.kube.list(NODES))["items"]}
            return not names & {ghost, victim.instance_id}

        await until(gone, timeout=10 * MONITOR_PERIOD, what="the gone instances' Nodes deleted")
        passes = c.sim.node_monitor_passes
        await until(
            lambda: c.sim.node_monitor_passes >= passes + 3,
            timeout=10 * MONITOR_PERIOD,
            what="three more passes (that must not touch the rest)",
        )
        names = {n["metadata"]["name"] for n in (await c.kube.list(NODES))["items"]}
        assert {survivor.instance_id, *others} <= names
        assert c.sim.nodes_deleted >= 2  # (and any stray in-memory Node of earlier tests)
        assert c.registrar.live_nodes(cluster=c.cluster) == {survivor.instance_id}


async def test_the_simulators_kubelet_follows_the_kubeconfig_rules(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """As the controller: no Cluster, no kubeconfig; an exec plugin is refused, never run."""
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    marker = tmp_path / "exec-ran"
    config = control_plane.kubeconfig()
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; exit 1"],
        }
    }
    await kube.create(
        SECRETS,
        namespace=namespace,
        body={
            "metadata": {"name": "x-kubeconfig", "labels": {"cluster.x-k8s.io/cluster-name": "x"}},
            "type": "cluster.x-k8s.io/secret",
            "stringData": {"value": yaml.safe_dump(config)},
        },
    )
    node = NodeRegistration(
        name=f"{namespace}-n0", provider_id=f"inmemory:///z/{namespace}-n0", zone="z",
        kubelet_version="v1.35.4",
    )  # fmt: skip
    async with KubeNodeRegistrar(management=kube) as registrar:
        with pytest.raises(WorkloadClusterUnavailable, match=r"Cluster \S+/x not found"):
            await registrar.register(cluster=f"{namespace}/x", node=node)
        await kube.create(
            CLUSTER, namespace=namespace, body={"metadata": {"name": "x"}, "spec": {}}
        )
        with pytest.raises(WorkloadClusterUnavailable, match=r"users\[\]\.user\.exec"):
            await registrar.register(cluster=f"{namespace}/x", node=node)
    assert not marker.exists()
    with contextlib.suppress(ApiError):
        await kube.delete(NODES, name=node.name)
