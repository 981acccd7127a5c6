"""``bench.scale`` in its smallest form, so CI keeps it working and keeps its one hard
target: a full resync of a converged fleet writes nothing."""

from __future__ import annotations

import pytest

from bench.scale import run
from controller.testing.assets import find_assets

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration]


async def test_bench_scale_smallest_form() -> None:
    find_assets()  # the benchmark starts a control plane of its own
    result = await run(
        pools=4, replicas=2, samples=3, backlog_samples=2, concurrency=4, writers=4,
        profile=None,
    )  # fmt: skip
    assert result["resync"]["requests"]["writes"] == 0, result["resync"]
    assert result["cold_start_seconds"] > 0
    assert result["floor_seconds"] > 0
    assert result["latency_idle"]["samples"] == 3
    per_pool = result["controller_requests_per_pool"]["by_verb_resource"]
    assert per_pool["POST machines"] * 5 >= 4 * 2  # one Machine per instance at least
    # One PATCH (owner annotations + taint) per Node the kubelets registered, give or take a
    # retry when a reconcile ran on a Node cache one event behind (the patch's test fails,
    # 422); two a Node was the old way.
    kubelets = result["kubelet_requests_per_pool"]["by_verb_resource"]
    assert per_pool["PATCH nodes"] < 1.5 * kubelets["POST nodes"]
    caches = result["caches"]["by_kind"]
    assert caches["Node (workload c1)"]["objects"] >= 4 * 2
    assert 0 < caches["Machine"]["bytes_per_object"] < 64 * 1024
