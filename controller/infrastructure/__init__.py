"""The infrastructure half: one generic reconciler per infra pool kind, driving a cloud through
the provider protocol (:mod:`controller.providers`), with its planning (scaling, capacity
hints, infra machines). It knows clouds only through the adapter protocol and the registry of
kinds; the clouds never import it."""
