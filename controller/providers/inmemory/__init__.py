"""The in-memory provider: a small simulated cloud, its HTTP API, and the client for it.

- :mod:`.simulator`: :class:`Simulator`, the cloud's state and clock-driven behaviour (boot
  delays with jitter, launch failures, Nodes registered in workload clusters, persistence,
  fault injection); it implements the provider protocol in-process too;
- :mod:`.server`: :class:`SimulatorServer`, the HTTP API over a simulator;
- :mod:`.client`: :class:`InMemoryProvider`, the provider protocol over that HTTP API;
- :mod:`.process`: :func:`run_simulator`, the simulator as a process of its own;
- :mod:`.nodes` / :mod:`.workload`: how simulated kubelets reach workload clusters.

Smaller pieces: :mod:`.clock`, :mod:`.faults`, :mod:`.template`, :mod:`.state`,
:mod:`.persistence`, :mod:`.names`, :mod:`.wire`, :mod:`.metrics`.

Import from the modules: this package imports nothing itself, so the simulator process does
not load the Kubernetes client unless it has a management cluster to talk to.
"""
