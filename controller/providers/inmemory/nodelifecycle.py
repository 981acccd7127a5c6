"""The simulated cloud's node lifecycle controller: Nodes of gone instances are deleted.

In a real cloud the cloud-controller-manager's node lifecycle controller removes the Node of
an instance that no longer exists: every node-monitor period (5 s by default) it looks at the
Nodes whose ``Ready`` condition is not ``True`` (a Node without one counts as ``Unknown``),
asks the cloud whether their ``spec.providerID`` still names an instance
(``InstanceExistsByProviderID``), and deletes the Node when it does not. Nothing else deletes
the Node of an instance that registered and vanished before any controller recorded it.
:class:`NodeLifecycleController` plays that role for the in-memory :class:`~.simulator.Simulator`,
which starts it with itself and stops it on close.

Every ``period`` seconds of the simulator's clock (the first pass at start), for each workload
cluster this simulator knows (see :meth:`NodeLifecycleController.watch`), it lists the Nodes
and deletes, with a UID precondition, each one that

- has a ``spec.providerID`` of this cloud's scheme (``inmemory://``),
- has ``Ready`` not ``True`` (``False``, ``Unknown``, or no Ready condition at all),
- does not carry the ``node.kubernetes.io/exclude-from-lifecycle-management`` label (upstream's
  opt-out), and
- whose provider ID names no instance of any group of this simulator (not in ``existing()``,
  read once per cluster after its Nodes are listed: a terminated instance, or one this cloud
  never had, is gone; pending, running, failed and terminating instances exist).

Invariants: a Node whose instance exists is never deleted, Ready or not; a Node with another
provider ID scheme, or none, is never touched; a Node that is ``Ready=True`` is never deleted
(its kubelet still posts status; the simulator marks a gone instance's Node ``Unknown``, and
the next pass deletes it). Instance IDs are never reused, so an instance found gone stays
gone and no re-check is needed before the delete. A Node already deleted (404), or replaced
by a new Node of the same name (409 on the UID precondition), is success: the MachinePool
controller deletes Nodes too, and a double delete is harmless on both sides. Each deletion is
logged at info and counted (:attr:`NodeLifecycleController.deleted`).

Clusters: a cluster is watched from the moment a group names it. Once no group names it any
more it is still swept (its last Nodes may not be gone yet) until a pass finds no Node of
this cloud in it, or until :data:`FORGET_AFTER_FAILURES` passes in a row fail (its
kubeconfig Secret went with the cluster). Limitation: the watched set lives in memory; a
restarted simulator learns clusters again from its groups (its state file), so a cluster
whose every group was deleted before the restart is no longer swept.

Not simulated: upstream's shutdown taint (``node.cloudprovider.kubernetes.io/shutdown``) on
the Node of an instance that exists but is stopped; a crashed (``failed``) instance's Node is
left as it is until the instance leaves its group.

Failure: an error listing or deleting in one cluster (API error, unreachable cluster,
missing kubeconfig) is logged as a warning and retried at the next pass; it never stops the
loop, other clusters, or the simulator. Clusters are swept concurrently, so one slow cluster
does not delay the others' passes beyond its own requests' timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any, Protocol, runtime_checkable

import structlog

from controller.providers.inmemory.clock import SimClock
from controller.providers.inmemory.names import PROVIDER_ID_SCHEME
from controller.runtime.conditions import is_true

__all__ = [
    "EXCLUDE_LABEL",
    "FORGET_AFTER_FAILURES",
    "NodeLifecycleController",
    "WorkloadNodes",
]

_log = structlog.get_logger(__name__)

#: Upstream's label that takes a Node out of the cloud node lifecycle controller's hands.
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-lifecycle-management"
#: Failed passes in a row after which a cluster no group names is no longer swept.
FORGET_AFTER_FAILURES = 12

_PREFIX = f"{PROVIDER_ID_SCHEME}://"


@runtime_checkable
class WorkloadNodes(Protocol):
    """Lists and deletes Nodes in workload clusters (``namespace/name``), as a CCM does."""

    async def list_nodes(self, *, cluster: str) -> list[dict[str, Any]]:
        """Every Node of the cluster; raises when the cluster cannot be listed."""
        ...

    async def delete_node(self, *, cluster: str, name: str, uid: str) -> bool:
        """Delete the Node if its UID is still ``uid``; False if it was already gone or
        replaced; raises on any other failure."""
        ...


class NodeLifecycleController:
    """Deletes the Nodes of gone instances, every ``period``; see the module docstring."""

    def __init__(
        self,
        *,
        nodes: WorkloadNodes,
        existing: Callable[[], AbstractSet[str]],
        active_clusters: Callable[[], Iterable[str]],
        clock: SimClock,
        period: float = 5.0,
    ) -> None:
        if not period > 0:
            raise ValueError(f"node_monitor_period must be positive, got {period}")
        self._nodes = nodes
        self._existing = existing
        self._active_clusters = active_clusters
        self._clock = clock
        self._period = period
        #: Watched clusters, with their failed passes in a row.
        self._clusters: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0
        """Nodes this controller deleted since it was made."""
        self.passes = 0
        """Passes completed (over every watched cluster, whatever their outcome)."""

    @property
    def period(self) -> float:
        return self._period

    def watch(self, cluster: str) -> None:
        """Sweep ``cluster`` from the next pass on (idempotent)."""
        self._clusters.setdefault(cluster, 0)

    def watched(self) -> frozenset[str]:
        """The clusters swept at each pass (for tests and diagnostics)."""
        return frozenset(self._clusters)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="node lifecycle controller")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a bug must not stop the loop (sweep handles API errors)
                _log.exception("node lifecycle pass failed")
            await self._clock.sleep(self._period)

    async def sweep(self) -> int:
        """One pass over every watched cluster; the number of Nodes deleted."""
        for cluster in self._active_clusters():
            self.watch(cluster)
        clusters = sorted(self._clusters)
        results = await asyncio.gather(*(self._sweep_cluster(c) for c in clusters))
        active = set(self._active_clusters())
        for cluster, (_, remaining) in zip(clusters, results, strict=True):
            if cluster in active or cluster not in self._clusters:
                continue
            failures = self._clusters[cluster]
            if remaining == 0 or failures >= FORGET_AFTER_FAILURES:
                self._clusters.pop(cluster)
                _log.info(
                    "node lifecycle: cluster no longer watched",
                    cluster=cluster,
                    reason="no Nodes of this cloud left" if remaining == 0 else "unreachable",
                )
        self.passes += 1
        return sum(deleted for deleted, _ in results)

    async def _sweep_cluster(self, cluster: str) -> tuple[int, int | None]:
        """(Nodes deleted, Nodes of this cloud left or None if the pass failed)."""
        try:
            listed = await self._nodes.list_nodes(cluster=cluster)
        except Exception as exc:
            self._failed(cluster, action="list", error=exc)
            return 0, None
        deleted = 0
        remaining = 0
        failed = False
        existing = self._existing()  # after the list: a listed Node's instance is known by now
        for node in listed:
            provider_id = (node.get("spec") or {}).get("providerID")
            if not isinstance(provider_id, str) or not provider_id.startswith(_PREFIX):
                continue
            remaining += 1
            if not _gone_candidate(node) or provider_id in existing:
                continue
            meta = node.get("metadata") or {}
            name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
            try:
                ours = await self._nodes.delete_node(cluster=cluster, name=name, uid=uid)
            except Exception as exc:
                self._failed(cluster, action="delete", error=exc, node=name)
                failed = True
                continue
            remaining -= 1
            if not ours:  # deleted (or replaced) by someone else meanwhile
                continue
            deleted += 1
            self.deleted += 1
            _log.info(
                "node deleted: its instance no longer exists",
                cluster=cluster,
                node=name,
                provider_id=provider_id,
            )
        if cluster in self._clusters and not failed:
            self._clusters[cluster] = 0
        return deleted, remaining

    def _failed(
        self, cluster: str, *, action: str, error: Exception, node: str | None = None
    ) -> None:
        if cluster in self._clusters:
            self._clusters[cluster] += 1
        _log.warning(
            "node lifecycle: workload cluster call failed; will retry next period",
            action=action,
            cluster=cluster,
            node=node,
            failures=self._clusters.get(cluster),
            retry_in=self._period,
            error=str(error) or type(error).__name__,
        )


def _gone_candidate(node: dict[str, Any]) -> bool:
    """Not Ready (or no Ready condition) and not excluded from lifecycle management."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if EXCLUDE_LABEL in labels:
        return False
    return not is_true((node.get("status") or {}).get("conditions"), "Ready")
