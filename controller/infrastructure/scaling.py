"""Scale and rollout decisions for one group: a pure function of what the cloud and the
Machines say, so it can be tested exhaustively.

Words used here:

- a *member* is an instance that still counts toward the pool: not terminating, and its
  Machine (or infra machine) is not being deleted;
- an instance whose Machine *is* being deleted is *going*: it still holds group capacity
  until its drain finishes and it is deleted with the group shrunk by one, but it no longer
  counts toward ``replicas``;
- a *launch in flight* is capacity the cloud has accepted but not yet turned into an
  instance (``desired_capacity`` above the instances it reports).

Invariants of :func:`plan_scaling`:

- it never picks a going instance, and never picks more victims than there are members;
- scale-in victims come in this order: Machines with the ``cluster.x-k8s.io/delete-machine``
  annotation, failed instances, instances whose Machine is not ready, then the delete policy
  (``Oldest``, ``Newest``, ``Random``); during a rollout, outdated instances come before
  up-to-date ones when replacing, and a scale-in mid-rollout never takes a ready member below
  ``desired - max_unavailable``;
- scale-out only raises the capacity (``capacity`` is ``None`` when nothing is to launch), and
  it never launches while a deleted Machine has not been accounted for (the caller passes
  ``hold``): otherwise a person's ``kubectl delete machine`` would be undone by a launch
  before ``spec.replicas`` is lowered;
- a rollout (only when the pool has a rolling-update strategy) keeps at most
  ``desired + max_surge`` members and at least ``desired - max_unavailable`` ready members;
  unready outdated members may always go. ``max_surge`` and ``max_unavailable`` both 0 would
  never progress, so ``max_surge`` is then taken as 1 (as Deployments refuse that pair).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from controller.providers.base import Instance

RemovalReason = Literal["ScaleIn", "Rollout"]


@dataclass(frozen=True, slots=True)
class Member:
    """One instance of the group, with what the Machines say about it."""

    instance: Instance
    #: Its Machine or infra machine is being deleted.
    going: bool = False
    #: Its Machine has the ``cluster.x-k8s.io/delete-machine`` annotation.
    marked: bool = False
    #: Its Machine is Ready (its Node is Ready).
    ready: bool = False


@dataclass(frozen=True, slots=True)
class Removal:
    instance: Instance
    reason: RemovalReason


@dataclass(frozen=True, slots=True)
class Plan:
    #: The new desired capacity when instances are to be launched, else ``None``.
    capacity: int | None = None
    removals: Sequence[Removal] = field(default_factory=tuple)
    #: Members launched from an older template, still to be replaced.
    outdated: int = 0
    #: Members that count toward ``replicas``.
    members: int = 0


@dataclass(frozen=True, slots=True)
class Rollout:
    """Rolling-update limits, already resolved to counts."""

    max_surge: int
    max_unavailable: int


def resolve_rollout(
    *, max_surge: int | str | None, max_unavailable: int | str | None, desired: int
) -> Rollout:
    """Counts from ``maxSurge``/``maxUnavailable`` (ints or percentages of ``desired``):
    a surge percentage rounds up, an unavailability percentage rounds down, as Deployments
    do; unset means surge 1, unavailable 0."""

    def count(value: int | str | None, *, default: int, up: bool) -> int:
        if value is None:
            return default
        if isinstance(value, int):
            return max(value, 0)
        text = value.strip()
        if text.endswith("%"):
            share = desired * float(text[:-1]) / 100
            return max(math.ceil(share) if up else math.floor(share), 0)
        return max(int(text), 0)

    surge = count(max_surge, default=1, up=True)
    unavailable = count(max_unavailable, default=0, up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return Rollout(max_surge=surge, max_unavailable=unavailable)


def _policy_key(policy: str, rng: Callable[[], float]) -> Callable[[Member], tuple[float, str]]:
    if policy == "Newest":
        return lambda m: (-m.instance.launched_at.timestamp(), m.instance.instance_id)
    if policy == "Random":
        return lambda m: (rng(), m.instance.instance_id)
    return lambda m: (m.instance.launched_at.timestamp(), m.instance.instance_id)


def removal_order(
    members: Sequence[Member],
    *,
    policy: str,
    template_version: str | None = None,
    rng: Callable[[], float] = random.random,
) -> list[Member]:
    """Members in the order they go on scale-in; see the module docstring."""
    by_policy = _policy_key(policy, rng)
    keyed = [
        (
            (
                not m.marked,
                template_version is not None and m.instance.version == template_version,
                m.instance.state != "failed",
                m.ready,
            ),
            by_policy(m),
            m,
        )
        for m in members
    ]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in keyed]


def plan_scaling(
    *,
    members: Sequence[Member],
    desired: int,
    capacity: int,
    template_version: str,
    policy: str,
    rollout: Rollout | None,
    hold: bool = False,
    rng: Callable[[], float] = random.random,
) -> Plan:
    """What to launch and what to remove now; see the module docstring."""
    present = [m for m in members if m.instance.state != "terminating"]
    live = [m for m in present if not m.going]
    going = len(present) - len(live)
    in_flight = max(capacity - len(present), 0)
    count = len(live) + in_flight
    outdated = [m for m in live if m.instance.version != template_version] if rollout else []

    removals: list[Removal] = []
    chosen: set[str] = set()

    def remove(member: Member, reason: RemovalReason) -> None:
        removals.append(Removal(instance=member.instance, reason=reason))
        chosen.add(member.instance.instance_id)

    if rollout is None or not outdated:
        for member in removal_order(live, policy=policy, rng=rng)[: max(count - desired, 0)]:
            remove(member, "ScaleIn")
        target = desired
    else:
        ordered = removal_order(live, policy=policy, template_version=template_version, rng=rng)
        floor = desired - rollout.max_unavailable
        available = sum(1 for m in live if m.ready)
        # Beyond the surge allowance (the pool was scaled in mid-rollout): unready members go
        # first, and a ready one only while the ready floor holds; launches still in flight
        # count toward the surplus, but only existing members can go, so the rest waits.
        surplus = max(count - desired - rollout.max_surge, 0)
        for member in removal_order(live, policy=policy, rng=rng):
            if surplus == 0:
                break
            if member.ready:
                if available - 1 < floor:
                    continue
                available -= 1
            remove(member, "ScaleIn")
            surplus -= 1
        budget = available - floor
        outdated_ids = {m.instance.instance_id for m in outdated}
        for member in ordered:
            ident = member.instance.instance_id
            if ident in chosen or ident not in outdated_ids:
                continue
            if not member.ready:
                remove(member, "Rollout")
            elif budget > 0:
                remove(member, "Rollout")
                budget -= 1
        remaining_outdated = sum(1 for m in outdated if m.instance.instance_id not in chosen)
        target = desired + min(rollout.max_surge, remaining_outdated)

    after = count - len(removals)
    launch = 0 if hold else max(target - after, 0)
    return Plan(
        capacity=going + len(live) + in_flight + launch if launch else None,
        removals=tuple(removals),
        outdated=len(outdated),
        members=len(live),
    )


__all__ = [
    "Member",
    "Plan",
    "Removal",
    "RemovalReason",
    "Rollout",
    "plan_scaling",
    "removal_order",
    "resolve_rollout",
]
