"""Test doubles and builders shared by the in-memory provider tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.providers.base import GroupSpec
from controller.providers.inmemory.nodes import NodeRegistration

CLUSTER = "default/wl"


def group_spec(
    name: str = "pool",
    *,
    version: str = "v1",
    boot: float = 10.0,
    ready: float = 5.0,
    failure_rate: float | None = None,
    zones: tuple[str, ...] = (),
    min_size: int = 0,
    max_size: int | None = None,
    cluster: str = CLUSTER,
    template_zones: list[str] | None = None,
    **template: Any,
) -> GroupSpec:
    tmpl: dict[str, Any] = {
        "version": version,
        "bootDelaySeconds": boot,
        "readyDelaySeconds": ready,
        **template,
    }
    if failure_rate is not None:
        tmpl["failureRate"] = failure_rate
    if template_zones is not None:
        tmpl["zones"] = template_zones
    return GroupSpec(
        name=name,
        cluster=cluster,
        template=tmpl,
        template_version=version,
        min_size=min_size,
        max_size=max_size,
        zones=zones,
    )


@dataclass
class FakeNode:
    provider_id: str
    zone: str
    kubelet_version: str
    instance_type: str | None
    ready: str = "False"


@dataclass
class FakeRegistrar:
    """Records the Nodes simulated kubelets write; can be made unreachable."""

    nodes: dict[tuple[str, str], FakeNode] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    unreachable: bool = False
    failed_calls: int = 0

    def _check(self, action: str, cluster: str, name: str) -> None:
        self.calls.append((action, cluster, name))
        if self.unreachable:
            self.failed_calls += 1
            raise ConnectionError(f"cluster {cluster} unreachable")

    async def register(self, *, cluster: str, node: NodeRegistration) -> None:
        self._check("register", cluster, node.name)
        self.nodes.setdefault(
            (cluster, node.name),
            FakeNode(
                provider_id=node.provider_id,
                zone=node.zone,
                kubelet_version=node.kubelet_version,
                instance_type=node.instance_type,
            ),
        )

    async def set_ready(self, *, cluster: str, name: str) -> None:
        self._check("ready", cluster, name)
        if (cluster, name) in self.nodes:
            self.nodes[cluster, name].ready = "True"

    async def mark_unknown(self, *, cluster: str, name: str) -> None:
        self._check("unknown", cluster, name)
        if (cluster, name) in self.nodes:
            self.nodes[cluster, name].ready = "Unknown"

    def ready_of(self, name: str, *, cluster: str = CLUSTER) -> str | None:
        node = self.nodes.get((cluster, name))
        return None if node is None else node.ready

    def count(self, action: str) -> int:
        return sum(1 for a, _, _ in self.calls if a == action)


@dataclass
class FakeWorkloadNodes:
    """The cloud's view of the Nodes a :class:`FakeRegistrar` keeps, plus Nodes nobody
    registered (``extra``: raw Node objects by ``(cluster, name)``); can fail on demand."""

    registrar: FakeRegistrar
    extra: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    list_failures: int = 0
    delete_failures: int = 0
    lists: int = 0

    def node(self, name: str, *, cluster: str = CLUSTER) -> dict[str, Any] | None:
        return next((n for n in self._objects(cluster) if n["metadata"]["name"] == name), None)

    def _objects(self, cluster: str) -> list[dict[str, Any]]:
        objects = [
            {
                "metadata": {"name": name, "uid": f"uid-{name}", "labels": {}},
                "spec": {"providerID": node.provider_id},
                "status": {"conditions": [{"type": "Ready", "status": node.ready}]},
            }
            for (c, name), node in self.registrar.nodes.items()
            if c == cluster
        ]
        return objects + [n for (c, _), n in self.extra.items() if c == cluster]

    async def list_nodes(self, *, cluster: str) -> list[dict[str, Any]]:
        self.lists += 1
        if self.list_failures > 0:
            self.list_failures -= 1
            raise ConnectionError(f"cluster {cluster} unreachable")
        return self._objects(cluster)

    async def delete_node(self, *, cluster: str, name: str, uid: str) -> bool:
        if self.delete_failures > 0:
            self.delete_failures -= 1
            raise ConnectionError(f"cluster {cluster} unreachable")
        found = self.registrar.nodes.pop((cluster, name), None) is not None
        found = self.extra.pop((cluster, name), None) is not None or found
        if found:
            self.deleted.append((cluster, name))
        return found


def raw_node(
    name: str, *, provider_id: str | None, ready: str | None = "False", **labels: str
) -> dict[str, Any]:
    """A Node object as the API returns it (``ready=None``: no Ready condition at all)."""
    node: dict[str, Any] = {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": dict(labels)},
        "spec": {} if provider_id is None else {"providerID": provider_id},
        "status": {},
    }
    if ready is not None:
        node["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return node
