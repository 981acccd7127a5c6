"""An informer's cache: the latest state of each object, by key, with secondary indexes.

Keys are ``namespace/name`` (``name`` for cluster-scoped objects), as client-go's
``MetaNamespaceKeyFunc``. Objects are stored as the API server sent them minus
``metadata.managedFields`` (large and never read by a controller), with their dict keys
interned (:func:`cache_form`, what the informer stores): field names are the same few
hundred strings in every object, and each watch event's JSON parse would otherwise give
every cached object copies of its own (measured: a quarter of a cached object's size, see
bench/README.md). Only keys: values such as resourceVersions and timestamps are unique and
unbounded, so interning them would grow the interpreter's table, not shrink the cache.

Invariants: every index maps a value to exactly the keys whose current object yields that
value; :meth:`Store.replace` and :meth:`Store.upsert`/:meth:`Store.delete` keep indexes in step.
Readers get the stored dicts themselves: treat them as read-only (copy before changing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from sys import intern
from typing import Any

#: A Kubernetes object as the API server sends it (parsed JSON): the one definition of this
#: alias, used by every layer.
Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


def strip_managed_fields(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def cache_form(obj: Obj) -> Obj:
    """``obj`` as a cache keeps it: without ``metadata.managedFields``, and rebuilt with every
    dict key interned (``sys.intern``), so the thousands of cached objects share one
    ``"metadata"``, one ``"lastTransitionTime"`` and so on instead of each holding the copies
    its own JSON parse made. Equal to ``obj`` in every other respect."""
    result: Obj = _shared_keys(strip_managed_fields(obj))
    return result


def _shared_keys(value: Any) -> Any:
    if type(value) is dict:
        return {intern(k): _shared_keys(v) for k, v in value.items()}
    if type(value) is list:
        return [_shared_keys(v) for v in value]
    return value


# ---------------------------------------------------------------- index functions


def by_owner_uid(obj: Obj) -> Iterable[str]:
    """Index: the uid of every owner reference."""
    return [ref["uid"] for ref in obj.get("metadata", {}).get("ownerReferences", []) or []]


def by_label(label: str) -> IndexFunc:
    """Index: the value of one label (objects without it are not indexed)."""

    def index(obj: Obj) -> Iterable[str]:
        value = (obj.get("metadata", {}).get("labels") or {}).get(label)
        return [value] if value is not None else []

    return index


def by_provider_id(obj: Obj) -> Iterable[str]:
    """Index: ``spec.providerID`` (Nodes, Machines, infra machines)."""
    value = (obj.get("spec") or {}).get("providerID")
    return [value] if value else []


class Store:
    """A keyed object cache with named secondary indexes."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, defaultdict[str, set[str]]] = {}

    def add_index(self, *, name: str, func: IndexFunc) -> None:
        """Register an index; existing items are indexed at once."""
        if name in self._index_funcs:
            raise ValueError(f"index {name!r} already exists")
        self._index_funcs[name] = func
        table: defaultdict[str, set[str]] = defaultdict(set)
        for key, obj in self._items.items():
            for value in func(obj):
                table[value].add(key)
        self._indexes[name] = table

    def ensure_index(self, *, name: str, func: IndexFunc) -> None:
        """:meth:`add_index` unless the same index is already there (shared informers are
        set up by more than one controller); a different function under the name raises."""
        if self._index_funcs.get(name) is func:
            return
        self.add_index(name=name, func=func)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def values(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))

    def by_index(self, *, name: str, value: str) -> list[Obj]:
        """Objects whose index ``name`` yields ``value``; raises KeyError for an unknown index."""
        keys = self._indexes[name].get(value, ())
        return [self._items[k] for k in sorted(keys)]

    def upsert(self, obj: Obj) -> Obj | None:
        """Store ``obj``; returns the object it replaced, if any."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def delete(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, key: str, obj: Obj) -> None:
        for name, func in self._index_funcs.items():
            table = self._indexes[name]
            for value in func(obj):
                table[value].add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._index_funcs.items():
            table = self._indexes[name]
            for value in func(obj):
                keys = table.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del table[value]


#: The index of :func:`controller_owner_keys`.
CONTROLLER_OWNER_INDEX = "controllerOwner"


def controller_owner_keys(obj: Obj) -> list[str]:
    """Index function: ``namespace/name`` of the object's controller owner (same namespace)."""
    meta = obj.get("metadata", {})
    return [
        f"{meta.get('namespace')}/{ref.get('name')}"
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller")
    ]
