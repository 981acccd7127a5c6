"""MachineHealthCheck: find unhealthy Machines and ask their owner to remediate them.

- :mod:`.selector` — ``metav1.LabelSelector`` matching;
- :mod:`.health` — pure decisions: one Machine's health at a given time, and whether the
  share of unhealthy Machines still allows remediation (short-circuiting);
- :mod:`.metrics` — per health check gauges and counters;
- :mod:`.reconciler` — the reconciler: marks Machines, writes the health check's status;
- :mod:`.setup` — wiring into a manager.

Remediation itself belongs to the Machine's owner: a Machine marked ``OwnerRemediated=False``
is deleted and replaced by its MachinePool (:mod:`controller.machinepool.machines`), so this
package imports neither ``machinepool`` nor ``providers`` (``tests/test_layers.py``).
"""
