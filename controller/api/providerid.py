"""The ``providerIDList`` type shared by MachinePool and infrastructure machine pools.

Limits are Cluster API's: at most 10000 entries, each 1..512 characters.

Uniqueness is enforced by the API server through ``x-kubernetes-list-type: set`` (Cluster API
declares the list ``atomic`` and does not check uniqueness). A CEL rule cannot do it: every
uniqueness check CEL offers (``exists_one``, ``indexOf``/``lastIndexOf``, ``distinct()``) is
quadratic, and with 10000 entries of up to 512 characters the API server rejects the CRD as
over the rule cost budget (measured against kube-apiserver 1.35: ``distinct()`` is 20x over,
the others over 100x). ``set`` checks in linear time and answers a duplicate with a 422
"Duplicate value".

What ``set`` changes compared with ``atomic``: merge patches and updates still replace the
whole list, but server-side apply merges it entry by entry between field managers, and
``managedFields`` records one entry per provider ID. The controller is the only writer of
this list, so the merge never comes into play; the ``managedFields`` growth (about the size
of the list itself) is the price.

Python parsing checks the per-entry limits and the length, not uniqueness: an object stored
under Cluster API's own CRD (which allows duplicates) must still parse.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from controller.api.schema import SchemaExtra, crd

__all__ = ["MAX_PROVIDER_IDS", "ProviderIDList"]

#: Most provider IDs a pool may list (Cluster API's limit).
MAX_PROVIDER_IDS = 10000

ProviderIDList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=512)]],
    Field(max_length=MAX_PROVIDER_IDS),
    SchemaExtra(crd(list_type="set")),
]
"""Provider IDs of a pool's instances: unique, at most 10000, each 1..512 characters."""
