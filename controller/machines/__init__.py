"""Per-machine lifecycle: what happens to one pool Machine and its Node.

:mod:`.drain` cordons a workload-cluster Node and evicts its pods, one non-blocking pass at a
time, for the Machine deletion flow to call and requeue.
"""
