"""The MachinePool (core) reconciler: it reads the infrastructure contract and never calls a cloud.

One concern per module, as Cluster API splits its reconciler: :mod:`.reconciler` runs the
phases in order; :mod:`.bootstrap`, :mod:`.infrastructure`, :mod:`.noderefs` and
:mod:`.deletion` each do one; :mod:`.status` computes what is reported; :mod:`.setup` maps
events to pools.
"""
