"""The pure health decisions, in virtual time: every timeout is checked just before, at and
after it expires, and the requeue a healthy verdict asks for lands exactly on the expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api.healthcheck import LabelSelector, MachineHealthCheckTriggerIf
from controller.healthcheck.health import (
    REMEDIATE_MACHINE_ANNOTATION,
    ConditionCheck,
    NodeCheck,
    machine_health,
    remediation_budget,
)
from controller.healthcheck.selector import describe, matches

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
READY_FALSE = NodeCheck(type="Ready", status="False", timeout=30)
READY_UNKNOWN = NodeCheck(type="Ready", status="Unknown", timeout=60)
DISK_TRUE = ConditionCheck(type="DiskPressureExample", status="True", timeout=45)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def machine(
    *,
    created: datetime = T0,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "m1", "creationTimestamp": _stamp(created),
                     "annotations": dict(annotations or {})},
        "spec": {"providerID": "inmemory:///a/i-1"},
        "status": status or {},
    }  # fmt: skip


def node(ready: str, *, since: datetime = T0) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1"},
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": _stamp(since)}]},
    }  # fmt: skip


def test_a_machine_without_a_node_is_healthy_until_the_startup_timeout_then_unhealthy() -> None:
    m = machine()

    early = machine_health(machine=m, node=None, startup_timeout=600, node_checks=[],
                           now=T0 + timedelta(seconds=599.5))  # fmt: skip
    assert early.healthy
    assert early.recheck_in == pytest.approx(0.5)

    at = machine_health(machine=m, node=None, startup_timeout=600, node_checks=[],
                        now=T0 + timedelta(seconds=600))  # fmt: skip
    assert (at.healthy, at.reason) == (False, "NodeStartupTimeout")
    assert "600s" in at.message


def test_a_zero_startup_timeout_disables_the_startup_check() -> None:
    verdict = machine_health(machine=machine(), node=None, startup_timeout=0, node_checks=[],
                             now=T0 + timedelta(days=30))  # fmt: skip
    assert verdict.healthy
    assert verdict.recheck_in is None


def test_a_node_condition_counts_from_its_last_transition_time() -> None:
    n = node("False", since=T0 + timedelta(seconds=100))
    m = machine()
    checks = [READY_FALSE, READY_UNKNOWN]

    before = machine_health(machine=m, node=n, startup_timeout=600, node_checks=checks,
                            now=T0 + timedelta(seconds=110))  # fmt: skip
    assert before.healthy
    assert before.recheck_in == pytest.approx(20), "requeue exactly when the timeout expires"

    after = machine_health(machine=m, node=n, startup_timeout=600, node_checks=checks,
                           now=T0 + timedelta(seconds=130))  # fmt: skip
    assert (after.healthy, after.reason) == (False, "UnhealthyNode")
    assert "Ready has been False since" in after.message
    assert "30s" in after.message


def test_a_node_condition_with_another_status_is_healthy_and_needs_no_requeue() -> None:
    verdict = machine_health(machine=machine(), node=node("True"), startup_timeout=600,
                             node_checks=[READY_FALSE, READY_UNKNOWN],
                             now=T0 + timedelta(hours=5))  # fmt: skip
    assert verdict.healthy
    assert verdict.recheck_in is None
    assert verdict.reason == "HealthCheckSucceeded"


def test_the_message_does_not_change_while_time_passes() -> None:
    n = node("False")
    at = [
        machine_health(machine=machine(), node=n, startup_timeout=600, node_checks=[READY_FALSE],
                       now=T0 + timedelta(seconds=s)).message
        for s in (31, 90, 4000)
    ]  # fmt: skip
    assert len(set(at)) == 1


def test_a_node_that_was_there_and_is_gone_is_node_deleted() -> None:
    with_ref = machine(status={"nodeRef": {"name": "n1"}})
    verdict = machine_health(machine=with_ref, node=None, startup_timeout=600, node_checks=[],
                             now=T0 + timedelta(seconds=1))  # fmt: skip
    assert (verdict.healthy, verdict.reason) == (False, "NodeDeleted")
    assert "Node n1" in verdict.message

    # The Machine controller drops nodeRef when the Node goes, but says why.
    dropped = machine(status={"conditions": [
        {"type": "NodeHealthy", "status": "False", "reason": "NodeDeleted"}]})  # fmt: skip
    verdict = machine_health(machine=dropped, node=None, startup_timeout=600, node_checks=[],
                             now=T0 + timedelta(seconds=1))  # fmt: skip
    assert (verdict.healthy, verdict.reason) == (False, "NodeDeleted")


def test_the_remediate_annotation_wins_over_a_healthy_node() -> None:
    m = machine(annotations={REMEDIATE_MACHINE_ANNOTATION: ""})
    verdict = machine_health(machine=m, node=node("True"), startup_timeout=600, node_checks=[],
                             now=T0)  # fmt: skip
    assert (verdict.healthy, verdict.reason) == (False, "HasRemediateAnnotation")


def disk(status: str, *, since: datetime = T0) -> dict[str, Any]:
    cond = {"type": "DiskPressureExample", "status": status, "lastTransitionTime": _stamp(since)}
    return {"conditions": [cond]}


def test_a_machine_condition_counts_from_its_last_transition_time() -> None:
    m = machine(status=disk("True", since=T0 + timedelta(seconds=100)))

    before = machine_health(machine=m, node=node("True"), startup_timeout=600,
                            node_checks=[READY_FALSE], machine_checks=[DISK_TRUE],
                            now=T0 + timedelta(seconds=110))  # fmt: skip
    assert before.healthy
    assert before.recheck_in == pytest.approx(35), "requeue exactly when the timeout expires"

    after = machine_health(machine=m, node=node("True"), startup_timeout=600,
                           node_checks=[READY_FALSE], machine_checks=[DISK_TRUE],
                           now=T0 + timedelta(seconds=145))  # fmt: skip
    assert (after.healthy, after.reason) == (False, "UnhealthyMachine")
    assert "Machine condition DiskPressureExample has been True since" in after.message
    assert "45s" in after.message


def test_the_earliest_of_machine_and_node_timeouts_is_the_requeue() -> None:
    m = machine(status=disk("True", since=T0))
    n = node("False", since=T0 + timedelta(seconds=5))
    verdict = machine_health(machine=m, node=n, startup_timeout=600, node_checks=[READY_FALSE],
                             machine_checks=[DISK_TRUE],
                             now=T0 + timedelta(seconds=10))  # fmt: skip
    assert verdict.healthy
    assert verdict.recheck_in == pytest.approx(25), "the Node's 30s from T0+5 expires first"

    no_node = machine_health(machine=m, node=None, startup_timeout=0, node_checks=[],
                             machine_checks=[DISK_TRUE],
                             now=T0 + timedelta(seconds=10))  # fmt: skip
    assert no_node.healthy
    assert no_node.recheck_in == pytest.approx(35), "no startup timeout, yet a Machine one runs"

    starting = machine_health(machine=m, node=None, startup_timeout=20, node_checks=[],
                              machine_checks=[DISK_TRUE],
                              now=T0 + timedelta(seconds=10))  # fmt: skip
    assert starting.recheck_in == pytest.approx(10), "the startup timeout expires first"


def test_a_machine_condition_with_another_status_or_absent_is_healthy_without_requeue() -> None:
    for m in (machine(status=disk("False")), machine()):
        verdict = machine_health(machine=m, node=node("True"), startup_timeout=600,
                                 node_checks=[], machine_checks=[DISK_TRUE],
                                 now=T0 + timedelta(hours=5))  # fmt: skip
        assert verdict.healthy
        assert verdict.recheck_in is None


def test_an_unhealthy_machine_condition_wins_over_the_node_based_reasons() -> None:
    held = disk("True", since=T0)
    now = T0 + timedelta(seconds=1000)
    cases = [
        (machine(status=held), node("False"), "UnhealthyNode"),
        (machine(status={**held, "nodeRef": {"name": "n1"}}), None, "NodeDeleted"),
        (machine(status=held), None, "NodeStartupTimeout"),
    ]
    for m, n, without in cases:
        alone = machine_health(machine=m, node=n, startup_timeout=600,
                               node_checks=[READY_FALSE], now=now)  # fmt: skip
        assert alone.reason == without
        verdict = machine_health(machine=m, node=n, startup_timeout=600,
                                 node_checks=[READY_FALSE], machine_checks=[DISK_TRUE],
                                 now=now)  # fmt: skip
        assert (verdict.healthy, verdict.reason) == (False, "UnhealthyMachine")


def test_every_failing_machine_condition_is_named_and_the_message_is_stable() -> None:
    both = machine(status={"conditions": [
        {"type": "DiskPressureExample", "status": "True", "lastTransitionTime": _stamp(T0)},
        {"type": "example.com/Wedged", "status": "Unknown", "lastTransitionTime": _stamp(T0)},
    ]})  # fmt: skip
    checks = [DISK_TRUE, ConditionCheck(type="example.com/Wedged", status="Unknown", timeout=0)]
    at = [
        machine_health(machine=both, node=node("True"), startup_timeout=600, node_checks=[],
                       machine_checks=checks, now=T0 + timedelta(seconds=s)).message
        for s in (45, 900)
    ]  # fmt: skip
    assert at[0] == at[1]
    assert "DiskPressureExample" in at[0]
    assert "example.com/Wedged has been Unknown" in at[0]


def trigger(**values: Any) -> MachineHealthCheckTriggerIf:
    return MachineHealthCheckTriggerIf.from_dict(values)


@pytest.mark.parametrize(
    ("values", "expected", "unhealthy", "allowed", "remaining"),
    [
        ({}, 4, 4, True, 0),  # unset: 100%
        ({"unhealthyLessThanOrEqualTo": "40%"}, 4, 1, True, 0),  # 40% of 4 is 1.6 -> 1
        ({"unhealthyLessThanOrEqualTo": "40%"}, 4, 2, False, 0),
        ({"unhealthyLessThanOrEqualTo": "40%"}, 4, 3, False, 0),
        ({"unhealthyLessThanOrEqualTo": "40%"}, 10, 3, True, 1),
        ({"unhealthyLessThanOrEqualTo": 2}, 4, 2, True, 0),
        ({"unhealthyLessThanOrEqualTo": 2}, 4, 0, True, 2),
        ({"unhealthyLessThanOrEqualTo": 0}, 4, 1, False, 0),
        ({"unhealthyInRange": "[1-3]"}, 4, 3, True, 0),
        ({"unhealthyInRange": "[1-3]"}, 4, 4, False, 0),
        ({"unhealthyInRange": "[2-3]"}, 4, 1, False, 0),
        # the range wins over the threshold
        ({"unhealthyInRange": "[0-4]", "unhealthyLessThanOrEqualTo": 1}, 4, 3, True, 1),
    ],
)
def test_short_circuit_arithmetic(
    values: dict[str, Any], expected: int, unhealthy: int, allowed: bool, remaining: int
) -> None:
    budget = remediation_budget(trigger=trigger(**values) if values else None,
                                expected=expected, unhealthy=unhealthy)  # fmt: skip
    assert (budget.allowed, budget.remaining) == (allowed, remaining)
    assert f"{unhealthy} of {expected} Machines unhealthy" in budget.message


@pytest.mark.parametrize(
    "values",
    [{"unhealthyLessThanOrEqualTo": "140%"}, {"unhealthyLessThanOrEqualTo": "lots"},
     {"unhealthyLessThanOrEqualTo": -1}, {"unhealthyInRange": "[3-1]"}],
)  # fmt: skip
def test_a_malformed_threshold_is_a_readable_value_error(values: dict[str, Any]) -> None:
    # The Python model checks only the pattern; the CEL rules are the API server's.
    parsed = MachineHealthCheckTriggerIf.model_construct(
        unhealthy_less_than_or_equal_to=values.get("unhealthyLessThanOrEqualTo"),
        unhealthy_in_range=values.get("unhealthyInRange"),
    )
    with pytest.raises(ValueError, match="unhealthy"):
        remediation_budget(trigger=parsed, expected=4, unhealthy=1)


def test_label_selector_semantics() -> None:
    selector = LabelSelector.from_dict(
        {"matchLabels": {"pool": "a"},
         "matchExpressions": [{"key": "zone", "operator": "In", "values": ["x", "y"]},
                              {"key": "spot", "operator": "DoesNotExist"},
                              {"key": "tier", "operator": "NotIn", "values": ["db"]},
                              {"key": "managed", "operator": "Exists"}]}
    )  # fmt: skip
    base = {"pool": "a", "zone": "x", "managed": ""}
    assert matches(selector=selector, labels=base)
    assert matches(selector=selector, labels={**base, "tier": "web"})
    assert not matches(selector=selector, labels={**base, "tier": "db"})
    assert not matches(selector=selector, labels={**base, "spot": "1"})
    assert not matches(selector=selector, labels={**base, "zone": "z"})
    assert not matches(selector=selector, labels={**base, "pool": "b"})
    assert not matches(selector=selector, labels={"pool": "a", "zone": "x"})
    assert describe(selector) == "pool=a,zone in (x,y),!spot,tier notin (db),managed"
