"""What the informer caches hold, in bytes per cached object, by resource kind.

:func:`cache_sizes` walks every :class:`~controller.runtime.store.Store` it is given: the
stored objects (every dict, list, string and number reachable from them), the store's own
key → object dict with its key strings, and its secondary indexes (value → set of keys).
Sizes are ``sys.getsizeof`` (CPython's object size, GC header included; not the allocator's
rounding or free lists), and an object reachable twice, from two stores or two places in
one, is counted once, where it is first met, so the kinds add up to the caches' total.
Interpreter-wide singletons (``None``, booleans, small integers) are not counted.

It also reports what repeats: bytes in strings whose value another counted string already
had (separate copies of the same text, such as the ``"metadata"`` key of every object
parsed from its own watch event, or one timestamp held twice). That is the most that
sharing strings (interning) could save.

Used by :mod:`bench.scale` (phase 5, on the converged fleet); :func:`main` measures a
small synthetic store so the module also runs on its own:
``.venv/bin/python -m bench.memory``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields

from controller.runtime.store import Obj, Store

_SMALL_INTS = range(-5, 257)


@dataclass(frozen=True, slots=True)
class CacheSize:
    """One store's footprint."""

    objects: int
    #: The cached objects themselves (every container, string and number under them).
    object_bytes: int
    #: The store's key → object dict and its key strings.
    key_bytes: int
    #: Secondary indexes: value → set of keys (the key strings are usually the store's own).
    index_bytes: int
    #: Bytes in strings that repeat an earlier string's value (what interning could save).
    repeated_string_bytes: int
    #: The part of ``repeated_string_bytes`` that is dict keys.
    repeated_key_bytes: int
    #: Size of the objects as compact JSON (what the API server sent, managedFields aside).
    json_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.object_bytes + self.key_bytes + self.index_bytes

    def per_object(self) -> Obj:
        n = max(self.objects, 1)
        return {
            "objects": self.objects,
            "bytes_per_object": round(self.total_bytes / n),
            "object_bytes_per_object": round(self.object_bytes / n),
            "key_and_index_bytes_per_object": round((self.key_bytes + self.index_bytes) / n),
            "repeated_string_bytes_per_object": round(self.repeated_string_bytes / n),
            "repeated_key_bytes_per_object": round(self.repeated_key_bytes / n),
            "json_bytes_per_object": round(self.json_bytes / n),
        }


class _Walker:
    """Deep ``sys.getsizeof`` with one ``seen`` set, so nothing is counted twice."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.strings: set[str] = set()
        self.repeated = 0
        self.repeated_keys = 0

    def size(self, root: object) -> int:
        total = 0
        stack: list[tuple[object, bool]] = [(root, False)]
        while stack:
            obj, is_key = stack.pop()
            if obj is None or isinstance(obj, bool):
                continue
            if type(obj) is int and obj in _SMALL_INTS:
                continue
            ident = id(obj)
            if ident in self.seen:
                continue
            self.seen.add(ident)
            size = sys.getsizeof(obj)
            total += size
            if isinstance(obj, str):
                if obj in self.strings:
                    self.repeated += size
                    self.repeated_keys += size if is_key else 0
                else:
                    self.strings.add(obj)
            elif isinstance(obj, dict):
                stack.extend((key, True) for key in obj)
                stack.extend((value, False) for value in obj.values())
            elif isinstance(obj, list | tuple | set | frozenset):
                stack.extend((item, False) for item in obj)
        return total


def cache_sizes(stores: Mapping[str, Store]) -> dict[str, CacheSize]:
    """The footprint of each named store; objects shared between them count in the first."""
    walker = _Walker()
    sizes: dict[str, CacheSize] = {}
    for name, store in stores.items():
        repeated_before, keys_before = walker.repeated, walker.repeated_keys
        items: dict[str, Obj] = store._items
        object_bytes = sum(walker.size(obj) for obj in items.values())
        key_bytes = sys.getsizeof(items) + sum(walker.size(key) for key in items)
        walker.seen.add(id(items))
        index_bytes = walker.size(store._indexes)
        json_bytes = sum(len(json.dumps(obj, separators=(",", ":"))) for obj in items.values())
        sizes[name] = CacheSize(
            objects=len(items),
            object_bytes=object_bytes,
            key_bytes=key_bytes,
            index_bytes=index_bytes,
            repeated_string_bytes=walker.repeated - repeated_before,
            repeated_key_bytes=walker.repeated_keys - keys_before,
            json_bytes=json_bytes,
        )
    return sizes


def summary(sizes: Mapping[str, CacheSize]) -> Obj:
    """JSON-ready figures: per store, and the total over all of them."""
    total = CacheSize(*(sum(getattr(s, f.name) for s in sizes.values()) for f in fields(CacheSize)))
    return {
        "by_kind": {name: s.per_object() for name, s in sizes.items()},
        "total": total.per_object(),
        "total_mib": round(total.total_bytes / 2**20, 2),
    }


def main() -> int:
    """Measure 1,000 synthetic Nodes parsed one by one (as watch events deliver them)."""
    store = Store()
    for i in range(1000):
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"node-{i}",
                "uid": f"00000000-0000-0000-0000-{i:012d}",
                "resourceVersion": str(1000 + i),
                "labels": {"kubernetes.io/hostname": f"node-{i}", "kubernetes.io/os": "linux"},
            },
            "spec": {"providerID": f"inmemory:///zone-a/i{i}"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        store.upsert(json.loads(json.dumps(node)))
    print(json.dumps(summary(cache_sizes({"Node": store})), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
