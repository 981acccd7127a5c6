"""Property tests: random event sequences against the real system end converged and truthful.

Each example is a random sequence of steps played against the real local control plane, with
both reconcilers (``setup_machinepool_controller`` and ``setup_infrastructure_controller``)
running in a Manager and the in-process :class:`Simulator` as the cloud, whose instances
register real Nodes: scale to 0..5 through the scale subresource, pause and unpause with the
``cluster.x-k8s.io/paused`` annotation, crash a live instance through the simulator, wait
0..1 s. The pool starts at a random size and nothing waits between steps, so events land
mid-provisioning, mid-scale and while paused.

- :func:`test_random_events_end_converged`: the sequence ends with an unpause and a final
  scale; then, within 60 s, the MachinePool must be ``Running`` with ``spec.replicas ==
  status.replicas == readyReplicas``, ``spec.providerIDList`` equal (as a set, without
  duplicates) to the provider IDs of the simulator's live (pending and running) instances,
  whose number and the group's desired capacity equal the replicas (no extra instances),
  ``nodeRefs`` naming existing Nodes (by name and uid) whose provider IDs are exactly the
  list, ``observedGeneration`` current, ``Paused=False``, and the InMemoryMachinePool's list
  equal to the pool's. Then, within :data:`STALE_NODE_GRACE`, no Node of an instance that
  left the pool may remain.
- :func:`test_random_events_then_delete_leave_nothing`: the sequence ends with an unpause
  and, once the controller has put its finalizer on the MachinePool, its deletion; then the
  MachinePool, the InMemoryMachinePool and the simulator group must be gone, and then every
  Node of the group.

Who deletes the Node of a gone instance: the product, for the Nodes it recorded (in
``status.nodeRefs`` or by its owner annotations); the simulated cloud's node lifecycle
controller (:mod:`controller.providers.inmemory.nodelifecycle`), as a cloud-controller-manager
does, for any not-Ready Node whose instance left its group, including the Node of an instance
that registered and vanished before the pool ever recorded it (crashed while the pool was
paused). Before that controller existed such Nodes were never deleted;
:data:`CRASH_TWICE_WHILE_PAUSED` is the explicit example that reproduced it deterministically,
kept as a regression test in both properties.

How the examples run: pytest-asyncio runs an ``async def`` test decorated with ``@given``
by driving each example to completion on the session event loop (it wraps hypothesis's
``inner_test``), so these are ordinary hypothesis tests: examples are generated, a failing
one is reported as hypothesis's falsifying example with its steps, and :func:`note` adds
which instances were live when a crash step ran. Only session fixtures are used; everything
an example needs (namespace, Cluster and kubeconfig Secret, Manager, simulator) is built and
torn down per example by :func:`tests.machinepool._harness.world`, which also deletes the
example's Nodes. Settings: few examples, ``derandomize=True`` (the same sequences every
run), no example database.

Shrinking is off by default: a failing example costs the whole convergence timeout, and
shrinking replays dozens of them, beyond the suite's per-test timeout. To shrink a failure,
run ``MP_PROPERTY_SHRINK=1 pytest --timeout=0 tests/machinepool/test_properties.py``;
``MP_PROPERTY_EXAMPLES=N`` runs more examples. Timing is real, so a replayed sequence need
not interleave the same way twice (hypothesis then reports a ``FlakyFailure``, still with the
failing example).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st
from kubernetes_asyncio import client

from controller.testing import ControlPlane
from controller.testing.waiting import until
from tests.machinepool._harness import (
    FAILED_RETENTION,
    NODE_MONITOR_PERIOD,
    Crash,
    Pause,
    Scale,
    Step,
    Unpause,
    Wait,
    World,
    eventually_none,
    world,
)

_EXAMPLES = int(os.environ.get("MP_PROPERTY_EXAMPLES", "16"))
_PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("MP_PROPERTY_SHRINK") == "1" else ()
)
CONVERGENCE_TIMEOUT = 60.0
#: Once the rest has converged, how long Nodes of gone instances may take to be deleted: the
#: reconcile that drops a provider ID deletes a recorded Node at once; an unrecorded one is
#: the cloud's to delete, once its instance has left the group (a crashed instance stays
#: listed as failed for FAILED_RETENTION) and at its next pass, plus slack for a loaded CI.
STALE_NODE_GRACE = FAILED_RETENTION + NODE_MONITOR_PERIOD + 5.0

#: The gap the cloud's node lifecycle controller closes, deterministically: while the pool is
#: paused its instance crashes, the replacement boots and registers a Node, and crashes too;
#: the replacement's provider ID never reaches providerIDList or nodeRefs, so only the cloud
#: can tell its Node is gone.
CRASH_TWICE_WHILE_PAUSED: list[Step] = [
    Wait(1.0), Pause(), Wait(0.3), Crash(0), Wait(0.6), Crash(0), Wait(0.3),
]  # fmt: skip


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=_PHASES,
        suppress_health_check=[HealthCheck.too_slow],
    )


replicas = st.integers(min_value=0, max_value=5)
steps: st.SearchStrategy[Step] = st.one_of(
    st.builds(Scale, replicas),
    st.just(Pause()),
    st.just(Unpause()),
    st.builds(Crash, st.integers(min_value=0, max_value=4)),
    st.builds(Wait, st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0])),
)


async def _play(w: World, sequence: list[Step]) -> None:
    for step in sequence:
        if isinstance(step, Crash):
            note(f"{step}: live instances {[i.instance_id for i in w.live_instances()]}")
        await w.play(step)


@_settings(max_examples=_EXAMPLES)
@example(initial=1, sequence=CRASH_TWICE_WHILE_PAUSED, final=1)
@given(initial=replicas, sequence=st.lists(steps, min_size=4, max_size=8), final=replicas)
async def test_random_events_end_converged(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    initial: int,
    sequence: list[Step],
    final: int,
) -> None:
    async with world(control_plane=control_plane, api_client=api_client) as w:
        await w.create_pool(replicas=initial)
        await _play(w, [*sequence, Unpause(), Scale(final)])
        await eventually_none(
            lambda: w.convergence_problems(replicas=final),
            timeout=CONVERGENCE_TIMEOUT,
            what=f"convergence at {final} replicas",
        )
        await eventually_none(
            lambda: w.stale_nodes(replicas=final),
            timeout=STALE_NODE_GRACE,
            what="the Nodes of gone instances deleted",
        )


@_settings(max_examples=max(_EXAMPLES // 2, 1))
@example(initial=1, sequence=CRASH_TWICE_WHILE_PAUSED)
@given(initial=replicas, sequence=st.lists(steps, min_size=2, max_size=6))
async def test_random_events_then_delete_leave_nothing(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    initial: int,
    sequence: list[Step],
) -> None:
    async with world(control_plane=control_plane, api_client=api_client) as w:
        await w.create_pool(replicas=initial)
        await _play(w, [*sequence, Unpause()])
        # Deleted before the controller adds its finalizer, a MachinePool goes at once and
        # nothing can clean up after it (as in Cluster API); that race is not the property.
        await until(w.has_finalizer, timeout=CONVERGENCE_TIMEOUT, what="the finalizer")
        await w.delete_pool()
        await eventually_none(
            w.deletion_problems, timeout=CONVERGENCE_TIMEOUT, what="the pool and all it owned gone"
        )
        await eventually_none(
            lambda: w.stale_nodes(replicas=None),
            timeout=STALE_NODE_GRACE,
            what="every Node of the group deleted",
        )
