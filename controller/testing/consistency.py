"""A fleet-wide consistency check: nothing lost, duplicated or orphaned.

For every MachinePool of a namespace the cloud's live instances, the infrastructure machines,
the ``Machine`` objects and the workload cluster's Nodes must be the same set of provider IDs,
one object each, as many as the pool asks for, and the pool must be Running with that many
ready replicas and the same ``spec.providerIDList``. Objects that belong to no pool (a
``Machine`` or infra machine whose pool is gone, a Node whose provider ID names a group of
the namespace but no live instance) are orphans.

:func:`fleet_problems` returns one line per thing that is wrong (empty: consistent). The
cloud is reached through ``instances``, a callable returning the provider IDs of a group's
live (pending or running) instances, so the check works with the in-process simulator and
with the simulator's HTTP API alike. Groups are named ``<namespace>-<pool>`` as the
infrastructure reconciler names them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

from controller.api.kinds import IN_MEMORY_MACHINE, MACHINE, MACHINE_POOL
from controller.providers.inmemory.adapter import inmemory_group_name
from controller.runtime.kube import NODES, KubeClient
from controller.runtime.store import Obj

__all__ = ["fleet_problems"]

Instances = Callable[[str], Awaitable[list[str]]]


def _owner(obj: Obj, kind: str) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return str(ref.get("name"))
    return None


def _duplicates(ids: list[str]) -> list[str]:
    return sorted(i for i, n in Counter(ids).items() if n > 1)


async def fleet_problems(
    *,
    kube: KubeClient,
    namespace: str,
    pools: Mapping[str, int],
    instances: Instances,
) -> list[str]:
    """Everything inconsistent about ``pools`` (name → wanted replicas); see the module doc."""
    problems: list[str] = []
    listed_pools = (await kube.list(MACHINE_POOL, namespace=namespace))["items"]
    mps = {o["metadata"]["name"]: o for o in listed_pools}
    machines = (await kube.list(MACHINE, namespace=namespace))["items"]
    infra = (await kube.list(IN_MEMORY_MACHINE, namespace=namespace))["items"]
    nodes = (await kube.list(NODES))["items"]
    machines_by_pool: dict[str, list[str]] = {}
    for m in machines:
        pool = _owner(m, "MachinePool")
        if pool is None or pool not in pools:
            problems.append(f"orphaned Machine {m['metadata']['name']} (pool {pool})")
            continue
        if m["metadata"].get("deletionTimestamp"):
            problems.append(f"{pool}: Machine {m['metadata']['name']} still being deleted")
        machines_by_pool.setdefault(pool, []).append(str(m["spec"].get("providerID")))
    infra_by_pool: dict[str, list[str]] = {}
    for m in infra:
        pool = _owner(m, "InMemoryMachinePool")
        if pool is None or pool not in pools:
            problems.append(f"orphaned infra machine {m['metadata']['name']} (pool {pool})")
            continue
        infra_by_pool.setdefault(pool, []).append(str(m["spec"].get("providerID")))
    prefix = f"/{namespace}-"
    nodes_by_id: list[str] = [
        str(n["spec"]["providerID"])
        for n in nodes
        if prefix in str((n.get("spec") or {}).get("providerID", ""))
    ]
    live_all: set[str] = set()
    for name, replicas in sorted(pools.items()):
        live = await instances(inmemory_group_name(namespace=namespace, name=name))
        live_all.update(live)
        where = {
            "instances": live,
            "infra machines": infra_by_pool.get(name, []),
            "Machines": machines_by_pool.get(name, []),
            "Nodes": [i for i in nodes_by_id if f"/{namespace}-{name}-" in i],
        }
        for what, ids in where.items():
            if len(ids) != replicas:
                problems.append(f"{name}: {len(ids)} {what}, want {replicas}")
            if dup := _duplicates(ids):
                problems.append(f"{name}: duplicated {what} {dup}")
            if what != "instances" and set(ids) != set(live):
                problems.append(f"{name}: {what} {sorted(set(ids) ^ set(live))} differ")
        mp = mps.get(name)
        if mp is None:
            problems.append(f"{name}: MachinePool missing")
            continue
        status = mp.get("status") or {}
        listed = mp["spec"].get("providerIDList") or []
        if sorted(listed) != sorted(live):
            problems.append(f"{name}: providerIDList {len(listed)} entries differ from instances")
        if (mp["spec"].get("replicas"), status.get("readyReplicas")) != (replicas, replicas):
            wanted, ready = mp["spec"].get("replicas"), status.get("readyReplicas")
            problems.append(f"{name}: replicas {wanted}, ready {ready}")
        if status.get("phase") != "Running":
            problems.append(f"{name}: phase {status.get('phase')}")
    for node_id in nodes_by_id:
        if node_id not in live_all:
            problems.append(f"orphaned Node with providerID {node_id}")
    return problems
