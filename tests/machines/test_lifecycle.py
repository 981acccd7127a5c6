"""MachinePool Machines end to end: the whole product (controller.app.setup_controllers) on the
real local control plane with the in-memory simulator as the cloud. Pods are plain objects
bound to Nodes; the simulator's kubelet finishes their deletion as a real one would.

The product runs as :func:`tests.machines._env.running_product` composes it. After every
scenario :meth:`Env.consistency_problems` lists instances, infra machines, Machines and Nodes
and checks that each instance has exactly one of each, and nothing else exists: nothing lost,
duplicated or orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from controller.api.kinds import IN_MEMORY_MACHINE, IN_MEMORY_MACHINE_POOL, MACHINE, MACHINE_POOL
from controller.api.labels import DELETE_MACHINE_ANNOTATION, MACHINE_FINALIZER
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import NODES, ApiError, Resource
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.scenario import machine_pool_body
from controller.testing.waiting import until
from tests.machines._env import PDBS, TEMPLATE, Env, converge, running_product


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    async with running_product(
        control_plane=control_plane, api_client=api_client, namespace=namespace, events=True
    ) as environment:
        yield environment


pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENTS = Resource(group="", version="v1", plural="events", kind="Event")


async def test_deleting_one_machine_drains_it_and_shrinks_the_pool(env: Env) -> None:
    await env.create_pool(replicas=5)
    await converge(env, 5)
    await env.place_pods()
    victim = env.instances()[2]
    others = {i.provider_id for i in env.instances()} - {victim.provider_id}
    machine = await env.machine_for(victim.provider_id)

    await env.kube.delete(MACHINE, namespace=env.namespace, name=machine["metadata"]["name"])
    await converge(env, 4)

    assert {i.provider_id for i in env.instances()} == others
    assert {n["spec"]["providerID"] for n in await env.nodes()} == others
    left = await env.pods_left()
    assert victim.provider_id not in left.values(), "the victim's pod was not evicted"
    assert set(left.values()) == others, "pods on the other Nodes were touched"
    assert (await env.pool_obj())["spec"]["replicas"] == 4


async def test_deleting_a_machine_twice_lowers_replicas_once(env: Env) -> None:
    await env.create_pool(replicas=3)
    await converge(env, 3)
    machine = await env.machine_for(env.instances()[0].provider_id)
    name = machine["metadata"]["name"]
    await env.kube.delete(MACHINE, namespace=env.namespace, name=name)
    with contextlib.suppress(ApiError):
        await env.kube.delete(MACHINE, namespace=env.namespace, name=name)
    await converge(env, 2)
    assert (await env.pool_obj())["spec"]["replicas"] == 2


async def test_deleting_a_machine_at_the_minimum_size_replaces_it(env: Env) -> None:
    # The group cannot shrink below minSize: the Machine goes (drained, Node deleted), the
    # count stays, and the cloud launches a replacement; nothing waits forever.
    await env.create_pool(replicas=2, minSize=2)
    await converge(env, 2)
    await env.place_pods()
    victim = env.instances()[0]
    machine = await env.machine_for(victim.provider_id)
    name = machine["metadata"]["name"]

    await env.kube.delete(MACHINE, namespace=env.namespace, name=name)

    async def replaced() -> bool:
        ids = {i.provider_id for i in env.instances()}
        return victim.provider_id not in ids and await env.converged(2)

    try:
        await until(replaced, what="the victim replaced", timeout=60, interval=0.2)
    except TimeoutError:
        raise AssertionError(await env.consistency_problems(replicas=2)) from None
    assert (await env.pool_obj())["spec"]["replicas"] == 2
    assert victim.provider_id not in (await env.pods_left()).values()
    events = (await env.kube.list(EVENTS, namespace=env.namespace))["items"]
    replaced_events = [e for e in events if e.get("reason") == "MachineReplaced"]
    assert len(replaced_events) == 1, [e.get("reason") for e in events]
    assert name in replaced_events[0]["message"]
    assert not [e for e in events if e.get("reason") == "MachineDeleted"]


async def test_scale_in_takes_the_marked_machine_then_the_oldest(env: Env) -> None:
    await env.create_pool(replicas=5, deletePolicy="Oldest")
    await converge(env, 5)
    await env.place_pods()
    by_age = sorted(env.instances(), key=lambda i: (i.launched_at, i.instance_id))
    marked = by_age[3]
    machine = await env.machine_for(marked.provider_id)
    await env.kube.merge_patch(
        MACHINE, namespace=env.namespace, name=machine["metadata"]["name"],
        patch={"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "yes"}}},
    )  # fmt: skip

    await env.scale(3)
    await converge(env, 3)

    gone = {i.provider_id for i in by_age} - {i.provider_id for i in env.instances()}
    assert gone == {marked.provider_id, by_age[0].provider_id}
    left = await env.pods_left()
    assert not gone & set(left.values()), "a removed machine's pod was not evicted"
    assert len(left) == 3


async def test_template_change_rolls_every_machine_keeping_four_ready(env: Env) -> None:
    await env.create_pool(
        replicas=4, strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    await converge(env, 4)
    before = {i.provider_id for i in env.instances()}

    ready_counts: list[int] = []
    nodes = Informer(kube=env.kube, resource=NODES)

    def sample(_: InformerEvent) -> None:
        ready_counts.append(
            sum(
                1
                for n in nodes.store.values()
                if f"/{env.group}-" in (n.get("spec") or {}).get("providerID", "")
                and _ready(n)
                and not n["spec"].get("unschedulable")
            )
        )

    nodes.add_handler(sample)
    watcher = asyncio.create_task(nodes.run())
    try:
        await until(lambda: nodes.synced, what="node informer")
        await env.kube.merge_patch(
            IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name=env.pool,
            patch={"spec": {"template": {**TEMPLATE, "version": "2"}}},
        )  # fmt: skip

        async def rolled() -> bool:
            pool = await env.pool_obj()
            return (
                all(i.version == "2" for i in env.instances())
                and (pool.get("status") or {}).get("upToDateReplicas") == 4
                and await env.converged(4)
            )

        await until(rolled, what="every machine replaced", timeout=120)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert not before & {i.provider_id for i in env.instances()}
    assert ready_counts, "no Node event was sampled"
    # Cordoned Nodes count as unavailable: fewer than 4 schedulable Ready Nodes never seen
    # once the rollout began (samples before the first surge are 4 already).
    assert min(ready_counts) >= 4, ready_counts


def _ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


async def test_a_pdb_that_allows_nothing_blocks_scale_in_until_the_drain_timeout(
    env: Env,
) -> None:
    await env.create_pool(replicas=3, deletion={"nodeDrainTimeoutSeconds": 10})
    await converge(env, 3)
    await env.place_pods(labels={"app": "guarded"})
    await env.kube.create(
        PDBS,
        namespace=env.namespace,
        body={"metadata": {"name": "guard"},
              "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "guarded"}}}},
    )  # fmt: skip
    # No disruption controller runs here: publish the status one would (3 healthy, 3 needed).
    await env.kube.merge_patch(
        PDBS, namespace=env.namespace, name="guard", subresource="status",
        patch={"status": {"observedGeneration": 1, "disruptionsAllowed": 0,
                          "currentHealthy": 3, "desiredHealthy": 3, "expectedPods": 3}},
    )  # fmt: skip
    victim = env.instances()[0]
    machine = await env.machine_for(victim.provider_id)
    name = machine["metadata"]["name"]
    await env.kube.merge_patch(
        MACHINE, namespace=env.namespace, name=name,
        patch={"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "yes"}}},
    )  # fmt: skip
    await env.scale(2)

    seen: list[dict[str, Any]] = []

    async def blocked() -> bool:
        obj = await env.kube.get(MACHINE, namespace=env.namespace, name=name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Deleting" and cond.get("reason") == "DrainingNode":
                seen.append(cond)
                return "PodDisruptionBudget" in cond.get("message", "") or "disruption" in (
                    cond.get("message", "").lower()
                )
        return False

    await until(blocked, what="the drain to report the blocking budget", timeout=30)

    async def pool_says_so() -> bool:
        for cond in (await env.pool_obj()).get("status", {}).get("conditions") or []:
            if cond["type"] == "ScalingDown" and f"Machine {name}" in cond.get("message", ""):
                return "DrainingNode" in cond["message"]
        return False

    await until(pool_says_so, what="the pool's ScalingDown condition to name the drain")
    assert victim.provider_id in {i.provider_id for i in env.instances()}, (
        "the instance went before the drain timeout"
    )
    await converge(env, 2, timeout=60)
    assert victim.provider_id not in {i.provider_id for i in env.instances()}


async def test_an_instance_that_vanishes_is_replaced_and_its_machine_and_node_go(
    env: Env,
) -> None:
    await env.create_pool(replicas=3)
    await converge(env, 3)
    lost = env.instances()[1]
    await env.simulator.delete_instance(name=env.group, instance_id=lost.instance_id, shrink=False)
    await converge(env, 3)
    assert lost.provider_id not in {i.provider_id for i in env.instances()}
    assert lost.provider_id not in {n["spec"]["providerID"] for n in await env.nodes()}
    assert (await env.pool_obj())["spec"]["replicas"] == 3


async def test_a_machine_whose_node_never_appears_says_so_and_deletes_cleanly(env: Env) -> None:
    await env.kube.create(
        IN_MEMORY_MACHINE_POOL,
        namespace=env.namespace,
        body={"metadata": {"name": env.pool},
              "spec": {"template": {**TEMPLATE, "failureRate": 1}}},
    )  # fmt: skip
    await env.kube.create(
        MACHINE_POOL,
        namespace=env.namespace,
        body=machine_pool_body(name=env.pool, cluster="c1", replicas=1),
    )

    async def reported() -> bool:
        for machine in await env.machines():
            conds = {c["type"]: c for c in (machine.get("status") or {}).get("conditions") or []}
            if conds.get("NodeHealthy", {}).get("reason") == "NodeNotFound":
                return True
        return False

    await until(reported, what="a Machine reporting its missing Node", timeout=30)
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name=env.pool)

    async def all_gone() -> bool:
        return not (await env.machines() or await env.infra_machines() or env.instances())

    await until(all_gone, what="pool, Machines and instances gone", timeout=60)
    assert await env.nodes() == []


async def test_deleting_the_pool_drains_and_removes_every_machine_and_node(env: Env) -> None:
    await env.create_pool(replicas=3)
    await converge(env, 3)
    await env.place_pods()
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name=env.pool)

    async def all_gone() -> bool:
        return not (
            await env.machines()
            or await env.infra_machines()
            or env.instances()
            or await env.nodes()
        )

    await until(all_gone, what="Machines, instances and Nodes gone", timeout=60, interval=0.2)
    assert await env.pods_left() == {}, "pods were not evicted before their Nodes went"


async def test_machine_addresses_come_from_the_infra_machine_else_from_the_node(
    env: Env,
) -> None:
    await env.create_pool(replicas=1)
    await converge(env, 1)
    [instance] = env.instances()
    [node] = [n for n in await env.nodes() if n["spec"]["providerID"] == instance.provider_id]
    wanted: list[dict[str, str]] = node["status"]["addresses"]

    async def machine_has_wanted() -> bool:
        machine = await env.machine_for(instance.provider_id)
        return bool((machine.get("status") or {}).get("addresses") == wanted)

    # The simulator's infra machines report no addresses: the Node's stand in.
    await until(machine_has_wanted, timeout=10, what="the Node's addresses")
    # An infra machine that reports addresses (as an AWSMachine does) wins, as in Cluster API.
    machine = await env.machine_for(instance.provider_id)
    wanted = [{"type": "InternalIP", "address": "192.0.2.7"}]
    await env.kube.merge_patch(
        IN_MEMORY_MACHINE, namespace=env.namespace,
        name=machine["spec"]["infrastructureRef"]["name"], subresource="status",
        patch={"status": {"addresses": wanted}},
    )  # fmt: skip
    await until(machine_has_wanted, timeout=10, what="the infra machine's addresses")


async def test_a_machine_whose_pool_owner_reference_has_a_stale_uid_is_not_acted_on(
    env: Env,
) -> None:
    """A Machine naming the live pool by name but with another uid (left over from a pool of
    the same name, or forged) gets nothing done for that pool: deleting it drains no Node and
    deletes no infra machine; it is only let go (its finalizer released)."""
    await env.create_pool(replicas=1)
    await converge(env, 1)
    [instance] = env.instances()
    live = await env.machine_for(instance.provider_id)
    infra_name = live["spec"]["infrastructureRef"]["name"]
    infra_before = await env.kube.get(IN_MEMORY_MACHINE, namespace=env.namespace, name=infra_name)
    stale = dict(live["spec"])
    await env.kube.create(
        MACHINE,
        namespace=env.namespace,
        body={
            "metadata": {
                "name": "stale",
                "finalizers": [MACHINE_FINALIZER],
                "ownerReferences": [{
                    "apiVersion": MACHINE_POOL.api_version, "kind": MACHINE_POOL.kind,
                    "name": env.pool, "uid": "00000000-0000-0000-0000-000000000000",
                    "controller": True,
                }],
            },
            "spec": stale,  # the live Machine's infra machine, providerID and cluster
        },
    )  # fmt: skip
    await env.kube.delete(MACHINE, namespace=env.namespace, name="stale")

    async def let_go() -> bool:
        try:
            await env.kube.get(MACHINE, namespace=env.namespace, name="stale")
        except ApiError as exc:
            return exc.not_found
        return False

    await until(let_go, what="the stale Machine's finalizer to be released", timeout=30)
    infra = await env.kube.get(IN_MEMORY_MACHINE, namespace=env.namespace, name=infra_name)
    assert infra["metadata"]["uid"] == infra_before["metadata"]["uid"]
    assert not infra["metadata"].get("deletionTimestamp"), "the live pool's instance was deleted"
    [node] = [n for n in await env.nodes() if n["spec"]["providerID"] == instance.provider_id]
    assert not node["spec"].get("unschedulable"), "the live pool's Node was cordoned"

    async def said_so() -> bool:
        events = await env.kube.list(EVENTS, namespace=env.namespace)
        return any(
            e.get("reason") == "StaleOwnerReference"
            and e.get("involvedObject", {}).get("name") == "stale"
            for e in events["items"]
        )

    await until(said_so, what="a StaleOwnerReference Event on the stale Machine", timeout=10)
    await converge(env, 1)
    assert [i.provider_id for i in env.instances()] == [instance.provider_id]
