"""The MachinePool reconciler against the real API server, with the test playing the
infrastructure provider (it writes the infra contract) and the kubelets (it registers Nodes
in the workload cluster, here the same API server reached through <cluster>-kubeconfig)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.app import controller_options, workload_clusters
from controller.machinepool.setup import setup_machinepool_controller
from controller.runtime.events import EventRecorder
from controller.runtime.kube import (
    EVENTS,
    NODES,
    SECRETS,
    WORKLOAD_HOST,
    ApiError,
    KubeClient,
    RestMetrics,
)
from controller.runtime.manager import Manager, ManagerOptions
from controller.testing import ControlPlane
from controller.testing.scenario import create_workload_cluster, machine_pool_body
from controller.testing.waiting import until

Obj = dict[str, Any]


@dataclass
class Env:
    kube: KubeClient
    namespace: str
    registry: CollectorRegistry
    manager: Manager

    async def pool(self, name: str) -> Obj:
        return await self.kube.get(MACHINE_POOL, namespace=self.namespace, name=name)

    def node_name(self, i: int) -> str:
        return f"{self.namespace}-node-{i}"

    def provider_id(self, i: int) -> str:
        return f"inmemory:///zone-a/{self.namespace}-i{i}"

    async def create_pool(
        self, name: str = "p1", *, replicas: int = 3, cluster: str = "c1"
    ) -> None:
        ns = self.namespace
        await self.kube.create(
            IN_MEMORY_MACHINE_POOL,
            namespace=ns,
            body={"metadata": {"name": name}, "spec": {"template": {"version": "1"}}},
        )
        await self.kube.create(
            MACHINE_POOL,
            namespace=ns,
            body=machine_pool_body(name=name, cluster=cluster, replicas=replicas),
        )

    async def provide(self, name: str, ids: list[int]) -> None:
        """Act as the infra provider: publish the contract for instances ``ids``."""
        pids = [self.provider_id(i) for i in ids]
        await self.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=self.namespace, name=name,
            patch={"spec": {"providerIDList": pids}},
        )  # fmt: skip
        await self.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL,
            namespace=self.namespace,
            name=name,
            subresource="status",
            patch={
                "status": {
                    "ready": True,
                    "initialization": {"provisioned": True},
                    "replicas": len(ids),
                }
            },
        )

    async def kubelet(self, i: int, *, ready: bool = True) -> None:
        """Act as a kubelet: register Node ``i`` with its provider ID, tainted, then Ready."""
        name = self.node_name(i)
        await self.kube.create(
            NODES,
            body={
                "metadata": {"name": name},
                "spec": {
                    "providerID": self.provider_id(i),
                    "taints": [
                        {"key": "node.cluster.x-k8s.io/uninitialized", "effect": "NoSchedule"}
                    ],
                },
            },
        )
        await self.kube.merge_patch(
            NODES,
            name=name,
            subresource="status",
            patch={
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "KubeletReady",
                            "message": "",
                            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "v1.35.4",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                        "kernelVersion": "",
                        "osImage": "",
                        "containerRuntimeVersion": "",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
        )

    async def node_exists(self, i: int) -> bool:
        try:
            await self.kube.get(NODES, name=self.node_name(i))
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def requests(self, method: str, *, host: str | None = None) -> float:
        """API requests made with ``method`` (to ``host``, if given), any status code."""
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == "rest_client_requests_total"
            and sample.labels["method"] == method
            and host in (None, sample.labels["host"])
        )

    async def quiet(self) -> None:
        """Wait until no PATCH has been made for half a second (the controllers' writes of a
        converged pool can trail the status that reads converged)."""
        settled = self.requests("PATCH")

        async def still() -> bool:
            nonlocal settled
            await asyncio.sleep(0.5)
            now, settled = settled, self.requests("PATCH")
            return now == settled

        await until(still, what="writes to settle")


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=registry))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await kube.create(
        SECRETS,
        namespace=namespace,
        body={"metadata": {"name": "boot"}, "stringData": {"value": "x"}},
    )
    manager = Manager(
        kube=kube,
        registry=registry,
        options=ManagerOptions(
            metrics_address="0", health_address="0", graceful_shutdown_timeout=5
        ),
    )
    async with EventRecorder(kube=kube, series_patch_interval=0.2) as recorder:
        options = controller_options(
            manager=manager,
            namespace=namespace,
            recorder=recorder,
            concurrency=4,
            reconcile_timeout=30,
        )
        setup_machinepool_controller(
            options=options,
            workloads=workload_clusters(options=options),
            infra_kinds=[IN_MEMORY_MACHINE_POOL],
        )
        shutdown = asyncio.Event()
        task = asyncio.create_task(manager.run(shutdown=shutdown))
        environment = Env(kube=kube, namespace=namespace, registry=registry, manager=manager)
        try:
            await until(manager.controllers_started.is_set, what="controllers")
            yield environment
        finally:
            shutdown.set()
            await asyncio.wait_for(task, 15)
            for i in range(10):
                with contextlib.suppress(ApiError):
                    await kube.delete(NODES, name=environment.node_name(i))


def _cond(obj: Obj, type_: str) -> Obj | None:
    return next(
        (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None
    )


async def test_pool_reaches_running_with_node_refs(env: Env) -> None:
    await env.create_pool(replicas=3)
    await until(lambda: _has_finalizer(env), what="the finalizer")

    async def owned() -> bool:
        infra = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
        return bool(infra["metadata"].get("ownerReferences"))

    await until(owned, what="the infra pool to be adopted")
    infra = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
    owner = infra["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("MachinePool", "p1", True)

    await env.provide("p1", [0, 1, 2])
    for i in range(3):
        await env.kubelet(i)

    async def running() -> bool:
        status = (await env.pool("p1")).get("status", {})
        return bool(status.get("phase") == "Running" and status.get("readyReplicas") == 3)

    await until(running, what="phase Running with 3 ready replicas")
    pool = await env.pool("p1")
    assert pool["spec"]["providerIDList"] == [env.provider_id(i) for i in range(3)]
    assert [r["name"] for r in pool["status"]["nodeRefs"]] == [env.node_name(i) for i in range(3)]
    assert pool["status"]["availableReplicas"] == 3
    assert pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
    assert pool["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "c1"
    for type_ in ("InfrastructureReady", "BootstrapConfigReady", "MachinesReady", "Available"):
        cond = _cond(pool, type_)
        assert cond is not None, type_
        assert cond["status"] == "True", cond
    node = await env.kube.get(NODES, name=env.node_name(0))
    assert node["metadata"]["annotations"]["cluster.x-k8s.io/owner-name"] == "p1"
    assert all(
        t["key"] != "node.cluster.x-k8s.io/uninitialized" for t in node["spec"].get("taints", [])
    )

    # Converged: an idle period makes no writes at all. The status can read converged a
    # moment before the last Node's annotations are written, so first let writes settle.
    await env.quiet()
    patches = env.requests("PATCH")
    reconciles = env.metric("controller_runtime_reconcile_total", controller="machinepool",
                            result="success")  # fmt: skip
    await asyncio.sleep(2)
    assert env.requests("PATCH") == patches
    assert env.metric("controller_runtime_reconcile_total", controller="machinepool",
                      result="success") - reconciles <= 1  # fmt: skip

    # Scale in: the provider drops instance 2; its Node is deleted, the rest untouched.
    await env.kube.merge_patch(MACHINE_POOL, namespace=env.namespace, name="p1",
                               patch={"spec": {"replicas": 2}})  # fmt: skip
    await env.provide("p1", [0, 1])

    async def scaled() -> bool:
        status = (await env.pool("p1")).get("status", {})
        return (
            status.get("phase") == "Running"
            and status.get("replicas") == 2
            and not await env.node_exists(2)
        )

    await until(scaled, what="scale in to 2 with the retired Node deleted")
    assert await env.node_exists(0)
    assert await env.node_exists(1)


async def test_matching_a_node_is_one_patch_per_node(env: Env, control_plane: ControlPlane) -> None:
    """Owner annotations and the uninitialized taint go in one request per Node. Workload
    clusters' requests are counted under one ``host`` label value (their addresses are the
    tenants'), apart from the management cluster's; only c2 has a pool here. The workload
    cluster is reached as ``localhost`` (the same API server as ``127.0.0.1``)."""
    host = f"localhost:{control_plane.apiserver_port}"
    kubeconfig = control_plane.kubeconfig()
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = f"https://{host}"
    await env.kube.create(CLUSTER, namespace=env.namespace,
                          body={"metadata": {"name": "c2"}, "spec": {}})  # fmt: skip
    await env.kube.create(
        SECRETS, namespace=env.namespace,
        body={"metadata": {"name": "c2-kubeconfig",
                           "labels": {"cluster.x-k8s.io/cluster-name": "c2"}},
              "type": "cluster.x-k8s.io/secret",
              "stringData": {"value": yaml.safe_dump(kubeconfig)}},
    )  # fmt: skip
    await env.create_pool("p2", replicas=3, cluster="c2")
    await env.provide("p2", [0, 1, 2])
    for i in range(3):
        await env.kubelet(i)

    async def matched() -> bool:
        for i in range(3):
            node = await env.kube.get(NODES, name=env.node_name(i))
            annotations = node["metadata"].get("annotations") or {}
            if annotations.get("cluster.x-k8s.io/owner-name") != "p2" or any(
                t["key"] == "node.cluster.x-k8s.io/uninitialized"
                for t in node["spec"].get("taints", [])
            ):
                return False
        status = (await env.pool("p2")).get("status", {})
        return bool(status.get("phase") == "Running" and status.get("readyReplicas") == 3)

    await until(matched, what="3 Nodes annotated and untainted, the pool Running")
    await env.quiet()
    assert env.requests("PATCH", host=WORKLOAD_HOST) == 3
    assert env.requests("POST", host=WORKLOAD_HOST) == env.requests("PUT", host=WORKLOAD_HOST) == 0


async def _has_finalizer(env: Env) -> bool:
    pool = await env.pool("p1")
    return "machinepool.cluster.x-k8s.io" in (pool["metadata"].get("finalizers") or [])


async def test_missing_cluster_is_a_condition_that_clears(env: Env) -> None:
    await env.create_pool(cluster="late")

    async def reported() -> bool:
        cond = _cond(await env.pool("p1"), "Available")
        return cond is not None and cond["reason"] == "ClusterNotFound"

    await until(reported, what="ClusterNotFound")

    async def warned() -> bool:
        events = await env.kube.list(EVENTS, namespace=env.namespace)
        return any(
            e["reason"] == "ClusterNotFound"
            and e["type"] == "Warning"
            and e["regarding"]["kind"] == "MachinePool"
            and "Cluster" in e["note"]
            for e in events["items"]
        )

    await until(warned, what="a Warning Event ClusterNotFound on the MachinePool")
    await env.kube.create(
        CLUSTER, namespace=env.namespace, body={"metadata": {"name": "late"}, "spec": {}}
    )
    await until(lambda: _has_finalizer(env), what="reconcile after the Cluster appeared")


async def test_paused_pool_is_left_alone_until_resumed(env: Env) -> None:
    await env.create_pool(replicas=1)
    await env.provide("p1", [0])
    await env.kubelet(0)

    async def ids(n: int) -> bool:
        return len((await env.pool("p1"))["spec"].get("providerIDList", [])) == n

    await until(lambda: ids(1), what="one provider ID")
    await env.kube.merge_patch(
        MACHINE_POOL, namespace=env.namespace, name="p1",
        patch={"metadata": {"annotations": {"cluster.x-k8s.io/paused": ""}}},
    )  # fmt: skip

    async def paused() -> bool:
        cond = _cond(await env.pool("p1"), "Paused")
        return cond is not None and cond["status"] == "True"

    await until(paused, what="Paused=True")
    await env.provide("p1", [0, 1])
    await asyncio.sleep(1)
    assert await ids(1)
    await env.kube.merge_patch(
        MACHINE_POOL, namespace=env.namespace, name="p1",
        patch={"metadata": {"annotations": {"cluster.x-k8s.io/paused": None}}},
    )  # fmt: skip
    await until(lambda: ids(2), what="the paused change applied after resuming")


async def test_deletion_removes_infra_and_nodes_then_the_pool(env: Env) -> None:
    await env.create_pool(replicas=1)
    await env.provide("p1", [0])
    await env.kubelet(0)

    async def has_ref() -> bool:
        return bool((await env.pool("p1")).get("status", {}).get("nodeRefs"))

    await until(has_ref, what="a node ref")
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="p1")

    async def gone() -> bool:
        try:
            await env.pool("p1")
        except ApiError as exc:
            return exc.not_found
        return False

    await until(gone, what="the MachinePool to be deleted")
    assert not await env.node_exists(0)
    with pytest.raises(ApiError) as err:
        await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
    assert err.value.not_found


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class BadInput:
    """A bad input, the condition it must produce, and the fix that must clear it."""

    name: str
    condition: str
    reason: str
    fix_condition: str
    fix_status: str


async def _make_bad(env: Env, case: str) -> None:
    ns = env.namespace
    if case == "unknown infrastructure kind":
        await env.create_pool(replicas=1)
        await env.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name="p1",
            patch={"spec": {"template": {"spec": {"infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "NoSuchMachinePool",
                "name": "p1"}}}}},
        )  # fmt: skip
    elif case == "missing infrastructure object":
        await env.create_pool(replicas=1)
        await env.kube.delete(IN_MEMORY_MACHINE_POOL, namespace=ns, name="p1")
    elif case == "unknown bootstrap config kind":
        await env.create_pool(replicas=1)
        await env.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name="p1",
            patch={"spec": {"template": {"spec": {"bootstrap": {
                "dataSecretName": None,
                "configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfig",
                              "name": "p1"}}}}}},
        )  # fmt: skip
    elif case == "missing bootstrap secret":
        await env.create_pool(replicas=1)
        await env.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name="p1",
            patch={"spec": {"template": {"spec": {"bootstrap": {"dataSecretName": "later"}}}}},
        )  # fmt: skip
    elif case == "provider reports a failure":
        await env.create_pool(replicas=1)
        await env.provide("p1", [0])
        await env.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=ns, name="p1", subresource="status",
            patch={"status": {"failureReason": "InsufficientCapacity",
                              "failureMessage": "no capacity in zone-a"}},
        )  # fmt: skip
    elif case == "providerID matching no Node":
        await env.create_pool(replicas=1)
        await env.provide("p1", [7])
    else:
        raise AssertionError(case)


async def _fix(env: Env, case: str) -> None:
    ns = env.namespace
    if case == "unknown infrastructure kind":
        await env.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name="p1",
            patch={"spec": {"template": {"spec": {"infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "InMemoryMachinePool",
                "name": "p1"}}}}},
        )  # fmt: skip
        await env.provide("p1", [0])
    elif case == "missing infrastructure object":
        await env.kube.create(
            IN_MEMORY_MACHINE_POOL, namespace=ns, body={"metadata": {"name": "p1"}, "spec": {}}
        )
        await env.provide("p1", [0])
    elif case == "unknown bootstrap config kind":
        await env.kube.merge_patch(
            MACHINE_POOL, namespace=ns, name="p1",
            patch={"spec": {"template": {"spec": {"bootstrap": {
                "configRef": None, "dataSecretName": "boot"}}}}},
        )  # fmt: skip
    elif case == "missing bootstrap secret":
        await env.kube.create(
            SECRETS, namespace=ns,
            body={"metadata": {"name": "later",
                               "labels": {"cluster.x-k8s.io/cluster-name": "c1"}},
                  "stringData": {"value": "x"}},
        )  # fmt: skip
    elif case == "provider reports a failure":
        await env.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=ns, name="p1", subresource="status",
            patch={"status": {"failureReason": None, "failureMessage": None}},
        )  # fmt: skip
    elif case == "providerID matching no Node":
        await env.kubelet(7)


BAD_INPUTS = [
    BadInput("unknown infrastructure kind", "InfrastructureReady", "InvalidInfrastructureRef",
             "InfrastructureReady", "True"),
    BadInput("missing infrastructure object", "InfrastructureReady", "InfrastructureNotFound",
             "InfrastructureReady", "True"),
    BadInput("unknown bootstrap config kind", "BootstrapConfigReady", "InvalidConfigRef",
             "BootstrapConfigReady", "True"),
    BadInput("missing bootstrap secret", "BootstrapConfigReady", "BootstrapSecretNotFound",
             "BootstrapConfigReady", "True"),
    BadInput("provider reports a failure", "InfrastructureReady", "InsufficientCapacity",
             "InfrastructureReady", "True"),
    BadInput("providerID matching no Node", "MachinesReady", "WaitingForNodes",
             "MachinesReady", "True"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.name)
async def test_bad_input_is_a_condition_that_clears_by_itself(env: Env, case: BadInput) -> None:
    await _make_bad(env, case.name)

    async def reported() -> bool:
        cond = _cond(await env.pool("p1"), case.condition)
        return cond is not None and cond["status"] != "True" and cond["reason"] == case.reason

    await until(reported, what=f"{case.condition} reason {case.reason}")
    pool = await env.pool("p1")
    cond = _cond(pool, case.condition)
    assert cond is not None
    assert cond["message"]
    if case.name == "provider reports a failure":
        v1 = pool["status"]["deprecated"]["v1beta1"]
        assert v1["failureReason"] == "InsufficientCapacity"
        assert "no capacity in zone-a" in v1["failureMessage"]
    if case.name == "providerID matching no Node":
        assert env.provider_id(7) in cond["message"]

    # No hot loop while the input stays bad: a handful of reconciles, not hundreds.
    before = sum(
        env.metric("controller_runtime_reconcile_total", controller="machinepool", result=r)
        for r in ("success", "error", "requeue", "requeue_after")
    )
    await asyncio.sleep(2)
    after = sum(
        env.metric("controller_runtime_reconcile_total", controller="machinepool", result=r)
        for r in ("success", "error", "requeue", "requeue_after")
    )
    assert after - before <= 3

    await _fix(env, case.name)

    async def cleared() -> bool:
        fixed = _cond(await env.pool("p1"), case.fix_condition)
        return fixed is not None and fixed["status"] == case.fix_status

    await until(cleared, what=f"{case.fix_condition}={case.fix_status} after the fix")
    if case.name == "provider reports a failure":
        v1 = (await env.pool("p1"))["status"]["deprecated"]["v1beta1"]
        assert "failureReason" not in v1
        assert "failureMessage" not in v1


async def test_deletion_with_an_unreachable_workload_cluster_gives_up_on_nodes(
    env: Env,
) -> None:
    await env.create_pool(replicas=1)
    await env.kube.merge_patch(
        MACHINE_POOL, namespace=env.namespace, name="p1",
        patch={"spec": {"template": {"spec": {"deletion": {"nodeDeletionTimeoutSeconds": 2}}}}},
    )  # fmt: skip
    await env.provide("p1", [0])
    await env.kubelet(0)

    async def has_ref() -> bool:
        return bool((await env.pool("p1")).get("status", {}).get("nodeRefs"))

    await until(has_ref, what="a node ref")
    # The workload cluster becomes unreachable: its kubeconfig Secret goes away.
    await env.kube.delete(SECRETS, namespace=env.namespace, name="c1-kubeconfig")
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="p1")

    async def gone() -> bool:
        try:
            await env.pool("p1")
        except ApiError as exc:
            return exc.not_found
        return False

    await until(gone, timeout=20, what="deletion to finish despite the unreachable cluster")
    assert await env.node_exists(0)  # left behind, as nodeDeletionTimeoutSeconds allows
