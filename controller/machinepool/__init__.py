"""The MachinePool (core) reconciler: it reads the infrastructure contract and never calls a cloud.

One concern per module, as Cluster API splits its reconciler: :mod:`.reconciler` runs the
phases in order; :mod:`.bootstrap`, :mod:`.infrastructure`, :mod:`.noderefs`,
:mod:`.deletion` each do one; :mod:`.phases` and :mod:`.status` compute what is reported;
:mod:`.conditions` keeps condition bookkeeping honest; :mod:`.watches` maps events to pools.
"""
