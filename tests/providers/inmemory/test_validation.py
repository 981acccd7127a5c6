"""Nonsense settings for the simulator and its faults are refused with a ValueError, up front.

Plain synchronous tests, kept apart from the virtual-time modules whose marks need a loop."""

from __future__ import annotations

import pytest

from controller.providers.inmemory.faults import Faults
from controller.providers.inmemory.simulator import Simulator


def test_faults_round_trip_through_json_and_reject_nonsense() -> None:
    faults = Faults(
        error_rate=0.1,
        throttle_rate=0.2,
        retry_after=2,
        latency=0.5,
        hang=False,
        lost_reply_rate=0.05,
        operations=frozenset({"describe_group"}),
    )
    assert Faults.from_json(faults.to_json()) == faults
    assert Faults.from_json({}) == Faults()
    for bad in (
        {"errorRate": 2},
        {"latencySeconds": -1},
        {"hang": "yes"},
        {"throttleRate": True},
        {"operations": "describe_group"},
        {"surprise": 1},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            Faults.from_json(bad)


def test_nonsense_options_are_refused() -> None:
    for options in (
        {"failed_retention": -1},
        {"node_retry_initial": 0},
        {"node_retry_initial": 2, "node_retry_max": 1},
        {"node_concurrency": 0},
        {"node_monitor_period": 0},
        {"node_monitor_period": -5},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - one message per option
            Simulator(**options)  # type: ignore[arg-type]
