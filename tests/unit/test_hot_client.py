"""The client library's shortcuts give what the long way gives: request URLs joined to a parsed
base instead of parsed whole (same URL, same bytes on the wire), names left unquoted only when
quoting would not change them, shared timeouts and header maps, the watch stream's line
splitting, the informer's inlined cache update, and the event recorder's cached timestamp
text, involved-object reference and correlation key."""

from __future__ import annotations

import asyncio
import datetime
import math
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from kybern.api import errors, registry
from kybern.client import events, informer, rest

Obj = dict[str, Any]
PODS = registry.Resource(group="", version="v1", kind="Pod", plural="pods", namespaced=True)
LEASES = registry.Resource(
    group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", namespaced=True
)
NODES = registry.Resource(group="", version="v1", kind="Node", plural="nodes", namespaced=False)
MERGE = "application/merge-patch+json"

# ---- URLs ----------------------------------------------------------------------------------

# path characters: those yarl keeps, those it quotes, and the ones with a meaning (%, ?, #, .)
PATH_CHARS = "abcXYZ019-._~/!$&'()*+,;=:@%?# \"<>[]\\^`{|}é\u2603\x00\x7f"
SERVERS = [
    "https://127.0.0.1:6443",
    "http://127.0.0.1:8080",
    "https://kybern.example.com",
    "https://KYBERN.Example.com:443",
    "https://[::1]:6443",
    "http://user:pa%20ss@host:1",
    "https://bücher.de",
    "https://host/",  # a trailing slash: never joined
    "https://host/prefix",  # a path: never joined
]


def joined(server: str, path: str) -> URL:
    """What aiohttp makes of what `Client._url` returns."""
    c = rest.Client(rest.Config(server=server))
    return URL(c._url(path))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SERVERS),
    st.one_of(
        st.text(alphabet=PATH_CHARS, max_size=40),
        st.builds(lambda s: "/" + s, st.text(alphabet=PATH_CHARS, max_size=40)),
        st.builds(
            lambda ns, name, sub: rest.resource_path(PODS, ns, name, sub),
            st.text(alphabet=PATH_CHARS, min_size=1, max_size=12),
            st.text(alphabet=PATH_CHARS, max_size=12),
            st.sampled_from(["", "status", "binding"]),
        ),
    ),
)
def test_url_join_equals_parsing_the_joined_string(server: str, path: str) -> None:
    try:
        expected = URL(server + path)
    except (ValueError, IndexError) as e:  # urlsplit raises IndexError for "https://[::1]@"
        with pytest.raises(type(e)):
            joined(server, path)
        return
    got = joined(server, path)
    assert got == expected
    assert str(got) == str(expected)
    assert (got.raw_path, got.raw_query_string, got.raw_fragment) == (
        expected.raw_path,
        expected.raw_query_string,
        expected.raw_fragment,
    )
    assert (got.raw_host, got.port, got.scheme, got.raw_user, got.raw_password) == (
        expected.raw_host,
        expected.port,
        expected.scheme,
        expected.raw_user,
        expected.raw_password,
    )


def test_url_join_is_taken_for_ordinary_paths() -> None:
    c = rest.Client(rest.Config(server="https://127.0.0.1:6443"))
    for path in (
        rest.resource_path(PODS, "e2e", "p-00001", "binding"),
        rest.resource_path(LEASES, "kube-node-lease", "sim-node-0001"),
        rest.resource_path(NODES, name="node.example.com"),
        "/api/v1/namespaces/e2e/events/p-1.17f3a2b4c5d6e7f8",
    ):
        assert isinstance(c._url(path), URL), path
    for path in ("/api/v1/pods?limit=1", "/a/./b", "/a/../b", "/a%2Fb", "/a b", "api"):
        assert isinstance(c._url(path), str), path
    c.cfg.server = "https://other:1"  # a changed server is parsed again
    assert c._url("/api") == URL("https://other:1/api")


@given(st.text(max_size=30))
def test_segments_are_quoted_exactly_when_quoting_changes_them(s: str) -> None:
    assert rest._segment(s) == quote(s, safe="")


def test_timeouts_and_header_maps_are_shared_and_equal() -> None:
    assert rest._timeout(30.0) is rest._timeout(30.0)
    assert rest._timeout(7.5) == aiohttp.ClientTimeout(total=7.5)
    h = rest._content_type(MERGE)
    assert h is rest._content_type(MERGE)
    assert list(h.items()) == [("Content-Type", MERGE)]


# ---- the same bytes on the wire --------------------------------------------------------------


class RawServer:
    """An HTTP/1.1 server that records each request's bytes: 201 and a pod for writes, a
    404 Status for paths with `missing`, and for `?watch=true` the chunked `stream`."""

    def __init__(self, stream: list[bytes] | None = None) -> None:
        self.requests: list[bytes] = []
        self.stream = stream or []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await r.readexactly(length) if length else b""
                self.requests.append(head + body)
                target = head.split(b" ", 2)[1]
                if b"watch=true" in target:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                    w.write(b"Transfer-Encoding: chunked\r\n\r\n")
                    for piece in self.stream:
                        w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await w.drain()
                    w.write(b"0\r\n\r\n")
                    await w.drain()
                    continue
                if b"missing" in target:
                    status, out = (
                        b"404 Not Found",
                        orjson.dumps(
                            {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "message": 'pods "missing" not found',
                                "reason": "NotFound",
                                "code": 404,
                            }
                        ),
                    )
                else:
                    status, out = b"201 Created", orjson.dumps({"kind": "Pod", "n": length})
                w.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n" % status)
                w.write(b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def _traffic(c: rest.Client) -> list[Any]:
    out: list[Any] = []
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p-1", "namespace": "e2e"}}
    out.append(await c.create(PODS, pod))
    out.append(
        await c.create(
            PODS,
            {"kind": "Binding", "target": {"name": "n1"}},
            "e2e",
            subresource="binding",
            name="p-1",
        )
    )
    out.append(await c.patch(PODS, "p-1", {"status": {"phase": "Running"}}, "e2e"))
    out.append(
        await c.patch(
            PODS, "p 1/é", b'{"a":1}', "e2e", patch_type="apply", field_manager="m", force=True
        )
    )
    out.append(
        await c.request(
            "PATCH",
            rest.resource_path(LEASES, "kube-node-lease", "sim-node-0001"),
            body={"spec": {"renewTime": "2024-01-01T00:00:00.000000Z"}},
            content_type=MERGE,
            decode=False,
        )
    )
    out.append(await c.get(NODES, "node.example.com"))
    out.append(await c.list(PODS, "e2e", label_selector="app=x,tier in (a,b)", limit=5))
    out.append(await c.delete(PODS, "p-1", "e2e", grace_period=0, uid="u"))
    out.append(await c.request("GET", "/api/v1/pods?limit=1&x=%41"))
    out.append(await c.request("GET", "/api/v1/namespaces/e2e/pods/./p-1"))
    out.append(await c.update(PODS, pod, subresource="status"))
    with pytest.raises(errors.StatusError) as e:
        await c.get(PODS, "missing", "e2e")
    out.append((e.value.code, e.value.reason, e.value.message))
    return out


def _old_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client as it was: every URL a string parsed by aiohttp, a timeout object and a
    header dict per request."""
    monkeypatch.setattr(rest, "_base_url", lambda server: None)
    monkeypatch.setattr(rest, "_timeout", lambda total: aiohttp.ClientTimeout(total=total))
    monkeypatch.setattr(rest, "_content_type", lambda ct: {"Content-Type": ct})


@pytest.mark.parametrize("token", ["", "s3cret"])
async def test_requests_are_the_same_bytes_as_the_long_way(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    runs: list[tuple[list[bytes], list[Any]]] = []
    for old in (False, True):
        with monkeypatch.context() as m:
            if old:
                _old_ways(m)
            async with RawServer() as srv:
                cfg = rest.Config(server=f"http://127.0.0.1:{srv.port}", token=token)
                async with rest.Client(cfg, user_agent="ua-test") as c:
                    answers = await _traffic(c)
            port = b":%d" % srv.port
            runs.append(([r.replace(port, b":PORT") for r in srv.requests], answers))
    (fast_wire, fast_out), (old_wire, old_out) = runs
    assert len(fast_wire) == 12
    assert fast_wire == old_wire
    assert fast_out == old_out


# ---- watch streams ---------------------------------------------------------------------------


def old_lines(chunks: list[bytes]) -> list[bytes]:
    """The splitting `Client.watch` did before `_Lines`."""
    out: list[bytes] = []
    buf = b""
    for chunk in chunks:
        if b"\n" not in chunk:
            buf += chunk
            continue
        *lines, buf = (buf + chunk).split(b"\n")
        out.extend(line for line in lines if line.strip())
    return out


def new_lines(chunks: list[bytes]) -> list[bytes]:
    lines = rest._Lines()
    return [bytes(line) for chunk in chunks for line in lines.feed(chunk)]


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
            st.sampled_from([b"", b" ", b"\r", b"\t \x0b\x0c", b'{"type":"ADDED"}', b" {} "]),
        ),
        max_size=12,
    ),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=400), max_size=15),
)
def test_line_splitting_equals_the_old_splitting(
    lines: list[bytes], trailing: bool, cuts: list[int]
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing else b"")
    chunks = cut(data, cuts)
    assert new_lines(chunks) == old_lines(chunks)
    assert new_lines([data]) == old_lines([data])
    assert new_lines([data[i : i + 1] for i in range(len(data))]) == old_lines([data])


def _event(i: int, typ: str = "MODIFIED") -> bytes:
    obj = {"kind": "Pod", "metadata": {"name": f"p-{i}", "resourceVersion": str(i)}}
    return orjson.dumps({"type": typ, "object": obj}) + b"\n"


async def test_watch_yields_every_event_whatever_the_chunks() -> None:
    rng = random.Random(7)
    data = b"".join(_event(i) for i in range(300)) + b"\n  \n"
    data += orjson.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    data += b"\n"
    async with RawServer(cut(data, [rng.randrange(len(data)) for _ in range(80)])) as srv:
        async with rest.Client(rest.Config(server=f"http://127.0.0.1:{srv.port}")) as c:
            got = [(t, o) async for t, o in c.watch(PODS, "e2e", resource_version="1")]
    assert [o["metadata"]["name"] for _, o in got[:300]] == [f"p-{i}" for i in range(300)]
    assert got[-1] == ("BOOKMARK", {"metadata": {"resourceVersion": "9"}})
    target = srv.requests[0].split(b" ", 2)[1].decode()
    assert target.startswith("/api/v1/namespaces/e2e/pods?")
    assert "resourceVersion=1" in target and "allowWatchBookmarks=true" in target


async def test_watch_raises_an_error_event() -> None:
    status = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
    data = _event(1) + orjson.dumps({"type": "ERROR", "object": status}) + b"\n" + _event(2)
    async with RawServer([data[:10], data[10:]]) as srv:
        async with rest.Client(rest.Config(server=f"http://127.0.0.1:{srv.port}")) as c:
            seen: list[str] = []
            with pytest.raises(errors.StatusError) as e:
                async for _, o in c.watch(PODS):
                    seen.append(o["metadata"]["name"])
    assert seen == ["p-1"] and e.value.code == 410


# ---- the informer's cache ------------------------------------------------------------------


class Model:
    """The informer's cache update as it was (`key_of`, then `_index` and the handlers)."""

    def __init__(self, index: Callable[[Obj], list[str]]) -> None:
        self.items: dict[str, Obj] = {}
        self.index: dict[str, set[str]] = {}
        self.fn = index
        self.calls: list[tuple[Any, ...]] = []

    def apply(self, typ: str, obj: Obj) -> None:
        key = informer.key_of(obj)
        old = self.items.get(key)
        if typ == "DELETED":
            if old is None:
                return
            del self.items[key]
            for v in self.fn(old):
                self.index[v].discard(key)
                if not self.index[v]:
                    del self.index[v]
            self.calls += [("delete", 0, key), ("delete", 1, key)]
            return
        self.items[key] = obj
        if old is not None:
            for v in self.fn(old):
                self.index[v].discard(key)
                if not self.index[v]:
                    del self.index[v]
        for v in self.fn(obj):
            self.index.setdefault(v, set()).add(key)
        for h in (0, 1):
            if old is None:
                self.calls.append(("add", h, key))
            elif h == 0:  # the second handler has no on_update
                self.calls.append(("update", h, informer.key_of(old), key))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_index", [False, True])
def test_informer_cache_update_equals_the_long_way(seed: int, with_index: bool) -> None:
    rng = random.Random(seed)

    def by_node(o: Obj) -> list[str]:
        return [o["spec"]["node"]]

    inf = informer.Informer(rest.Client(rest.Config(server="https://x")), PODS)
    calls: list[tuple[Any, ...]] = []
    inf.add_handlers(
        informer.Handlers(
            on_add=lambda o: calls.append(("add", 0, informer.key_of(o))),
            on_update=lambda a, b: calls.append(
                ("update", 0, informer.key_of(a), informer.key_of(b))
            ),
            on_delete=lambda o: calls.append(("delete", 0, informer.key_of(o))),
        )
    )
    inf.add_handlers(
        informer.Handlers(
            on_add=lambda o: calls.append(("add", 1, informer.key_of(o))),
            on_delete=lambda o: calls.append(("delete", 1, informer.key_of(o))),
        )
    )
    if with_index:
        inf.add_indexer("node", by_node)
    model = Model(by_node if with_index else lambda o: [])
    for _ in range(400):
        meta: Obj = {"name": rng.choice("abcdef")}
        if rng.random() < 0.5:
            meta["namespace"] = rng.choice(["n1", "n2", ""])
        obj = {"metadata": meta, "spec": {"node": rng.choice(["x", "y", "z"])}}
        typ = rng.choice(["ADDED", "MODIFIED", "DELETED"])
        inf._apply(typ, obj)
        model.apply(typ, obj)
    assert inf.items == model.items
    assert calls == model.calls
    if with_index:
        assert inf._indices["node"] == model.index


# ---- the event recorder ----------------------------------------------------------------------


def old_rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


FRACTIONS = [0.0, 1e-9, 0.5, 0.999998, 0.9999989, 0.999999, 0.9999994, 0.9999995, 0.99999951]
FRACTIONS += [0.9999996, math.nextafter(1.0, 0.0)]  # around the rounding into the next second
NEAR_SECONDS = st.builds(
    lambda s, f: s + f,
    st.integers(min_value=0, max_value=4_000_000_000).map(float),
    st.sampled_from(FRACTIONS),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            NEAR_SECONDS,
            st.floats(min_value=-1e9, max_value=4e9, allow_nan=False),
            st.integers(min_value=0, max_value=4_000_000_000),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_timestamps_equal_formatting_each(times: list[float]) -> None:
    for t in times:  # in sequence: the cache of one second must not leak into another
        assert events._rfc3339(t) == old_rfc3339(t), t
        assert events._rfc3339(t) == old_rfc3339(t), t


def test_timestamps_of_nan_and_infinity_raise_as_before() -> None:
    for t in (math.nan, math.inf, -math.inf):
        with pytest.raises((ValueError, OverflowError)) as old:
            old_rfc3339(t)
        with pytest.raises(old.type):
            events._rfc3339(t)


def old_object_reference(obj: Obj) -> Obj:
    m = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "namespace": m.get("namespace", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": m.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
META_KEYS = ["namespace", "name", "uid", "resourceVersion", "labels"]


@given(
    st.dictionaries(st.sampled_from(["kind", "apiVersion", "spec"]), JSON_VALUES),
    st.one_of(
        st.none(),
        st.just({}),
        st.dictionaries(st.sampled_from(META_KEYS), JSON_VALUES),
    ),
    st.booleans(),
)
def test_object_reference_equals_the_long_way(top: Obj, meta: Obj | None, has: bool) -> None:
    obj = dict(top)
    if has:
        obj["metadata"] = meta
    got = events.object_reference(obj)
    want = old_object_reference(obj)
    assert got == want
    assert list(got) == list(want)  # the same key order: the same JSON


@given(
    st.dictionaries(st.sampled_from(["component", "host"]), JSON_VALUES),
    st.dictionaries(
        st.sampled_from(["kind", "namespace", "name", "uid", "apiVersion"]), JSON_VALUES
    ),
)
def test_correlation_keys_equal_the_long_way(src: Obj, ref: Obj) -> None:
    old_key = "\x00".join(
        str(x)
        for x in (
            src.get("component", ""),
            src.get("host", ""),
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("uid", ""),
            ref.get("apiVersion", ""),
        )
    )
    c = events.Correlator(lambda: 1000.0)
    ev: Obj = {"involvedObject": ref, "source": src, "reason": "R", "message": "m"}
    c.correlate(ev)
    assert list(c._buckets) == [old_key]


class Broadcaster(events.EventBroadcaster):
    def __init__(self) -> None:
        super().__init__(rest.Client(rest.Config(server="https://x")), clock=lambda: 1.5e9)
        self.actions: list[events.Action] = []

    def submit(self, action: events.Action) -> None:
        self.actions.append(action)


@pytest.mark.parametrize("host", ["", "node-1"])
def test_recorded_event_is_the_same_json(host: str) -> None:
    b = Broadcaster()
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "e2e", "uid": "u", "resourceVersion": "7"},
    }
    b.new_recorder("sched", host).event(pod, "Normal", "Scheduled", "assigned e2e/p to n1")
    (action,) = b.actions
    ev = dict(action.body)
    name = ev.pop("metadata")["name"]
    assert name.startswith("p.")
    assert orjson.dumps(ev) == orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "involvedObject": old_object_reference(pod),
            "reason": "Scheduled",
            "message": "assigned e2e/p to n1",
            "type": "Normal",
            "source": {"component": "sched", **({"host": host} if host else {})},
            "eventTime": None,
            "reportingComponent": "sched",
            "reportingInstance": host or "sched",
            "count": 1,
            "firstTimestamp": old_rfc3339(1.5e9),
            "lastTimestamp": old_rfc3339(1.5e9),
        }
    )
