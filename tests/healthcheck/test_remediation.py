"""MachineHealthCheck end to end: the whole product on the real local control plane, the
in-memory simulator as the cloud (:func:`tests.machines._env.running_product`).

A Node is made unhealthy as a node lifecycle controller would: its ``Ready`` condition is
written through the Node status subresource with a chosen ``lastTransitionTime``. The
simulated kubelet writes Ready only on registration and when it becomes ready, so it never
undoes that. A Machine is made unhealthy by its own condition the same way: a condition the
Machine controller does not own (``DiskPressureExample``), written through the Machine status
subresource with a resourceVersion precondition next to the controller's own. An instance
whose Node never registers is made with :class:`HeldKubelets`, a
registrar whose kubelets for the next N new instances cannot reach the API server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from controller.api.kinds import MACHINE, MACHINE_HEALTH_CHECK
from controller.api.labels import POOL_NAME_LABEL
from controller.providers.inmemory.nodes import NodeRegistrar, NodeRegistration
from controller.runtime.kube import NODES, ApiError, Resource
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.waiting import until
from tests.machines._env import Env, converge, running_product

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENTS = Resource(group="", version="v1", plural="events", kind="Event")


class HeldKubelets:
    """A :class:`NodeRegistrar` whose kubelets for the next ``hold`` new Nodes never register
    (the call fails as an unreachable API server would; the simulator keeps retrying)."""

    def __init__(self, inner: NodeRegistrar) -> None:
        self.inner = inner
        self.hold = 0
        self.held: set[str] = set()
        self._seen: set[str] = set()

    async def register(self, *, cluster: str, node: NodeRegistration) -> None:
        if node.name not in self._seen:
            self._seen.add(node.name)
            if self.hold > 0:
                self.hold -= 1
                self.held.add(node.name)
        if node.name in self.held:
            raise ConnectionError(f"kubelet of {node.name} cannot reach the API server (held)")
        await self.inner.register(cluster=cluster, node=node)

    async def set_ready(self, *, cluster: str, name: str) -> None:
        await self.inner.set_ready(cluster=cluster, name=name)

    async def mark_unknown(self, *, cluster: str, name: str) -> None:
        await self.inner.mark_unknown(cluster=cluster, name=name)


@pytest.fixture
def kubelets() -> list[HeldKubelets]:
    return []


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    kubelets: list[HeldKubelets],
) -> AsyncIterator[Env]:
    def wrap(inner: NodeRegistrar) -> NodeRegistrar:
        kubelets.append(HeldKubelets(inner))
        return kubelets[0]

    async with running_product(
        control_plane=control_plane,
        api_client=api_client,
        namespace=namespace,
        wrap_registrar=wrap,
        events=True,
    ) as environment:
        yield environment


def _stamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _health_check(env: Env, *, name: str = "hc", **spec: Any) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "selector": {"matchLabels": {POOL_NAME_LABEL: env.pool}},
            "checks": {
                "nodeStartupTimeoutSeconds": 60,
                "unhealthyNodeConditions": [
                    {"type": "Ready", "status": "False", "timeoutSeconds": 3},
                    {"type": "Ready", "status": "Unknown", "timeoutSeconds": 3},
                ],
            },
            **spec,
        },
    }
    await env.kube.create(MACHINE_HEALTH_CHECK, namespace=env.namespace, body=body)


async def _set_ready(env: Env, provider_id: str, status: str, *, since: str) -> None:
    node = next(n for n in await env.nodes() if n["spec"]["providerID"] == provider_id)
    await env.kube.merge_patch(
        NODES, name=node["metadata"]["name"], subresource="status",
        patch={"status": {"conditions": [
            {"type": "Ready", "status": status, "reason": "Test", "message": "set by the test",
             "lastHeartbeatTime": since, "lastTransitionTime": since}]}},
    )  # fmt: skip


async def _set_machine_condition(env: Env, name: str, cond: dict[str, Any]) -> None:
    """Add ``cond`` to the Machine's conditions, keeping the others (a merge patch replaces
    the list whole, so the write carries the resourceVersion it was computed from)."""

    async def written() -> bool:
        machine = await env.kube.get(MACHINE, namespace=env.namespace, name=name)
        others = [c for c in (machine.get("status") or {}).get("conditions") or []
                  if c["type"] != cond["type"]]  # fmt: skip
        try:
            await env.kube.merge_patch(
                MACHINE, namespace=env.namespace, name=name, subresource="status",
                patch={"status": {"conditions": [*others, cond]}},
                resource_version=machine["metadata"]["resourceVersion"],
            )  # fmt: skip
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        return True

    await until(written, what=f"the {cond['type']} condition written on {name}")


async def _mhc(env: Env, name: str = "hc") -> Obj:
    return await env.kube.get(MACHINE_HEALTH_CHECK, namespace=env.namespace, name=name)


def _condition(obj: Obj, type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


async def _events(env: Env, *, reason: str) -> list[Obj]:
    listing = await env.kube.list(EVENTS, namespace=env.namespace)
    return [e for e in listing["items"] if e.get("reason") == reason]


def _gone(env: Env, provider_id: str) -> bool:
    return provider_id not in {i.provider_id for i in env.instances()}


async def _healthy(env: Env, count: int) -> bool:
    status = (await _mhc(env)).get("status") or {}
    return (status.get("expectedMachines"), status.get("currentHealthy")) == (count, count)


async def test_a_node_not_ready_past_its_timeout_is_drained_deleted_and_replaced(
    env: Env,
) -> None:
    await env.create_pool(replicas=4)
    await converge(env, 4)
    await env.place_pods()
    await _health_check(env, remediation={"triggerIf": {"unhealthyLessThanOrEqualTo": "40%"}})
    await until(lambda: _healthy(env, 4), what="4 healthy machines")
    victim = env.instances()[1]
    others = {i.provider_id for i in env.instances()} - {victim.provider_id}
    victim_machine = (await env.machine_for(victim.provider_id))["metadata"]["name"]

    await _set_ready(env, victim.provider_id, "False", since=_stamp())

    await until(lambda: _gone(env, victim.provider_id), what="the unhealthy instance to go")
    await converge(env, 4, timeout=90)
    now = {i.provider_id for i in env.instances()}
    assert victim.provider_id not in now
    assert others < now, "a healthy machine was touched"
    assert (await env.pool_obj())["spec"]["replicas"] == 4, "remediation lowered replicas"
    left = await env.pods_left()
    assert victim.provider_id not in left.values(), "the unhealthy Node was not drained"
    assert set(left.values()) == others
    await until(lambda: _healthy(env, 4), what="the health check to see 4 healthy machines")

    marked = await _events(env, reason="MachineMarkedUnhealthy")
    assert [e["involvedObject"]["kind"] for e in marked] == ["MachineHealthCheck"]
    assert victim_machine in marked[0]["message"]
    assert "condition Ready has been False" in marked[0]["message"]
    remediated = await _events(env, reason="MachineRemediated")
    assert len(remediated) == 1
    assert victim_machine in remediated[0]["message"]
    assert "UnhealthyNode" in remediated[0]["message"]
    labels = {"namespace": env.namespace, "name": "hc"}
    assert env.registry.get_sample_value("machinehealthcheck_remediations_total", labels) == 1
    assert (
        env.registry.get_sample_value(
            "machinehealthcheck_machines", {**labels, "health": "healthy"}
        )
        == 4
    )


async def test_a_machine_condition_past_its_timeout_gets_the_machine_remediated_and_replaced(
    env: Env,
) -> None:
    await env.create_pool(replicas=3)
    await converge(env, 3)
    await _health_check(env, checks={
        "nodeStartupTimeoutSeconds": 60,
        "unhealthyMachineConditions": [
            {"type": "DiskPressureExample", "status": "True", "timeoutSeconds": 3}],
    })  # fmt: skip
    await until(lambda: _healthy(env, 3), what="3 healthy machines")
    victim = env.instances()[0]
    others = {i.provider_id for i in env.instances()} - {victim.provider_id}
    victim_machine = (await env.machine_for(victim.provider_id))["metadata"]["name"]
    bystander = (await env.machine_for(sorted(others)[0]))["metadata"]["name"]

    # On a healthy Machine the same condition with another status is no reason to act, and the
    # Machine controller's own writes keep it (it owns only its own condition types): a spec
    # change makes it rewrite every condition it owns for the new generation.
    await _set_machine_condition(env, bystander, {
        "type": "DiskPressureExample", "status": "False", "reason": "Fine",
        "message": "set by the test", "lastTransitionTime": _stamp()})  # fmt: skip
    before = await env.kube.get(MACHINE, namespace=env.namespace, name=bystander)
    bumped = await env.kube.merge_patch(
        MACHINE, namespace=env.namespace, name=bystander, patch={"spec": {"minReadySeconds": 0}}
    )
    generation = int(bumped["metadata"]["generation"])
    assert generation > before["metadata"]["generation"]

    async def rewritten() -> bool:
        machine = await env.kube.get(MACHINE, namespace=env.namespace, name=bystander)
        return bool((machine.get("status") or {}).get("observedGeneration") == generation)

    await until(rewritten, what="the Machine controller to write the new generation's status")
    kept = await env.kube.get(MACHINE, namespace=env.namespace, name=bystander)
    assert _condition(kept, "DiskPressureExample")["reason"] == "Fine"
    await _set_machine_condition(env, victim_machine, {
        "type": "DiskPressureExample", "status": "True", "reason": "Full",
        "message": "set by the test", "lastTransitionTime": _stamp()})  # fmt: skip

    async def marked() -> bool:
        return bool(await _events(env, reason="MachineMarkedUnhealthy"))

    await until(marked, what="the Machine to be marked unhealthy")
    await until(lambda: _gone(env, victim.provider_id), what="the unhealthy instance to go")
    await converge(env, 3, timeout=90)
    now = {i.provider_id for i in env.instances()}
    assert others < now, "a healthy machine was touched"
    assert (await env.pool_obj())["spec"]["replicas"] == 3, "remediation lowered replicas"
    await until(lambda: _healthy(env, 3), what="the health check to see 3 healthy machines")

    (marking,) = await _events(env, reason="MachineMarkedUnhealthy")
    assert victim_machine in marking["message"]
    assert "Machine condition DiskPressureExample has been True" in marking["message"]
    (remediated,) = await _events(env, reason="MachineRemediated")
    assert victim_machine in remediated["message"]
    assert "UnhealthyMachine" in remediated["message"]
    kept = await env.kube.get(MACHINE, namespace=env.namespace, name=bystander)
    assert _condition(kept, "DiskPressureExample")["status"] == "False"
    assert _condition(kept, "HealthCheckSucceeded")["status"] == "True"


async def test_an_instance_whose_node_never_registers_is_replaced_after_the_startup_timeout(
    env: Env, kubelets: list[HeldKubelets]
) -> None:
    await _health_check(env, checks={"nodeStartupTimeoutSeconds": 8})
    kubelets[0].hold = 1
    await env.create_pool(replicas=3)

    async def one_held() -> bool:
        return len(kubelets[0].held) == 1

    await until(one_held, what="one kubelet held")
    (held_node,) = kubelets[0].held
    held = next(i for i in env.instances() if i.node_name == held_node)

    async def waiting_for_node() -> bool:
        found = [m for m in await env.machines() if m["spec"].get("providerID") == held.provider_id]
        cond = _condition(found[0], "HealthCheckSucceeded") if found else {}
        return cond.get("status") == "True" and "waiting up to 8s" in cond.get("message", "")

    await until(waiting_for_node, what="the held machine to be within its startup timeout")
    await converge(env, 3, timeout=90)
    assert held.provider_id not in {i.provider_id for i in env.instances()}
    assert (await env.pool_obj())["spec"]["replicas"] == 3
    remediated = await _events(env, reason="MachineRemediated")
    assert len(remediated) == 1
    assert "NodeStartupTimeout" in remediated[0]["message"]


async def test_too_many_unhealthy_short_circuits_and_recovery_resumes_remediation(
    env: Env,
) -> None:
    await env.create_pool(replicas=4)
    await converge(env, 4)
    await _health_check(env, remediation={"triggerIf": {"unhealthyLessThanOrEqualTo": "40%"}})
    await until(lambda: _healthy(env, 4), what="4 healthy machines")
    ids = sorted(i.provider_id for i in env.instances())
    bad = ids[:3]
    since = _stamp()  # one transition time for all three, so they expire together
    for provider_id in bad:
        await _set_ready(env, provider_id, "False", since=since)

    async def short_circuited(unhealthy: int) -> bool:
        cond = _condition(await _mhc(env), "RemediationAllowed")
        return cond.get("reason") == "TooManyUnhealthy" and cond.get("message", "").startswith(
            f"{unhealthy} of 4 Machines unhealthy"
        )

    await until(lambda: short_circuited(3), what="remediation short-circuited", timeout=30)
    cond = _condition(await _mhc(env), "RemediationAllowed")
    assert cond["status"] == "False"
    assert "at most 40% of 4, i.e. 1" in cond["message"]
    status = (await _mhc(env))["status"]
    assert (status["expectedMachines"], status["currentHealthy"]) == (4, 1)
    assert status["remediationsAllowed"] == 0
    machines = await env.machines()
    assert not [m for m in machines if m["metadata"].get("deletionTimestamp")]
    assert not [m for m in machines if _condition(m, "OwnerRemediated")]
    assert (
        sorted(
            m["spec"]["providerID"]
            for m in machines
            if _condition(m, "HealthCheckSucceeded").get("status") == "False"
        )
        == bad
    )
    restricted = await _events(env, reason="RemediationRestricted")
    assert len(restricted) == 1
    assert restricted[0]["type"] == "Warning"

    # 40% of 4 is 1.6, rounded down to 1 as Cluster API does: 2 unhealthy is still too many.
    await _set_ready(env, bad[0], "True", since=_stamp())
    await until(lambda: short_circuited(2), what="2 unhealthy, still short-circuited")
    assert not [m for m in await env.machines() if m["metadata"].get("deletionTimestamp")]

    await _set_ready(env, bad[1], "True", since=_stamp())
    await until(lambda: _gone(env, bad[2]), what="the one unhealthy instance left to go")
    await converge(env, 4, timeout=90)
    now = {i.provider_id for i in env.instances()}
    assert bad[2] not in now
    assert {bad[0], bad[1], ids[3]} < now
    cond = _condition(await _mhc(env), "RemediationAllowed")
    assert (cond["status"], cond["reason"]) == ("True", "RemediationAllowed")


async def test_a_selector_matching_nothing_is_reported(env: Env) -> None:
    await env.create_pool(replicas=1)
    await converge(env, 1)
    await _health_check(env, name="nothing", selector={"matchLabels": {POOL_NAME_LABEL: "nope"}})

    async def reported() -> bool:
        cond = _condition(await _mhc(env, "nothing"), "MachinesSelected")
        return cond.get("reason") == "NoMachinesSelected"

    await until(reported, what="NoMachinesSelected")
    mhc = await _mhc(env, "nothing")
    assert f"{POOL_NAME_LABEL}=nope" in _condition(mhc, "MachinesSelected")["message"]
    assert mhc["status"]["expectedMachines"] == 0
    machine = (await env.machines())[0]
    assert not _condition(machine, "HealthCheckSucceeded")


async def test_machines_of_a_paused_cluster_are_left_alone(env: Env) -> None:
    await env.create_pool(replicas=2)
    await converge(env, 2)
    await _health_check(env)
    await until(lambda: _healthy(env, 2), what="2 healthy machines")
    await env.kube.merge_patch(
        MACHINE_HEALTH_CHECK, namespace=env.namespace, name="hc",
        patch={"metadata": {"annotations": {"cluster.x-k8s.io/paused": ""}}},
    )  # fmt: skip

    async def paused() -> bool:
        return _condition(await _mhc(env), "Paused").get("status") == "True"

    await until(paused, what="Paused=True")
    victim = env.instances()[0]
    await _set_ready(env, victim.provider_id, "False", since=_stamp(datetime(2020, 1, 1)))
    machine = await env.machine_for(victim.provider_id)

    async def node_seen_not_ready() -> bool:
        m = await env.kube.get(MACHINE, namespace=env.namespace, name=machine["metadata"]["name"])
        return _condition(m, "NodeReady").get("status") == "False"

    await until(node_seen_not_ready, what="the Machine controller to see the Node")
    m = await env.kube.get(MACHINE, namespace=env.namespace, name=machine["metadata"]["name"])
    assert _condition(m, "HealthCheckSucceeded").get("status") == "True", "paused, not judged"
    assert not m["metadata"].get("deletionTimestamp")

    # The same facts, un-paused, are remediated: the pause was what held it back.
    await env.kube.merge_patch(
        MACHINE_HEALTH_CHECK, namespace=env.namespace, name="hc",
        patch={"metadata": {"annotations": {"cluster.x-k8s.io/paused": None}}},
    )  # fmt: skip
    await until(lambda: _gone(env, victim.provider_id), what="the unhealthy instance to go")
    await converge(env, 2, timeout=90)
    assert victim.provider_id not in {i.provider_id for i in env.instances()}
