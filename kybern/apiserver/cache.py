"""The watch cache: the current state of every resource and a window of recent events, kept in
memory and fed by the backend's subscription (for SQLite, before a write is acknowledged, so
reads from the cache are consistent). Each event is decoded once and encoded once per wire
format however many watchers receive it, and an object's selectable fields are extracted once
for all field-selector watchers; a write made through this API server hands its encoding over
(`encode`, `Cacher.expect`), so its object is decoded only when something reads it. A watcher
that falls behind is dropped, never allowed to stall the others."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from kybern import storage
from kybern.api import protobuf, selectors

EVENT_WINDOW = 2000  # recent events kept per resource
WATCHER_QUEUE = 4096  # events buffered per watcher before it is dropped


class CachedObject:
    """One object as of `revision`: the decoded dict (resourceVersion set), its JSON bytes and
    bare protobuf message, each made lazily once (an object handed over by a local write starts
    from its JSON and is decoded on first use), and its selectable fields. Shared by every
    reader: nothing may modify `obj` or the `fields` mapping."""

    __slots__ = ("_fields", "_json", "_namespace", "_obj", "_proto", "key", "revision")

    def __init__(self, key: str, obj: dict[str, Any], revision: int) -> None:
        self.key = key
        self._obj: dict[str, Any] | None = obj
        self.revision = revision
        self._json: bytes | None = None
        self._proto: bytes | None = None
        self._namespace: str | None = None
        self._fields: tuple[tuple[str, ...], dict[str, str]] | None = None

    @classmethod
    def encoded(
        cls,
        key: str,
        json: bytes,
        revision: int,
        namespace: str,
        fields: tuple[tuple[str, ...], dict[str, str]] | None = None,
    ) -> CachedObject:
        """An object known by its JSON encoding (`namespace` and `fields` must be what the
        decoded object gives): decoded only when `obj` is read."""
        o = cls.__new__(cls)
        o.key = key
        o._obj = None
        o.revision = revision
        o._json = json
        o._proto = None
        o._namespace = namespace
        o._fields = fields
        return o

    @property
    def obj(self) -> dict[str, Any]:
        o = self._obj
        if o is None:
            assert self._json is not None
            o = self._obj = orjson.loads(self._json)
        return o

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self._obj)
        return self._json

    @property
    def proto(self) -> bytes:
        """The protobuf message without envelope; raises protobuf.NotEncodable."""
        if self._proto is None:
            self._proto = protobuf.encode_message(self.obj)
        return self._proto

    @property
    def namespace(self) -> str:
        ns = self._namespace
        if ns is None:
            ns = self._namespace = self.obj["metadata"].get("namespace", "")
        return ns

    def fields(self, paths: tuple[str, ...]) -> dict[str, str]:
        """`selectors.object_fields(self.obj, paths)`, extracted once per object (the last
        `paths` asked for): every field-selector watcher of the event shares it."""
        f = self._fields
        if f is not None and (f[0] is paths or f[0] == paths):
            return f[1]
        out = selectors.object_fields(self.obj, paths)
        self._fields = (paths, out)
        return out


def decode(kv: storage.KeyValue) -> CachedObject:
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return CachedObject(kv.key, obj, kv.mod_revision)


# While a write's object is encoded, its resourceVersion holds this marker: the stored bytes are
# the encoding without it, the cached object's JSON the encoding with the revision in its place.
# It is made of DEL, which JSON leaves unescaped and data hardly ever holds: finding it is a
# memchr for that byte (and a second one tells that no data holds it).
_RV_MARK = "\x7f" * 16
_RV_MARK_BYTES = _RV_MARK.encode()
_DEL = b"\x7f"
_RV_KEY = b'"resourceVersion":"'
_RV_END = b'"}'  # the marker's closing quote, then the end of metadata


@dataclass(slots=True)
class Encoded:
    """What a local write hands the cache (`Cacher.expect`) so that it need not decode the
    stored bytes `value`: the object's JSON at revision N is `head` + `"N"` + `tail`, exactly
    what encoding the decoded value with its resourceVersion gives; `namespace` and `fields`
    are what the decoded object gives."""

    value: bytes
    head: bytes
    tail: bytes
    namespace: str
    fields: tuple[tuple[str, ...], dict[str, str]] | None

    def cached(self, key: str, revision: int) -> CachedObject:
        json = b'%s"%d"%s' % (self.head, revision, self.tail)
        return CachedObject.encoded(key, json, revision, self.namespace, self.fields)


def encode(
    obj: dict[str, Any], paths: tuple[str, ...] | None = None
) -> tuple[bytes, Encoded | None]:
    """`orjson.dumps(obj)` (raising as it does), plus what the cache needs to take the object
    over without decoding it, or None when that cannot be had exactly (`obj` carries a
    resourceVersion, or the marker shows up in its data). With `paths`, the selectable fields
    are extracted too when they read the same after a JSON round trip."""
    meta = obj.get("metadata")
    if meta.__class__ is not dict or "resourceVersion" in meta:
        return orjson.dumps(obj), None
    ns = meta.get("namespace", "")
    if ns.__class__ is not str:
        return orjson.dumps(obj), None
    meta["resourceVersion"] = _RV_MARK  # last: the decoded value gets it appended there too
    try:
        full = orjson.dumps(obj)
    finally:
        del meta["resourceVersion"]
    # the marker must be the only DEL bytes, as the value of the last key of metadata (data
    # holding DEL takes the slow way)
    i = full.find(_DEL)
    j = i + len(_RV_MARK_BYTES)  # the closing quote
    k = i - len(_RV_KEY)  # where `"resourceVersion":"` starts
    if (
        k < 1
        or not full.startswith(_RV_MARK_BYTES, i)
        or not full.startswith(_RV_END, j)
        or not full.startswith(_RV_KEY, k)
        or full.find(_DEL, j) >= 0
    ):
        return orjson.dumps(obj), None
    head = full[: i - 1]
    tail = full[j + 1 :]
    value = (full[: k - 1] if full[k - 1] == 44 else full[:k]) + tail  # 44: a comma before it
    fields = None
    if paths is not None:
        extracted = selectors.exact_object_fields(obj, paths)
        if extracted is not None:
            fields = (paths, extracted)
    return value, Encoded(value, head, tail, ns, fields)


@dataclass(slots=True)
class WatchEvent:
    """`type` is ADDED, MODIFIED or DELETED; `prev` the object before (None for ADDED)."""

    type: str
    obj: CachedObject
    prev: CachedObject | None
    revision: int
    _json: bytes | None = None
    _proto: bytes | None = None
    _retyped: dict[str, WatchEvent] | None = None

    def retyped(self, typ: str) -> WatchEvent:
        """This event as ADDED or DELETED without `prev` (what a filtered watch sees of an
        object entering or leaving it), made once for all watchers that see it so."""
        r = self._retyped
        if r is None:
            r = self._retyped = {}
        ev = r.get(typ)
        if ev is None:
            ev = r[typ] = WatchEvent(typ, self.obj, None, self.revision)
        return ev

    @property
    def json(self) -> bytes:
        """The watch frame `{"type":..,"object":..}` followed by a newline."""
        if self._json is None:
            self._json = b'{"type":"%s","object":%s}\n' % (self.type.encode(), self.obj.json)
        return self._json

    @property
    def proto(self) -> bytes:
        """The protobuf watch frame (length-prefixed WatchEvent); raises NotEncodable."""
        if self._proto is None:
            o = self.obj.obj
            body = protobuf.envelope(o.get("apiVersion", ""), o.get("kind", ""), self.obj.proto)
            self._proto = protobuf.watch_frame(self.type, body)
        return self._proto


def to_watch_event(
    ev: storage.Event, prev: CachedObject | None = None, cur: CachedObject | None = None
) -> WatchEvent:
    """The cache's event of a storage event; `prev`, when given, is the object before it as
    already decoded (it must be `ev.prev` at `ev.prev.mod_revision`), `cur` likewise the
    object `ev.kv` holds."""
    if cur is None:
        cur = decode(ev.kv)
    if prev is None and ev.prev is not None:
        prev = decode(ev.prev)
    if ev.type is storage.EventType.DELETE:
        typ = "DELETED"
    elif prev is None:
        typ = "ADDED"
    else:
        typ = "MODIFIED"
    return WatchEvent(typ, cur, prev, ev.kv.mod_revision)


Filter = Callable[[CachedObject], bool]


def translate(ev: WatchEvent, flt: Filter | None) -> WatchEvent | None:
    """The event a filtered watch sees: an object leaving the filter is DELETED, one entering
    it ADDED, others pass or vanish as the filter says."""
    if flt is None:
        return ev
    now = flt(ev.obj)
    if ev.type == "MODIFIED":
        before = ev.prev is not None and flt(ev.prev)
        if now and not before:
            return ev.retyped("ADDED")
        if before and not now:
            return ev.retyped("DELETED")
    return ev if now else None


class Watcher:
    """One client watch: a bounded queue of events that pass `filter` (with Kubernetes'
    translation: an object leaving the filter is DELETED, one entering it ADDED)."""

    def __init__(self, namespace: str, filter: Filter | None) -> None:
        self.namespace = namespace
        self.filter = filter
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(WATCHER_QUEUE)
        self.dropped = False

    def offer(self, ev: WatchEvent) -> None:
        if self.dropped or (self.namespace and ev.obj.namespace != self.namespace):
            return
        out = translate(ev, self.filter)
        if out is None:
            return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        """Close the watch: the client reconnects from its last resourceVersion."""
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class ResourceCache:
    """Current objects and recent events of one resource (one key prefix)."""

    prefix: str
    objects: dict[str, CachedObject] = field(default_factory=dict)
    by_namespace: dict[str, dict[str, CachedObject]] = field(default_factory=dict)
    events: collections.deque[WatchEvent] = field(
        default_factory=lambda: collections.deque(maxlen=EVENT_WINDOW)
    )
    watchers: set[Watcher] = field(default_factory=set)
    oldest: int = 0  # events with revision > oldest are all in `events`

    def apply(self, ev: WatchEvent) -> None:
        obj = ev.obj
        key = obj.key
        bucket = self.by_namespace.get(obj.namespace)
        if ev.type == "DELETED":
            self.objects.pop(key, None)
            if bucket is not None:
                bucket.pop(key, None)
        else:
            self.objects[key] = obj
            if bucket is None:
                bucket = self.by_namespace[obj.namespace] = {}
            bucket[key] = obj
        events = self.events
        if len(events) == events.maxlen:
            self.oldest = events[0].revision
        events.append(ev)
        if self.watchers:
            for w in tuple(self.watchers):
                w.offer(ev)

    def items(self, namespace: str = "") -> Iterator[CachedObject]:
        if namespace:
            return iter(self.by_namespace.get(namespace, {}).values())
        return iter(self.objects.values())

    def events_after(self, revision: int) -> list[WatchEvent] | None:
        """Events with revision > `revision` if the window still has them all, else None."""
        if revision < self.oldest:
            return None
        return [e for e in self.events if e.revision > revision]


class Cacher:
    """All resource caches of one store, fed by one backend subscription."""

    def __init__(self, backend: storage.Backend) -> None:
        self.backend = backend
        self._caches: dict[str, ResourceCache] = {}
        self.revision = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._expected: dict[str, Encoded] = {}  # key -> a local write in flight

    def expect(self, key: str, enc: Encoded) -> None:
        """A write of `enc.value` to `key` is under way: take its object over from `enc` when
        the event carrying that very value (the same bytes object) arrives."""
        self._expected[key] = enc

    def unexpect(self, key: str, enc: Encoded) -> None:
        """The write of `enc` is over (its event, if any, has been delivered)."""
        if self._expected.get(key) is enc:
            del self._expected[key]

    def wants_fields(self, prefix: str) -> bool:
        """Whether a watcher of `prefix` filters (a write then extracts its fields early)."""
        cache = self._caches.get(prefix)
        return cache is not None and any(w.filter is not None for w in cache.watchers)

    async def start(self, prefixes: Sequence[str]) -> None:
        self._unsubscribe = self.backend.subscribe(self._on_events)
        for p in prefixes:
            await self.add_resource(p)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for c in self._caches.values():
            for w in tuple(c.watchers):
                w.drop()

    async def add_resource(self, prefix: str) -> ResourceCache:
        """Start caching `prefix` (idempotent): a snapshot list, then live events."""
        existing = self._caches.get(prefix)
        if existing is not None:
            return existing
        cache = ResourceCache(prefix)
        self._caches[prefix] = cache  # live events from now on land here
        res = await self.backend.list(prefix)
        # live events that arrived during the list are newer than the snapshot
        touched = {ev.obj.key for ev in cache.events}
        for kv in res.items:
            if kv.key not in touched:
                obj = decode(kv)
                cache.objects[kv.key] = obj
                cache.by_namespace.setdefault(obj.namespace, {})[kv.key] = obj
        cache.oldest = res.revision
        self.revision = max(self.revision, res.revision)
        return cache

    def remove_resource(self, prefix: str) -> None:
        cache = self._caches.pop(prefix, None)
        if cache is not None:
            for w in tuple(cache.watchers):
                w.drop()

    def get(self, prefix: str) -> ResourceCache:
        return self._caches[prefix]

    def _cache_for(self, key: str) -> ResourceCache | None:
        # keys: /registry/<res>/... or /registry/<group>/<res>/...: the cache of the prefix of
        # the first two path segments, else of the first three (a key needs a third segment)
        if not key.startswith("/"):
            return self._cache_for_split(key)
        i = key.find("/", 1)
        j = key.find("/", i + 1) if i >= 0 else -1
        if j < 0:
            return None
        j += 1
        c = self._caches.get(key[:j])
        if c is None:
            k = key.find("/", j)
            c = self._caches.get(key + "/" if k < 0 else key[: k + 1])
        return c

    def _cache_for_split(self, key: str) -> ResourceCache | None:
        """`_cache_for` the general way (what it does for any key)."""
        parts = key.split("/", 4)
        if len(parts) < 4:
            return None
        c = self._caches.get(f"/{parts[1]}/{parts[2]}/")
        if c is None:
            c = self._caches.get(f"/{parts[1]}/{parts[2]}/{parts[3]}/")
        return c

    def _on_events(self, events: Sequence[storage.Event]) -> None:
        expected = self._expected
        cache_for = self._cache_for
        put = storage.EventType.PUT
        for ev in events:
            kv = ev.kv
            key = kv.key
            cache = cache_for(key)
            if cache is not None:
                prev = None
                before = ev.prev
                if before is not None:  # the cache holds it decoded already: no second decode
                    cur = cache.objects.get(key)
                    if cur is not None and cur.revision == before.mod_revision:
                        prev = cur
                obj = None
                if expected and ev.type is put:
                    enc = expected.get(key)
                    if enc is not None and enc.value is kv.value:  # our write: no decode
                        del expected[key]
                        obj = enc.cached(key, kv.mod_revision)
                cache.apply(to_watch_event(ev, prev, obj))
            self.revision = kv.mod_revision
        if self._revision_waiters:
            keep = []
            for rev, fut in self._revision_waiters:
                if rev <= self.revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((rev, fut))
            self._revision_waiters = keep

    async def wait_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the cache has seen `revision`; False on timeout."""
        if revision <= self.revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
