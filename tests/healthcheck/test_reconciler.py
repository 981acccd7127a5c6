"""The health check reconciler on filled caches, in virtual time, with a recording API client.

The fake client applies merge patches to the caches (as a watch would, at once) and checks
resourceVersion preconditions, so several reconciles in a row see their own writes and a
second reconcile with nothing new must write nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_HEALTH_CHECK
from controller.healthcheck.metrics import HealthCheckMetrics
from controller.healthcheck.reconciler import HealthCheckReconciler
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer
from controller.runtime.kube import NODES, ApiError, KubeClient, ResourceLike
from controller.runtime.store import Obj, by_provider_id
from controller.workload.clusters import ClusterKey, WorkloadClusters

NS = "ns"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@dataclass
class FakeKube:
    stores: dict[str, Informer]
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    version: int = 100
    #: Names whose writes fail with 409, as when the cache holds an older version.
    conflicts: set[str] = field(default_factory=set)

    async def merge_patch(
        self,
        resource: ResourceLike,
        *,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        kind = str(getattr(resource, "kind", ""))
        store = self.stores[kind].store
        key = f"{namespace}/{name}"
        current = copy.deepcopy(store.get(key))
        if current is None:
            raise ApiError(status=404, reason="NotFound", message=key)
        if name in self.conflicts or (
            resource_version is not None
            and current["metadata"]["resourceVersion"] != resource_version
        ):
            raise ApiError(status=409, reason="Conflict", message=key)
        self.patches.append((kind, name, patch))
        _merge(current, patch)
        self.version += 1
        current["metadata"]["resourceVersion"] = str(self.version)
        store.upsert(current)
        return current


@dataclass
class FakeWorkload:
    nodes: Informer

    def node_for_provider_id(self, provider_id: str) -> Obj | None:
        found = self.nodes.store.by_index(name="providerID", value=provider_id)
        return found[0] if found else None


@dataclass
class FakeWorkloads:
    clusters: dict[ClusterKey, FakeWorkload]

    def get(self, key: ClusterKey) -> FakeWorkload | None:
        return self.clusters.get(key)


@dataclass
class FakeRecorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, obj: Obj, *, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


class World:
    def __init__(self) -> None:
        self.clock = T0
        self.registry = CollectorRegistry()
        self.metrics = HealthCheckMetrics(registry=self.registry)
        self.recorder = FakeRecorder()
        placeholder = cast(KubeClient, None)
        self.mhcs = Informer(kube=placeholder, resource=MACHINE_HEALTH_CHECK)
        self.machines = Informer(kube=placeholder, resource=MACHINE)
        self.clusters = Informer(kube=placeholder, resource=CLUSTER)
        self.nodes = Informer(kube=placeholder, resource=NODES)
        self.nodes.store.add_index(name="providerID", func=by_provider_id)
        self.kube = FakeKube(stores={"MachineHealthCheck": self.mhcs, "Machine": self.machines})
        self.workloads = FakeWorkloads({ClusterKey(NS, "c1"): FakeWorkload(self.nodes)})
        self.reconciler = HealthCheckReconciler(
            kube=cast(KubeClient, self.kube),
            health_checks=self.mhcs,
            machines=self.machines,
            clusters=self.clusters,
            workloads=cast(WorkloadClusters, self.workloads),
            metrics=self.metrics,
            recorder=cast(EventRecorder, self.recorder),
            now=lambda: self.clock,
        )
        self.clusters.store.upsert({"metadata": {"name": "c1", "namespace": NS}, "spec": {}})

    def add_mhc(self, **spec: Any) -> None:
        body = {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "MachineHealthCheck",
            "metadata": {"name": "hc", "namespace": NS, "generation": 1, "resourceVersion": "1"},
            "spec": {
                "clusterName": "c1",
                "selector": {"matchLabels": {"pool": "p1"}},
                "checks": {
                    "nodeStartupTimeoutSeconds": 60,
                    "unhealthyNodeConditions": [
                        {"type": "Ready", "status": "False", "timeoutSeconds": 30},
                    ],
                },
                **spec,
            },
        }
        self.mhcs.store.upsert(body)

    def add_machine(self, name: str, *, node_ready: str | None = "True", **meta: Any) -> None:
        provider_id = f"inmemory:///a/{name}"
        self.machines.store.upsert({
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                         "creationTimestamp": _stamp(T0), "labels": {"pool": "p1"}, **meta},
            "spec": {"clusterName": "c1", "providerID": provider_id},
            "status": {},
        })  # fmt: skip
        if node_ready is not None:
            self.set_node(name, node_ready, since=T0)

    def set_node(self, name: str, ready: str, *, since: datetime) -> None:
        self.nodes.store.upsert({
            "metadata": {"name": f"node-{name}"},
            "spec": {"providerID": f"inmemory:///a/{name}"},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": _stamp(since)}]},
        })  # fmt: skip

    async def reconcile(self, *, at: float) -> float | None:
        self.clock = T0 + timedelta(seconds=at)
        result = await self.reconciler.reconcile(f"{NS}/hc")
        return result.requeue_after

    def conditions(self, name: str) -> dict[str, dict[str, Any]]:
        machine = self.machines.store.get(f"{NS}/{name}") or {}
        return {c["type"]: c for c in (machine.get("status") or {}).get("conditions") or []}

    def mhc_status(self) -> dict[str, Any]:
        return dict((self.mhcs.store.get(f"{NS}/hc") or {}).get("status") or {})

    def mhc_condition(self, type_: str) -> dict[str, Any]:
        found = [c for c in self.mhc_status().get("conditions", []) if c["type"] == type_]
        assert found, f"no {type_} condition"
        return dict(found[0])

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"namespace": NS, "name": "hc", **labels})


@pytest.fixture
def world() -> World:
    return World()


async def test_an_unhealthy_node_is_marked_exactly_when_its_timeout_expires(world: World) -> None:
    world.add_mhc(remediation={"triggerIf": {"unhealthyLessThanOrEqualTo": "40%"}})
    for name in ("m1", "m2", "m3", "m4"):
        world.add_machine(name)
    world.set_node("m2", "False", since=T0 + timedelta(seconds=5))

    assert await world.reconcile(at=10) == pytest.approx(25), "requeue for the expiry"
    assert world.conditions("m2")["HealthCheckSucceeded"]["status"] == "True"
    assert "OwnerRemediated" not in world.conditions("m2")

    assert await world.reconcile(at=35) is None
    marked = world.conditions("m2")
    assert (marked["HealthCheckSucceeded"]["status"], marked["HealthCheckSucceeded"]["reason"]) \
        == ("False", "UnhealthyNode")  # fmt: skip
    assert (marked["OwnerRemediated"]["status"], marked["OwnerRemediated"]["reason"]) == (
        "False",
        "WaitingForRemediation",
    )
    assert all(world.conditions(n)["HealthCheckSucceeded"]["status"] == "True"
               for n in ("m1", "m3", "m4"))  # fmt: skip
    status = world.mhc_status()
    assert (status["expectedMachines"], status["currentHealthy"],
            status["remediationsAllowed"]) == (4, 3, 0)  # fmt: skip
    assert status["targets"] == ["m1", "m2", "m3", "m4"]
    assert world.mhc_condition("RemediationAllowed")["status"] == "True"
    assert world.sample("machinehealthcheck_remediations_total") == 1
    assert world.sample("machinehealthcheck_machines", health="unhealthy") == 1
    assert [e[1] for e in world.recorder.events] == ["MachineMarkedUnhealthy"]

    writes = len(world.kube.patches)
    await world.reconcile(at=40)
    assert len(world.kube.patches) == writes, "nothing new: nothing written"
    assert world.sample("machinehealthcheck_remediations_total") == 1


async def test_too_many_unhealthy_short_circuits_until_enough_recover(world: World) -> None:
    world.add_mhc(remediation={"triggerIf": {"unhealthyLessThanOrEqualTo": "40%"}})
    for name in ("m1", "m2", "m3", "m4"):
        world.add_machine(name)
    for name in ("m1", "m2", "m3"):
        world.set_node(name, "False", since=T0)

    await world.reconcile(at=31)
    cond = world.mhc_condition("RemediationAllowed")
    assert (cond["status"], cond["reason"]) == ("False", "TooManyUnhealthy")
    assert "3 of 4 Machines unhealthy" in cond["message"]
    assert "at most 40% of 4, i.e. 1" in cond["message"]
    for name in ("m1", "m2", "m3"):
        assert world.conditions(name)["HealthCheckSucceeded"]["status"] == "False"
        assert "OwnerRemediated" not in world.conditions(name)
    assert world.mhc_status()["remediationsAllowed"] == 0
    assert world.sample("machinehealthcheck_short_circuited") == 1
    await world.reconcile(at=32)
    assert [e[1] for e in world.recorder.events] == ["RemediationRestricted"], "one Event"

    world.set_node("m1", "True", since=T0 + timedelta(seconds=40))
    await world.reconcile(at=41)
    assert world.mhc_condition("RemediationAllowed")["status"] == "False", "2 of 4 > 40%"

    world.set_node("m2", "True", since=T0 + timedelta(seconds=50))
    await world.reconcile(at=51)
    assert world.mhc_condition("RemediationAllowed")["status"] == "True"
    assert world.conditions("m3")["OwnerRemediated"]["status"] == "False"
    assert "OwnerRemediated" not in world.conditions("m1")
    assert world.sample("machinehealthcheck_short_circuited") == 0


async def test_a_machine_without_a_node_is_marked_after_the_startup_timeout(world: World) -> None:
    world.add_mhc()
    world.add_machine("m1")
    world.add_machine("m2", node_ready=None)
    assert await world.reconcile(at=20) == pytest.approx(40)
    assert world.conditions("m2")["HealthCheckSucceeded"]["status"] == "True"
    await world.reconcile(at=60)
    cond = world.conditions("m2")["HealthCheckSucceeded"]
    assert (cond["status"], cond["reason"]) == ("False", "NodeStartupTimeout")
    assert world.conditions("m2")["OwnerRemediated"]["status"] == "False"


async def test_machines_being_deleted_and_paused_clusters_are_left_alone(world: World) -> None:
    world.add_mhc()
    world.add_machine("m1", node_ready="False", deletionTimestamp=_stamp(T0))
    await world.reconcile(at=100)
    assert world.conditions("m1") == {}
    assert world.mhc_status()["expectedMachines"] == 1
    assert world.mhc_status()["currentHealthy"] == 0

    world.add_machine("m2", node_ready="False")
    world.clusters.store.upsert(
        {"metadata": {"name": "c1", "namespace": NS}, "spec": {"paused": True}}
    )
    await world.reconcile(at=200)
    assert world.conditions("m2") == {}
    assert world.mhc_condition("Paused")["status"] == "True"


async def test_a_selector_matching_nothing_is_reported(world: World) -> None:
    world.add_mhc(selector={"matchLabels": {"pool": "nope"}})
    world.add_machine("m1")
    assert await world.reconcile(at=1) is None
    cond = world.mhc_condition("MachinesSelected")
    assert (cond["status"], cond["reason"]) == ("False", "NoMachinesSelected")
    assert "pool=nope" in cond["message"]
    assert "Cluster ns/c1" in cond["message"]
    assert world.mhc_status()["expectedMachines"] == 0
    assert world.conditions("m1") == {}


async def test_a_disconnected_workload_cluster_judges_nothing(world: World) -> None:
    world.add_mhc()
    world.add_machine("m1", node_ready="False")
    world.workloads.clusters.clear()
    assert await world.reconcile(at=100) == 15.0
    cond = world.mhc_condition("RemediationAllowed")
    assert (cond["status"], cond["reason"]) == ("Unknown", "WorkloadClusterNotConnected")
    assert world.conditions("m1") == {}


async def test_a_deleted_health_check_forgets_its_metrics(world: World) -> None:
    world.add_mhc()
    world.add_machine("m1")
    await world.reconcile(at=1)
    assert world.sample("machinehealthcheck_machines", health="healthy") == 1
    world.mhcs.store.delete(f"{NS}/hc")
    await world.reconcile(at=2)
    assert world.sample("machinehealthcheck_machines", health="healthy") is None


async def test_a_conflict_on_a_machine_is_left_to_its_next_event(world: World) -> None:
    world.add_mhc()
    world.add_machine("m1", node_ready="False")
    world.kube.conflicts.add("m1")  # someone else wrote it; our cache is behind

    assert await world.reconcile(at=100) is None
    assert world.conditions("m1") == {}
    assert world.sample("machinehealthcheck_remediations_total") is None, "not counted"
    assert world.recorder.events == []

    world.kube.conflicts.clear()  # the newer version's event brings us back
    await world.reconcile(at=101)
    assert world.conditions("m1")["OwnerRemediated"]["status"] == "False"
    assert world.sample("machinehealthcheck_remediations_total") == 1


async def test_a_machine_condition_is_marked_exactly_when_its_timeout_expires(
    world: World,
) -> None:
    world.add_mhc(checks={
        "nodeStartupTimeoutSeconds": 60,
        "unhealthyMachineConditions": [
            {"type": "DiskPressureExample", "status": "True", "timeoutSeconds": 40}],
    })  # fmt: skip
    for name in ("m1", "m2"):
        world.add_machine(name)
    pressure = {"type": "DiskPressureExample", "status": "True", "reason": "Full",
                "message": "", "lastTransitionTime": _stamp(T0 + timedelta(seconds=5))}  # fmt: skip
    machine = world.machines.store.get(f"{NS}/m2")
    assert machine is not None
    world.machines.store.upsert({**machine, "status": {"conditions": [pressure]}})

    assert await world.reconcile(at=10) == pytest.approx(35), "requeue for the expiry"
    assert world.conditions("m2")["HealthCheckSucceeded"]["status"] == "True"
    assert "OwnerRemediated" not in world.conditions("m2")

    assert await world.reconcile(at=45) is None
    marked = world.conditions("m2")
    assert (marked["HealthCheckSucceeded"]["status"], marked["HealthCheckSucceeded"]["reason"]) \
        == ("False", "UnhealthyMachine")  # fmt: skip
    assert "DiskPressureExample has been True" in marked["HealthCheckSucceeded"]["message"]
    assert marked["OwnerRemediated"]["status"] == "False"
    assert marked["DiskPressureExample"] == pressure, "the foreign condition is kept as it was"
    assert world.conditions("m1")["HealthCheckSucceeded"]["status"] == "True"
    assert world.mhc_status()["currentHealthy"] == 1
    assert world.sample("machinehealthcheck_remediations_total") == 1
