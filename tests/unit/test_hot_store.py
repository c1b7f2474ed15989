"""The watch cache's shortcuts give what the long way gives: an object a local write hands over
(`cache.encode`) has the JSON, decoded object, namespace and selectable fields that decoding
the stored bytes gives; `exact_object_fields` reads as `object_fields` after a JSON round trip;
`object_fields` of a path tuple matches the general form; watchers see the same events, frames
and cached objects whether the store's writes hand their encodings over or not."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybern import storage
from kybern.api import registry, selectors
from kybern.apiserver import cache, strategy
from kybern.apiserver import store as storemod

REG = registry.Registry()
_NS = REG.lookup("", "v1", "namespaces")
_CM = REG.lookup("", "v1", "configmaps")
_POD = REG.lookup("", "v1", "pods")
assert _NS and _CM and _POD
NS: registry.Resource = _NS
CM: registry.Resource = _CM
POD: registry.Resource = _POD

MARK = cache._RV_MARK
OLD_MARK = "\x00kybern:resourceVersion\x00"  # the marker before: plain data now
KEYS = st.sampled_from(["a", "b", "nodeName", "namespace", "name", "resourceVersion", MARK])
PATHS = st.lists(
    st.sampled_from(
        [
            "spec.nodeName",
            "spec.a",
            "spec.a.b",
            "status.a",
            "status.b.a",
            "a",
            "metadata.name",
            "metadata.a",
            "nope.a",
            "spec",
        ]
    ),
    max_size=5,
).map(tuple)
STRINGS = st.text(max_size=6) | st.sampled_from(
    [MARK, 'a"' + MARK, MARK + "\x7f", MARK[1:], "\x7f", OLD_MARK, "", "x"]
)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | STRINGS
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


class Color(enum.Enum):
    RED = "red"


class Name(str):
    def __str__(self) -> str:
        return "custom"


@dataclasses.dataclass
class Point:
    a: int = 1


# what orjson encodes but does not give back as it was
ODD_LEAVES = st.sampled_from(
    [
        (1, "x"),
        float("nan"),
        float("inf"),
        -0.0,
        1e16,
        datetime.datetime(2020, 1, 2, 3, 4, 5),
        Color.RED,
        Name("n"),
        Point(),
    ]
)
ODD = st.recursive(
    JSON_LEAVES | ODD_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(KEYS, inner, max_size=4)
        | st.lists(inner, max_size=2).map(tuple)
    ),
    max_leaves=12,
)
METADATA = st.dictionaries(
    st.sampled_from(["name", "namespace", "labels", "a", "resourceVersion"]),
    STRINGS | st.integers(0, 3) | st.none() | st.dictionaries(KEYS, STRINGS, max_size=2),
    max_size=4,
)


@st.composite
def objects(draw: st.DrawFn, values: st.SearchStrategy[Any] = JSON) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": draw(METADATA)}
    for k in draw(st.lists(st.sampled_from(["spec", "status", "a", "kind"]), max_size=3)):
        obj[k] = draw(values)
    return obj


def _decoded(key: str, value: bytes, revision: int) -> cache.CachedObject:
    return cache.decode(storage.KeyValue(key, value, revision, revision))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(obj=objects(), paths=PATHS | st.none(), revision=st.integers(1, 2**40))
def test_handed_over_object_equals_the_decoded_one(
    obj: dict[str, Any], paths: tuple[str, ...] | None, revision: int
) -> None:
    before = orjson.dumps(obj)
    value, enc = cache.encode(obj, paths)
    assert value == orjson.dumps(obj) == before  # the stored bytes, and `obj` is left as it was
    if enc is None:
        return
    assert enc.value is value
    got = enc.cached("/r/k", revision)
    want = _decoded("/r/k", value, revision)
    assert got.revision == want.revision and got.key == want.key
    assert got.namespace == want.namespace  # known without decoding
    if paths is not None and enc.fields is not None:
        assert got.fields(paths) == selectors.object_fields(want.obj, paths)
    assert got.json == want.json
    assert got.obj == want.obj
    assert list(got.obj["metadata"]) == list(want.obj["metadata"])  # the same key order
    for p in (paths, ("spec.a",)):
        if p is not None:
            assert got.fields(p) == want.fields(p) == selectors.object_fields(want.obj, p)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(obj=objects(ODD), paths=PATHS)
def test_exact_fields_read_as_after_a_round_trip(
    obj: dict[str, Any], paths: tuple[str, ...]
) -> None:
    try:
        round_trip = orjson.loads(orjson.dumps(obj))
    except TypeError:
        return  # orjson cannot encode it: no write gets that far
    got = selectors.exact_object_fields(obj, paths)
    if got is not None:
        want = selectors.object_fields(round_trip, paths)
        assert got == want and list(got) == list(want)


def test_exact_fields_give_up_on_what_they_cannot_tell() -> None:
    paths = ("spec.a",)
    for leaf in (float("nan"), Name("n"), Color.RED, Point(), datetime.date(2020, 1, 2)):
        assert selectors.exact_object_fields({"spec": {"a": leaf}}, paths) is None
    assert selectors.exact_object_fields({"spec": Point()}, paths) is None
    assert selectors.exact_object_fields({"spec": {"a": (1,)}}, paths) == {
        "metadata.name": "",
        "metadata.namespace": "",
        "spec.a": "",
    }
    assert selectors.exact_object_fields({"spec": {"a": 1.5}}, paths) is not None
    assert not math.isnan(1.5)


@settings(max_examples=300)
@given(obj=objects(ODD), paths=PATHS)
def test_object_fields_of_a_tuple_match_the_general_form(
    obj: dict[str, Any], paths: tuple[str, ...]
) -> None:
    got = selectors.object_fields(obj, paths)
    want = selectors.object_fields(obj, list(paths))
    assert got == want and list(got) == list(want)
    assert got == {
        p: selectors.field_value(obj, p) for p in ("metadata.name", "metadata.namespace", *paths)
    }


def test_encode_falls_back_when_it_cannot_be_exact() -> None:
    for obj in (
        {"metadata": {"name": "a", "resourceVersion": "3"}},  # stored with its rv
        {"metadata": {"namespace": 5}},  # a namespace the cache reads differently
        {"metadata": {"name": "a"}, "data": {"k": MARK}},  # the marker in the data
        {"metadata": {"name": "a"}, "data": {"k": 'x"' + MARK}},
        {"metadata": {"name": "a"}, "data": {"k": MARK + "\x7f"}},  # the marker's bytes in it
        {"metadata": {"a": MARK}},  # before the marker
        {"metadata": {"name": "a"}, "data": {"resourceVersion": MARK}},  # as if it were it
        {"metadata": {"name": "a"}, "data": [{"resourceVersion": MARK}]},
        {"metadata": "nope"},
    ):
        value, enc = cache.encode(obj)
        assert enc is None and value == orjson.dumps(obj)
    value, enc = cache.encode({"metadata": {}})
    assert enc is not None and value == b'{"metadata":{}}'
    assert enc.cached("/r/k", 7).json == b'{"metadata":{"resourceVersion":"7"}}'
    obj = {"metadata": {"name": "a", "b": OLD_MARK}, "data": {"resourceVersion": "x"}}
    value, enc = cache.encode(obj)
    assert enc is not None and value == orjson.dumps(obj)
    obj["metadata"]["resourceVersion"] = "9"
    assert enc.cached("/r/k", 9).json == orjson.dumps(obj)
    with pytest.raises(orjson.JSONEncodeError):  # raises as orjson.dumps does, obj untouched
        cache.encode({"metadata": {"name": "a"}, "x": 2**70})


class _Backend:
    """Delivers events straight to the cache (values are given, not written)."""

    def __init__(self) -> None:
        self.cb: Any = None

    def subscribe(self, cb: Any) -> Any:
        self.cb = cb
        return lambda: None

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> storage.ListResult:
        return storage.ListResult([], 0, False)


async def test_cache_takes_over_only_the_very_value_expected() -> None:
    backend = _Backend()
    cacher = cache.Cacher(backend)  # type: ignore[arg-type]
    await cacher.start(["/registry/configmaps/"])
    key = "/registry/configmaps/d/a"
    obj: dict[str, Any] = {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "d"}}
    obj["data"] = {"x": "1"}
    first, enc_a = cache.encode(obj)
    obj["data"]["x"] = "2"
    second, enc_b = cache.encode(obj)
    assert enc_a is not None and enc_b is not None
    cacher.expect(key, enc_a)
    cacher.expect(key, enc_b)  # a second write of the key overtakes the first
    kv = storage.KeyValue(key, first, 1, 1)
    backend.cb([storage.Event(storage.EventType.PUT, kv, None)])
    got = cacher.get("/registry/configmaps/").objects[key]
    assert got.obj == _decoded(key, first, 1).obj and got.json == _decoded(key, first, 1).json
    # an equal value that is another bytes object (another API server's write): decoded
    kv2 = storage.KeyValue(key, bytes(bytearray(second)), 1, 2)
    backend.cb([storage.Event(storage.EventType.PUT, kv2, kv)])
    assert cacher._expected[key] is enc_b
    cacher.unexpect(key, enc_a)  # not the one expected any more: nothing happens
    assert cacher._expected[key] is enc_b
    cacher.unexpect(key, enc_b)
    assert not cacher._expected
    got = cacher.get("/registry/configmaps/").objects[key]
    assert got.obj == _decoded(key, second, 2).obj and got.revision == 2


async def _store(handover: bool, monkeypatch: pytest.MonkeyPatch) -> storemod.Store:
    """A store over the memory backend; without `handover`, every event decodes the stored
    bytes (the long way)."""
    if handover:
        monkeypatch.undo()
    else:
        monkeypatch.setattr(cache, "encode", lambda obj, paths=None: (orjson.dumps(obj), None))
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    await s.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    return s


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


async def _pod_traffic(s: storemod.Store) -> list[list[tuple[str, int, bytes]]]:
    """Pods created, bound, given a status, relabelled, marked deleted and deleted, as seen by
    watchers like the scheduler benchmark's (and one on labels and fields)."""
    rc = s.cacher.get(POD.key_prefix)
    watchers = [
        cache.Watcher("", None),
        cache.Watcher("", s.make_filter(POD, "", "spec.nodeName!=")),
        cache.Watcher("d", s.make_filter(POD, "", "spec.nodeName=n1,status.phase!=Failed")),
        cache.Watcher("", s.make_filter(POD, "app=x", "spec.nodeName!=")),
        cache.Watcher("", s.make_filter(POD, "app=x", "")),
    ]
    rc.watchers.update(watchers)
    for i in range(6):
        name = f"p{i}"
        await s.create(POD, "d", _pod(name))

        def bind(o: dict[str, Any], i: int = i) -> dict[str, Any]:
            o["spec"]["nodeName"] = f"n{i % 2}"
            return o

        await s.guaranteed_update(POD, "d", name, bind, subresource="binding", field_manager=None)

        def status(o: dict[str, Any], i: int = i) -> dict[str, Any]:
            o["status"] = {"phase": "Running" if i % 3 else "Failed", "podIP": f"10.0.0.{i}"}
            return o

        await s.guaranteed_update(POD, "d", name, status, subresource="status")

        def relabel(o: dict[str, Any]) -> dict[str, Any]:
            o["metadata"]["labels"] = {"app": "y"}
            return o

        if i % 2:
            await s.guaranteed_update(POD, "d", name, relabel)
        await s.delete(POD, "d", name, storemod.DeleteOptions())
        if i % 2 == 0 and s.peek(POD, "d", name) is not None:  # else: gone at once (Failed)
            await s.delete(POD, "d", name, storemod.DeleteOptions(grace_period=0))
    seen: list[list[tuple[str, int, bytes]]] = []
    for w in watchers:
        got = []
        while not w.queue.empty():
            ev = w.queue.get_nowait()
            assert ev is not None
            got.append((ev.type, ev.revision, ev.json))
        seen.append(got)
    # the unfiltered watcher's events are the stored history decoded
    history = await s.backend.events_since(POD.key_prefix, 0)
    assert seen[0] == [
        (e.type, e.revision, e.json) for e in (cache.to_watch_event(h) for h in history)
    ]
    # the cached objects read as the stored bytes decode
    for o in rc.objects.values():
        kv = await s.backend.get(o.key)
        assert kv is not None and kv.mod_revision == o.revision
        want = cache.decode(kv)
        assert o.json == want.json and o.obj == want.obj and o.namespace == want.namespace
        assert o.fields(POD.field_selectors) == selectors.object_fields(
            want.obj, POD.field_selectors
        )
    return seen


def _normalized(seen: list[list[tuple[str, int, bytes]]]) -> list[list[tuple[str, int, Any]]]:
    """The frames without what differs between two runs (uids, timestamps)."""
    out = []
    for events in seen:
        norm = []
        for typ, rev, frame in events:
            obj = orjson.loads(frame)["object"]
            meta = obj["metadata"]
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "managedFields"):
                meta.pop(f, None)
            norm.append((typ, rev, obj))
        out.append(norm)
    return out


async def test_watchers_see_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    taken: list[int] = []
    cached = cache.Encoded.cached

    def counted(enc: cache.Encoded, key: str, revision: int) -> cache.CachedObject:
        taken[-1] += 1
        return cached(enc, key, revision)

    for handover in (True, False):
        s = await _store(handover, monkeypatch)
        taken.append(0)
        monkeypatch.setattr(cache.Encoded, "cached", counted)
        try:
            runs.append(_normalized(await _pod_traffic(s)))
        finally:
            s.cacher.stop()
            await s.backend.close()
    assert taken[0] >= 20 and taken[1] == 0  # the first run took the short way
    assert all(runs[0])  # every watcher saw something
    assert runs[0] == runs[1]
