"""Cordon and drain one workload-cluster Node, one non-blocking pass at a time.

The Machine deletion flow calls :func:`cordon` once, then :func:`drain_step` on every
reconcile until it reports ``done`` (or until :func:`drain_deadline_passed` says the
Machine's ``nodeDrainTimeoutSeconds`` is up), requeueing in between. Nothing here waits or
sleeps; every call is a few API requests.

A pass lists the Node's pods (``fieldSelector=spec.nodeName=<node>``, all namespaces) and
sorts each into one bucket:

- skipped, never waited for: mirror pods (annotation ``kubernetes.io/config.mirror``; the
  kubelet owns them), DaemonSet-owned pods (the DaemonSet would put them straight back, and
  they tolerate ``unschedulable``), finished pods (phase ``Succeeded``/``Failed``: they hold
  no workload); and, when the Node is unreachable, pods whose deletion grace period ended
  more than ``unreachable_skip_after`` ago (the kubelet that would finish them is not there;
  Cluster API skips them the same way);
- waiting: pods already being deleted (``metadata.deletionTimestamp`` set), not yet gone;
- evicted: the rest, each through the Eviction API (``POST pods/<name>/eviction`` with a
  ``policy/v1`` Eviction whose delete options carry the pod's UID as a precondition, so a
  pod recreated under the same name is never evicted by mistake);
- blocked: evictions answered ``429 Too Many Requests`` — a PodDisruptionBudget refuses the
  disruption now (or the API server has not seen the budget's status yet); the message is
  the API's own explanation (the ``DisruptionBudget`` cause);
- failed: evictions refused for another reason (``500`` for a pod covered by two budgets,
  ``403`` for a budget with negative ``disruptionsAllowed``, RBAC), with the API's message.

``404`` (the pod went) counts as done; ``409`` (the pod changed or was replaced under the
same name) and ``403 NamespaceTerminating`` (the namespace's deletion will remove the pod)
count as waiting, to be looked at again next pass. A pass evicts every pod it can even
when others are blocked, so one budget never holds up unrelated pods.

Invariants: ``drain_step`` never deletes a pod directly (the Eviction API is the only way
pods leave, so PodDisruptionBudgets always apply); it is idempotent (evicting an already
terminating pod is not attempted again); ``done`` is true only when a fresh list showed no
pod left to evict or wait for.

Caller's duties, as in Cluster API: a Machine annotated
``machine.cluster.x-k8s.io/exclude-node-draining`` (any value; see :func:`drain_excluded`)
is not drained at all; ``nodeDrainTimeoutSeconds`` of ``0`` or unset means no limit, and
once :func:`drain_deadline_passed` the caller may stop draining and proceed.

Failure: listing pods or cordoning fails with :class:`~controller.runtime.kube.ApiError`
(a missing Node is success for :func:`cordon`); transport failures surface as
``aiohttp.ClientError`` / ``TimeoutError``. Nothing is left half-done that the next pass
would not redo, so the caller just requeues with backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.api.labels import EXCLUDE_NODE_DRAINING_ANNOTATION
from controller.runtime.kube import NODES, PODS, ApiError, KubeClient, resource_path
from controller.runtime.store import Obj

__all__ = [
    "DAEMONSET_KIND",
    "MIRROR_POD_ANNOTATION",
    "UNREACHABLE_SKIP_AFTER",
    "DrainStatus",
    "cordon",
    "drain_deadline_passed",
    "drain_excluded",
    "drain_step",
]

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
DAEMONSET_KIND = "DaemonSet"
#: On an unreachable Node, a terminating pod is no longer waited for this long after its
#: deletion grace period ended (its ``deletionTimestamp``).
UNREACHABLE_SKIP_AFTER = timedelta(seconds=1)

_PAGE_SIZE = 500
_DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
_NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


@dataclass(frozen=True, slots=True)
class DrainStatus:
    """What one :func:`drain_step` pass found and did. Pods are named ``namespace/name``."""

    #: No pod left to evict or wait for: the Node is drained.
    done: bool
    #: Evicted in this pass (now terminating; the next pass waits for them).
    evicted: tuple[str, ...] = ()
    #: Eviction refused by a PodDisruptionBudget (429): pod -> the API's explanation.
    blocked: Mapping[str, str] = field(default_factory=dict)
    #: Eviction refused for another reason: pod -> ``"<status> <reason>: <message>"``.
    failed: Mapping[str, str] = field(default_factory=dict)
    #: Being deleted, not gone yet.
    waiting: tuple[str, ...] = ()
    #: Not drained by design: mirror, DaemonSet-owned, finished, abandoned on an unreachable Node.
    skipped: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """One line for a condition or an Event, e.g.
        ``"2 pods blocked by PodDisruptionBudget: ns/a, ns/b; 1 pod terminating"``."""
        if self.done:
            text = "Node drained"
            if self.skipped:
                text += f" ({_count(len(self.skipped))} skipped)"
            return text
        parts: list[str] = []
        if self.blocked:
            parts.append(
                f"{_count(len(self.blocked))} blocked by PodDisruptionBudget: "
                f"{_names(sorted(self.blocked))}"
            )
        if self.failed:
            parts.append(
                f"{_count(len(self.failed))} failed eviction: {_names(sorted(self.failed))}"
            )
        if self.evicted:
            parts.append(f"{_count(len(self.evicted))} evicted")
        if self.waiting:
            parts.append(f"{_count(len(self.waiting))} terminating")
        return "; ".join(parts)


def drain_excluded(machine: Mapping[str, Any]) -> bool:
    """True if the Machine asks not to have its Node drained (the annotation's presence)."""
    annotations = (machine.get("metadata") or {}).get("annotations") or {}
    return EXCLUDE_NODE_DRAINING_ANNOTATION in annotations


def drain_deadline_passed(*, started: datetime, timeout_seconds: int | None, now: datetime) -> bool:
    """True once ``timeout_seconds`` have passed since ``started``; ``0``/``None``: never."""
    if not timeout_seconds or timeout_seconds <= 0:
        return False
    return now - started >= timedelta(seconds=timeout_seconds)


async def cordon(*, kube: KubeClient, node: str) -> None:
    """Mark ``node`` unschedulable (idempotent); a Node that does not exist is fine."""
    try:
        await kube.merge_patch(NODES, name=node, patch={"spec": {"unschedulable": True}})
    except ApiError as exc:
        if not exc.not_found:
            raise


async def drain_step(
    *,
    kube: KubeClient,
    node: str,
    now: datetime,
    node_unreachable: bool,
    unreachable_skip_after: timedelta = UNREACHABLE_SKIP_AFTER,
) -> DrainStatus:
    """One pass over ``node``'s pods; see the module docstring. ``now`` must be timezone-aware."""
    evicted: list[str] = []
    blocked: dict[str, str] = {}
    failed: dict[str, str] = {}
    waiting: list[str] = []
    skipped: list[str] = []
    for pod in await _pods_on(kube=kube, node=node):
        ref = _ref(pod)
        if _skip(pod):
            skipped.append(ref)
            continue
        deleting = _deletion_timestamp(pod)
        if deleting is not None:
            if node_unreachable and now - deleting > unreachable_skip_after:
                skipped.append(ref)
            else:
                waiting.append(ref)
            continue
        try:
            await _evict(kube=kube, pod=pod)
        except ApiError as exc:
            if exc.not_found:
                continue
            if exc.status == 429:
                blocked[ref] = _budget_message(exc)
            elif exc.conflict or _has_cause(exc, _NAMESPACE_TERMINATING_CAUSE):
                waiting.append(ref)
            else:
                failed[ref] = f"{exc.status} {exc.reason}: {exc.message}"
            continue
        evicted.append(ref)
    return DrainStatus(
        done=not (evicted or blocked or failed or waiting),
        evicted=tuple(evicted),
        blocked=blocked,
        failed=failed,
        waiting=tuple(waiting),
        skipped=tuple(skipped),
    )


# ---------------------------------------------------------------------------- internals


async def _pods_on(*, kube: KubeClient, node: str) -> list[Obj]:
    pods: list[Obj] = []
    continue_token: str | None = None
    while True:
        page = await kube.list(
            PODS,
            field_selector=f"spec.nodeName={node}",
            limit=_PAGE_SIZE,
            continue_token=continue_token,
        )
        pods.extend(page.get("items") or [])
        continue_token = (page.get("metadata") or {}).get("continue")
        if not continue_token:
            return pods


def _skip(pod: Obj) -> bool:
    meta = pod.get("metadata") or {}
    if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return True
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") == DAEMONSET_KIND:
            return True
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def _evict(*, kube: KubeClient, pod: Obj) -> None:
    meta = pod["metadata"]
    body: Obj = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
    if meta.get("uid"):
        body["deleteOptions"] = {"preconditions": {"uid": meta["uid"]}}
    await kube.request(
        method="POST",
        path=resource_path(
            PODS, namespace=meta["namespace"], name=meta["name"], subresource="eviction"
        ),
        body=body,
    )


def _budget_message(exc: ApiError) -> str:
    causes = [
        str(cause.get("message"))
        for cause in _causes(exc)
        if cause.get("reason", cause.get("type")) == _DISRUPTION_BUDGET_CAUSE
        and cause.get("message")
    ]
    return "; ".join(causes) or exc.message


def _has_cause(exc: ApiError, kind: str) -> bool:
    return any(cause.get("reason", cause.get("type")) == kind for cause in _causes(exc))


def _causes(exc: ApiError) -> list[Obj]:
    details = exc.body.get("details") or {}
    causes = details.get("causes") or []
    return [cause for cause in causes if isinstance(cause, dict)]


def _deletion_timestamp(pod: Obj) -> datetime | None:
    raw = (pod.get("metadata") or {}).get("deletionTimestamp")
    return datetime.fromisoformat(raw) if raw else None


def _ref(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _count(n: int) -> str:
    return f"{n} pod" if n == 1 else f"{n} pods"


def _names(refs: list[str], *, limit: int = 5) -> str:
    shown = ", ".join(refs[:limit])
    return shown if len(refs) <= limit else f"{shown} and {len(refs) - limit} more"
