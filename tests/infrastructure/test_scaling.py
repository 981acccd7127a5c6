"""Scale and rollout planning (controller.infrastructure.scaling): examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.infrastructure.scaling import (
    Member,
    Rollout,
    plan_scaling,
    removal_order,
    resolve_rollout,
)
from controller.providers.base import Instance, InstanceState


def _instance(
    i: int, *, age: int = 0, state: InstanceState = "running", version: str = "v1"
) -> Instance:
    return Instance(
        instance_id=f"i{i}",
        provider_id=f"inmemory:///z/i{i}",
        zone="z",
        state=state,
        version=version,
        launched_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=age),
    )


def _ids(members: list[Member]) -> list[str]:
    return [m.instance.instance_id for m in members]


def test_removal_order_marked_then_failed_then_unready_then_policy() -> None:
    members = [
        Member(instance=_instance(1, age=10), ready=True),
        Member(instance=_instance(2, age=30), ready=True),
        Member(instance=_instance(3, age=20, state="failed")),
        Member(instance=_instance(4, age=40), ready=True, marked=True),
        Member(instance=_instance(5, age=50)),
    ]
    assert _ids(removal_order(members, policy="Oldest")) == ["i4", "i3", "i5", "i1", "i2"]
    assert _ids(removal_order(members, policy="Newest")) == ["i4", "i3", "i5", "i2", "i1"]
    draws = iter([0.5, 0.9, 0.5, 0.5, 0.1])
    randomised = removal_order(members, policy="Random", rng=draws.__next__)
    assert _ids(randomised)[:3] == ["i4", "i3", "i5"]
    assert _ids(randomised)[3:] == ["i1", "i2"]


def test_scale_in_picks_marked_then_oldest_and_never_a_going_one() -> None:
    members = [
        Member(instance=_instance(1, age=1), ready=True, going=True),
        Member(instance=_instance(2, age=2), ready=True),
        Member(instance=_instance(3, age=3), ready=True),
        Member(instance=_instance(4, age=4), ready=True, marked=True),
        Member(instance=_instance(5, age=5), ready=True),
    ]
    plan = plan_scaling(members=members, desired=2, capacity=5, template_version="v1",
                        policy="Oldest", rollout=None)  # fmt: skip
    assert [r.instance.instance_id for r in plan.removals] == ["i4", "i2"]
    assert {r.reason for r in plan.removals} == {"ScaleIn"}
    assert plan.capacity is None


def test_scale_out_counts_going_and_in_flight_capacity() -> None:
    members = [
        Member(instance=_instance(1), ready=True, going=True),
        Member(instance=_instance(2), ready=True),
    ]
    # capacity 3: one launch in flight. Want 3 members: 1 + 1 in flight -> launch 1 more.
    plan = plan_scaling(members=members, desired=3, capacity=3, template_version="v1",
                        policy="Oldest", rollout=None)  # fmt: skip
    assert plan.capacity == 4
    assert plan.removals == ()


def test_hold_stops_launches_for_an_unaccounted_deletion() -> None:
    members = [Member(instance=_instance(1), going=True), Member(instance=_instance(2))]
    plan = plan_scaling(members=members, desired=2, capacity=2, template_version="v1",
                        policy="Oldest", rollout=None, hold=True)  # fmt: skip
    assert plan.capacity is None


def test_rollout_surges_then_replaces_one_at_a_time_with_no_unavailability() -> None:
    rollout = Rollout(max_surge=1, max_unavailable=0)
    old = [Member(instance=_instance(i, age=i, version="v1"), ready=True) for i in range(4)]
    plan = plan_scaling(members=old, desired=4, capacity=4, template_version="v2",
                        policy="Oldest", rollout=rollout)  # fmt: skip
    assert plan.capacity == 5
    assert plan.removals == ()
    assert plan.outdated == 4
    booting = [*old, Member(instance=_instance(9, age=9, version="v2"))]
    plan = plan_scaling(members=booting, desired=4, capacity=5, template_version="v2",
                        policy="Oldest", rollout=rollout)  # fmt: skip
    assert plan.capacity is None
    assert plan.removals == ()
    ready = [*old, Member(instance=_instance(9, age=9, version="v2"), ready=True)]
    plan = plan_scaling(members=ready, desired=4, capacity=5, template_version="v2",
                        policy="Oldest", rollout=rollout)  # fmt: skip
    assert [(r.instance.instance_id, r.reason) for r in plan.removals] == [("i0", "Rollout")]


def test_resolve_rollout_percentages_and_the_zero_zero_pair() -> None:
    assert resolve_rollout(max_surge="25%", max_unavailable="25%", desired=10) == Rollout(3, 2)
    assert resolve_rollout(max_surge=None, max_unavailable=None, desired=4) == Rollout(1, 0)
    assert resolve_rollout(max_surge=0, max_unavailable=0, desired=4) == Rollout(1, 0)


_members = st.lists(
    st.builds(
        lambda i, age, state, version, going, marked, ready: Member(
            instance=_instance(i, age=age, state=state, version=version),
            going=going,
            marked=marked,
            ready=ready and state == "running",
        ),
        st.integers(0, 10_000),
        st.integers(0, 100),
        st.sampled_from(["pending", "running", "failed", "terminating"]),
        st.sampled_from(["v1", "v2"]),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
    unique_by=lambda m: m.instance.instance_id,
)


@settings(max_examples=400, deadline=None)
@given(
    members=_members,
    desired=st.integers(0, 12),
    extra=st.integers(0, 3),
    surge=st.integers(0, 3),
    unavailable=st.integers(0, 3),
    rolling=st.booleans(),
    hold=st.booleans(),
)
def test_plan_invariants(
    members: list[Member], desired: int, extra: int, surge: int, unavailable: int,
    rolling: bool, hold: bool,
) -> None:  # fmt: skip
    present = [m for m in members if m.instance.state != "terminating"]
    capacity = len(present) + extra
    rollout = resolve_rollout(max_surge=surge, max_unavailable=unavailable, desired=desired)
    plan = plan_scaling(members=members, desired=desired, capacity=capacity,
                        template_version="v2", policy="Oldest",
                        rollout=rollout if rolling else None, hold=hold)  # fmt: skip
    live = {m.instance.instance_id: m for m in present if not m.going}
    removed = [r.instance.instance_id for r in plan.removals]
    # Only live members are removed, each once.
    assert len(set(removed)) == len(removed)
    assert set(removed) <= set(live)
    # Capacity only ever goes up, and not at all under hold.
    if plan.capacity is not None:
        assert plan.capacity > capacity
        assert not hold
    launched = 0 if plan.capacity is None else plan.capacity - capacity
    after = len(live) + extra - len(removed) + launched
    outdated = [i for i, m in live.items() if m.instance.version != "v2"]
    if not rolling or not outdated:
        # Plain scaling lands exactly on desired unless held or there is nothing to remove.
        assert after >= desired or hold
        assert after <= max(desired, len(live) + extra - len(live))
    else:
        # A rollout stays within surge, and ready members never drop below the floor
        # unless they already were below it.
        assert after <= max(desired + rollout.max_surge, len(live) + extra)
        ready_before = sum(1 for m in live.values() if m.ready)
        ready_after = sum(1 for i, m in live.items() if m.ready and i not in removed)
        floor = desired - rollout.max_unavailable
        assert ready_after >= min(floor, ready_before)
