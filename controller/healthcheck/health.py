"""Pure health decisions: one Machine's health at a moment, and the short-circuit arithmetic.

:func:`machine_health` decides from the Machine, its Node (or ``None``) and the checks, at
``now`` (the caller's clock, so tests run in virtual time). In order:

1. the ``cluster.x-k8s.io/remediate-machine`` annotation → unhealthy
   (``HasRemediateAnnotation``);
2. the Machine's own conditions, whatever its Node: unhealthy (``UnhealthyMachine``) once an
   ``unhealthyMachineConditions`` entry's condition has had the listed status for its
   ``timeoutSeconds``, counted from the condition's ``lastTransitionTime``. As in Cluster API
   this reason wins over the Node-based ones below (every failing Machine condition is named
   in the message);
3. no Node, but the Machine had one (``status.nodeRef``, or its ``NodeHealthy``/``NodeReady``
   condition says ``NodeDeleted``) → unhealthy (``NodeDeleted``);
4. no Node yet: healthy while ``nodeStartupTimeoutSeconds`` has not passed since the
   Machine's ``creationTimestamp`` (0 disables the check), then unhealthy
   (``NodeStartupTimeout``);
5. a Node: unhealthy (``UnhealthyNode``) once a listed condition has had the listed status for
   its ``timeoutSeconds``, counted from the condition's ``lastTransitionTime``; else healthy.

A healthy verdict carries ``recheck_in``: the seconds until time alone could make it
unhealthy (the earliest timeout still running, Machine and Node conditions and the startup
timeout alike), so the caller requeues for exactly then.
Messages hold no elapsed times, so the same facts always give the same message and a
reconcile that learns nothing new writes nothing.

:func:`remediation_budget` applies ``remediation.triggerIf``: with ``unhealthyInRange``
``[a-b]`` remediation is allowed while ``a <= unhealthy <= b``; otherwise while ``unhealthy``
is at most ``unhealthyLessThanOrEqualTo`` (an int, or a percentage of the expected Machines,
rounded down as Cluster API does; unset means 100%).

Failure: :func:`remediation_budget` raises :class:`ValueError` with a readable message for a
malformed threshold (the CRD's CEL rules refuse them; objects stored before the rules existed
may still carry one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.api.healthcheck import MachineHealthCheckTriggerIf

__all__ = [
    "REMEDIATE_MACHINE_ANNOTATION",
    "Budget",
    "ConditionCheck",
    "NodeCheck",
    "Verdict",
    "machine_health",
    "remediation_budget",
]

#: On a Machine: remediate it whatever its Node says (Cluster API's annotation).
REMEDIATE_MACHINE_ANNOTATION = "cluster.x-k8s.io/remediate-machine"

_RANGE = re.compile(r"^\[([0-9]+)-([0-9]+)\]$")
_PERCENT = re.compile(r"^([0-9]+)%$")


@dataclass(frozen=True, slots=True)
class ConditionCheck:
    """One ``unhealthyNodeConditions`` or ``unhealthyMachineConditions`` entry."""

    type: str
    status: str
    timeout: float


#: One ``unhealthyNodeConditions`` entry (the name the Node checks were first given).
NodeCheck = ConditionCheck


@dataclass(frozen=True, slots=True)
class Verdict:
    """One Machine's health; ``reason`` is the ``HealthCheckSucceeded`` condition's reason."""

    healthy: bool
    reason: str
    message: str
    #: Seconds until time alone could turn this healthy verdict unhealthy.
    recheck_in: float | None = None


def _time(value: object) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _had_node(machine: Mapping[str, Any]) -> bool:
    status = machine.get("status") or {}
    if (status.get("nodeRef") or {}).get("name"):
        return True
    return any(
        c.get("type") in ("NodeHealthy", "NodeReady") and c.get("reason") == "NodeDeleted"
        for c in _conditions(machine)
    )


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _held(
    *, obj: Mapping[str, Any], checks: Sequence[ConditionCheck], now: datetime
) -> tuple[list[tuple[ConditionCheck, object]], float | None]:
    """The checks whose condition held past its timeout (with its ``lastTransitionTime``),
    and the seconds until the earliest of the others that currently match would."""
    failed: list[tuple[ConditionCheck, object]] = []
    recheck: float | None = None
    by_type = {c.get("type"): c for c in _conditions(obj)}
    for check in checks:
        cond = by_type.get(check.type)
        if cond is None or cond.get("status") != check.status:
            continue
        since = _time(cond.get("lastTransitionTime")) or now
        remaining = check.timeout - (now - since).total_seconds()
        if remaining <= 0:
            failed.append((check, cond.get("lastTransitionTime")))
        else:
            recheck = _earliest(recheck, remaining)
    return failed, recheck


def machine_health(
    *,
    machine: Mapping[str, Any],
    node: Mapping[str, Any] | None,
    startup_timeout: float,
    node_checks: Sequence[ConditionCheck],
    machine_checks: Sequence[ConditionCheck] = (),
    now: datetime,
) -> Verdict:
    """The Machine's health at ``now``; see the module docstring."""
    meta = machine.get("metadata") or {}
    if REMEDIATE_MACHINE_ANNOTATION in (meta.get("annotations") or {}):
        return Verdict(
            False,
            "HasRemediateAnnotation",
            f"the Machine has the {REMEDIATE_MACHINE_ANNOTATION} annotation",
        )
    failed, recheck = _held(obj=machine, checks=machine_checks, now=now)
    if failed:
        return Verdict(
            False,
            "UnhealthyMachine",
            "; ".join(
                f"Machine condition {check.type} has been {check.status} since {since} "
                f"(timeout {check.timeout:g}s)"
                for check, since in failed
            ),
        )
    if node is None:
        if _had_node(machine):
            name = ((machine.get("status") or {}).get("nodeRef") or {}).get("name")
            which = f"Node {name}" if name else "Node"
            return Verdict(False, "NodeDeleted", f"the {which} of this Machine was deleted")
        if startup_timeout <= 0:
            return Verdict(
                True,
                "HealthCheckSucceeded",
                "waiting for a Node (no startup timeout)",
                recheck_in=recheck,
            )
        created = _time(meta.get("creationTimestamp")) or now
        remaining = startup_timeout - (now - created).total_seconds()
        if remaining <= 0:
            return Verdict(
                False,
                "NodeStartupTimeout",
                f"no Node joined within nodeStartupTimeoutSeconds ({startup_timeout:g}s) of the "
                "Machine's creation",
            )
        return Verdict(
            True,
            "HealthCheckSucceeded",
            f"waiting up to {startup_timeout:g}s for a Node",
            recheck_in=_earliest(recheck, remaining),
        )

    node_name = (node.get("metadata") or {}).get("name")
    node_failed, node_recheck = _held(obj=node, checks=node_checks, now=now)
    if node_failed:
        check, since = node_failed[0]
        return Verdict(
            False,
            "UnhealthyNode",
            f"Node {node_name}: condition {check.type} has been {check.status} since "
            f"{since} (timeout {check.timeout:g}s)",
        )
    return Verdict(True, "HealthCheckSucceeded", "", recheck_in=_earliest(recheck, node_recheck))


@dataclass(frozen=True, slots=True)
class Budget:
    """Whether remediation may proceed, how many more Machines may go, and why."""

    allowed: bool
    remaining: int
    message: str


def remediation_budget(
    *, trigger: MachineHealthCheckTriggerIf | None, expected: int, unhealthy: int
) -> Budget:
    """Apply ``remediation.triggerIf``; see the module docstring."""
    in_range = trigger.unhealthy_in_range if trigger is not None else None
    if in_range:
        found = _RANGE.match(in_range)
        if found is None or int(found[1]) > int(found[2]):
            raise ValueError(f"unhealthyInRange {in_range!r} is not a range [a-b] with a <= b")
        low, high = int(found[1]), int(found[2])
        allowed = low <= unhealthy <= high
        return Budget(
            allowed,
            max(high - unhealthy, 0) if allowed else 0,
            f"{unhealthy} of {expected} Machines unhealthy; remediation needs {in_range}",
        )
    value = trigger.unhealthy_less_than_or_equal_to if trigger is not None else None
    limit: int | str = "100%" if value is None else value
    if isinstance(limit, int):
        if limit < 0:
            raise ValueError(f"unhealthyLessThanOrEqualTo {limit} is negative")
        most, shown = limit, str(limit)
    else:
        found = _PERCENT.match(limit)
        if found is None or int(found[1]) > 100:
            raise ValueError(
                f"unhealthyLessThanOrEqualTo {limit!r} is neither a number nor a percentage "
                "from 0% to 100%"
            )
        most = expected * int(found[1]) // 100
        shown = f"{limit} of {expected}, i.e. {most}"
    allowed = unhealthy <= most
    return Budget(
        allowed,
        max(most - unhealthy, 0) if allowed else 0,
        f"{unhealthy} of {expected} Machines unhealthy; remediation allows at most {shown}",
    )
