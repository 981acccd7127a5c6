"""Store: keys, replace-on-upsert, and indexes that always match the current objects."""

from __future__ import annotations

import json

from controller.runtime.store import (
    Store,
    by_label,
    by_owner_uid,
    by_provider_id,
    cache_form,
    object_key,
    strip_managed_fields,
)


def _obj(name: str, *, ns: str | None = "ns", **extra: object) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if ns:
        meta["namespace"] = ns
    meta.update(extra.pop("meta", {}))  # type: ignore[call-overload]
    return {"metadata": meta, **extra}


def test_keys_are_namespace_slash_name_or_name() -> None:
    assert object_key(_obj("a")) == "ns/a"
    assert object_key(_obj("n1", ns=None)) == "n1"


def test_managed_fields_are_stripped() -> None:
    obj = _obj("a", meta={"managedFields": [{"manager": "x"}], "uid": "u"})
    assert strip_managed_fields(obj)["metadata"] == {"name": "a", "namespace": "ns", "uid": "u"}


def test_cache_form_is_equal_minus_managed_fields_with_keys_shared() -> None:
    text = (
        '{"metadata": {"name": "%s", "managedFields": [{"manager": "x"}], "labels": {"a": "b"}},'
        ' "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "t"}]}}'
    )
    one, two = (cache_form(json.loads(text % name)) for name in ("one", "two"))
    assert one == {
        "metadata": {"name": "one", "labels": {"a": "b"}},
        "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "t"}]},
    }

    def keys(obj: object) -> list[str]:
        if isinstance(obj, dict):
            return [k for key, value in obj.items() for k in (key, *keys(value))]
        if isinstance(obj, list):
            return [k for item in obj for k in keys(item)]
        return []

    assert all(a is b for a, b in zip(keys(one), keys(two), strict=True))


def test_indexes_follow_updates_and_deletes() -> None:
    store = Store()
    store.add_index(name="owner", func=by_owner_uid)
    store.add_index(name="pool", func=by_label("cluster.x-k8s.io/pool-name"))
    store.add_index(name="pid", func=by_provider_id)
    a = _obj(
        "a",
        meta={
            "ownerReferences": [{"uid": "mp-1"}],
            "labels": {"cluster.x-k8s.io/pool-name": "p1"},
        },
        spec={"providerID": "inmemory:///z/1"},
    )
    assert store.upsert(a) is None
    assert [o["metadata"]["name"] for o in store.by_index(name="owner", value="mp-1")] == ["a"]
    assert store.by_index(name="pid", value="inmemory:///z/1") == [a]

    moved = _obj(
        "a",
        meta={"ownerReferences": [{"uid": "mp-2"}], "labels": {"cluster.x-k8s.io/pool-name": "p2"}},
    )
    assert store.upsert(moved) is a
    assert store.by_index(name="owner", value="mp-1") == []
    assert store.by_index(name="owner", value="mp-2") == [moved]
    assert store.by_index(name="pool", value="p1") == []
    assert store.by_index(name="pid", value="inmemory:///z/1") == []

    assert store.delete("ns/a") is moved
    assert store.by_index(name="owner", value="mp-2") == []
    assert len(store) == 0


def test_index_added_late_covers_existing_items() -> None:
    store = Store()
    store.upsert(_obj("a", meta={"labels": {"k": "v"}}))
    store.upsert(_obj("b", meta={"labels": {"k": "v"}}))
    store.add_index(name="k", func=by_label("k"))
    assert [o["metadata"]["name"] for o in store.by_index(name="k", value="v")] == ["a", "b"]
