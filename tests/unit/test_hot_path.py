"""The shortcuts of the API server's write path keep the results of the long way: fast copies,
batched UIDs, remembered quantities and managedFields sets, in-place patches of private copies,
the watch cache reusing its decoded previous object, and the client's watch line splitting."""

from __future__ import annotations

import copy
import datetime
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from kybern import storage
from kybern.api import apply, managedfields, objects, patch, registry, validation
from kybern.apiserver import cache, strategy
from kybern.apiserver import store as storemod

REG = registry.Registry()
_NS = REG.lookup("", "v1", "namespaces")
_POD = REG.lookup("", "v1", "pods")
assert _NS and _POD
NS: registry.Resource = _NS
POD: registry.Resource = _POD


def test_copies_are_deep_and_equal() -> None:
    doc: dict[str, Any] = {"a": [1, 2.5, {"b": None, "c": True}], "d": "x", "e": {"f": []}}
    for fn in (objects.copy_json, objects.deep_copy):
        out = fn(doc)
        assert out == doc
        assert out is not doc and out["a"] is not doc["a"] and out["a"][2] is not doc["a"][2]
        assert out["e"]["f"] is not doc["e"]["f"]
        assert out["a"][2]["c"] is True


def test_copy_json_falls_back_for_what_json_cannot_hold() -> None:
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)

    class Name(str):
        pass

    odd: dict[Any, Any] = {"t": when, "n": 2**70, "s": Name("x"), 1: "int key"}
    out = objects.copy_json(odd)
    assert out == odd
    assert out["t"] is when or out["t"] == when
    assert type(out["s"]) is Name
    assert objects.deep_copy({"t": (1, [2])}) == {"t": (1, [2])}


def test_new_uid_is_a_random_version_4_uuid() -> None:
    uids = {objects.new_uid() for _ in range(500)}
    assert len(uids) == 500
    for u in list(uids)[:50]:
        parsed = uuid.UUID(u)
        assert str(parsed) == u and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_now_rfc3339_is_the_current_second() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    got = objects.now_rfc3339()
    after = datetime.datetime.now(datetime.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got)
    when = datetime.datetime.strptime(got, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert before <= when <= after
    assert apply.now() == objects.now_rfc3339() or apply.now() >= got


def test_remembered_quantities_keep_types_apart() -> None:
    assert validation.canonical_quantity("1024Mi") == "1Gi"
    assert validation.canonical_quantity("1024Mi") == "1Gi"  # from the cache
    assert validation.parse_quantity(1) == 1
    for bad in (True, False, None, [1], {"a": 1}, "1x"):
        with pytest.raises(ValueError):
            validation.parse_quantity(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            validation.canonical_quantity(bad)  # type: ignore[arg-type]
    assert validation.canonical_quantity(1.5) == "1500m"


def test_decoded_field_sets_are_shared_but_encode_fresh() -> None:
    fields: dict[str, Any] = {
        "f:spec": {"f:containers": {'k:{"name":"c"}': {".": {}, "f:image": {}}}}
    }
    entry = {"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1"}
    a = managedfields.decode([{**entry, "fieldsV1": fields}])
    b = managedfields.decode([{**entry, "fieldsV1": copy.deepcopy(fields)}])
    fa, fb = next(iter(a.values())).fields, next(iter(b.values())).fields
    assert fa is fb  # remembered
    out1, out2 = managedfields.encode(a), managedfields.encode(b)
    assert out1 == out2 and out1 is not None and out2 is not None
    assert out1[0]["fieldsV1"] == fields
    out1[0]["fieldsV1"]["f:spec"]["mutated"] = {}  # an encoded document is the caller's
    assert managedfields.encode(b)[0]["fieldsV1"] == fields  # type: ignore[index]
    assert fa.union(managedfields.FieldSet.of(("f:status",))) is not fa
    assert fa.to_json() == fields


def test_patches_of_owned_documents_match_copies() -> None:
    doc: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "a"}]},
    }
    body: dict[str, Any] = {
        "spec": {"containers": [{"name": "c", "image": "b"}]},
        "status": {"phase": "x"},
    }
    want = patch.apply_merge_patch(doc, body)
    assert doc["spec"]["containers"][0]["image"] == "a"  # not owned: untouched
    mine = copy.deepcopy(doc)
    assert patch.apply_merge_patch(mine, body, owned=True) == want
    meta = patch.strategic_patch_meta("Pod")
    want = patch.apply_strategic_merge_patch(doc, body, meta)
    mine = copy.deepcopy(doc)
    assert patch.apply_strategic_merge_patch(mine, body, meta, owned=True) == want
    body["spec"]["containers"][0]["image"] = "changed"  # the result shares nothing with it
    assert want["spec"]["containers"][0]["image"] == "b"


@pytest.fixture
async def st() -> AsyncIterator[storemod.Store]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    await s.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    yield s
    cacher.stop()
    await backend.close()


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


async def test_watch_events_carry_the_previous_object(st: storemod.Store) -> None:
    rc = st.cacher.get(POD.key_prefix)
    w = cache.Watcher("d", None)
    rc.watchers.add(w)
    created = await st.create(POD, "d", _pod("p"))
    first = rc.objects[POD.key("d", "p")]

    def mutate(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"].setdefault("labels", {})["a"] = "b"
        return o

    updated = await st.guaranteed_update(POD, "d", "p", mutate)
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    events = [w.queue.get_nowait() for _ in range(w.queue.qsize())]
    assert [e.type if e else None for e in events] == ["ADDED", "MODIFIED"]
    modified = events[1]
    assert modified is not None and modified.prev is first  # reused, not decoded again
    assert modified.prev.obj == created
    assert orjson.loads(modified.obj.json) == updated
    # the cache's JSON of the object is what encoding the store's answer gives
    assert modified.obj.json == orjson.dumps(updated)


async def test_guaranteed_update_hands_out_a_private_copy(st: storemod.Store) -> None:
    await st.create(POD, "d", _pod("q"))
    cached = st.peek(POD, "d", "q")
    assert cached is not None
    snapshot = copy.deepcopy(cached.obj)
    seen: list[dict[str, Any]] = []

    def mutate(o: dict[str, Any]) -> dict[str, Any]:
        seen.append(o)
        o["spec"]["containers"][0]["image"] = "changed"
        o["metadata"]["labels"] = {"x": "y"}
        return o

    out = await st.guaranteed_update(POD, "d", "q", mutate)
    assert seen and seen[0] is not cached.obj
    assert cached.obj == snapshot  # the cache's object as of its revision is untouched
    assert out["spec"]["containers"][0]["image"] == "changed"
