"""The watch cache: the current state of every resource and a window of recent events, kept in
memory and fed by the backend's subscription (for SQLite, before a write is acknowledged, so
reads from the cache are consistent). Each event is decoded once and encoded once per wire
format however many watchers receive it; a watcher that falls behind is dropped, never allowed
to stall the others."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from kybern import storage
from kybern.api import protobuf

EVENT_WINDOW = 2000  # recent events kept per resource
WATCHER_QUEUE = 4096  # events buffered per watcher before it is dropped


class CachedObject:
    """One object as of `revision`: the decoded dict (resourceVersion set) and its JSON bytes
    and bare protobuf message, each encoded lazily once."""

    __slots__ = ("_json", "_proto", "key", "obj", "revision")

    def __init__(self, key: str, obj: dict[str, Any], revision: int) -> None:
        self.key = key
        self.obj = obj
        self.revision = revision
        self._json: bytes | None = None
        self._proto: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.obj)
        return self._json

    @property
    def proto(self) -> bytes:
        """The protobuf message without envelope; raises protobuf.NotEncodable."""
        if self._proto is None:
            self._proto = protobuf.encode_message(self.obj)
        return self._proto

    @property
    def namespace(self) -> str:
        ns: str = self.obj["metadata"].get("namespace", "")
        return ns


def decode(kv: storage.KeyValue) -> CachedObject:
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return CachedObject(kv.key, obj, kv.mod_revision)


@dataclass(slots=True)
class WatchEvent:
    """`type` is ADDED, MODIFIED or DELETED; `prev` the object before (None for ADDED)."""

    type: str
    obj: CachedObject
    prev: CachedObject | None
    revision: int
    _json: bytes | None = None
    _proto: bytes | None = None

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


def to_watch_event(ev: storage.Event, prev: CachedObject | None = None) -> WatchEvent:
    """The cache's event of a storage event; `prev`, when given, is the object before it as
    already decoded (it must be `ev.prev` at `ev.prev.mod_revision`)."""
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
            return WatchEvent("ADDED", ev.obj, None, ev.revision)
        if before and not now:
            return WatchEvent("DELETED", ev.obj, None, ev.revision)
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
        key = ev.obj.key
        ns = ev.obj.namespace
        if ev.type == "DELETED":
            self.objects.pop(key, None)
            bucket = self.by_namespace.get(ns)
            if bucket is not None:
                bucket.pop(key, None)
        else:
            self.objects[key] = ev.obj
            self.by_namespace.setdefault(ns, {})[key] = ev.obj
        if len(self.events) == self.events.maxlen:
            self.oldest = self.events[0].revision
        self.events.append(ev)
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
        # keys: /registry/<res>/... or /registry/<group>/<res>/...
        parts = key.split("/", 4)
        if len(parts) < 4:
            return None
        c = self._caches.get(f"/{parts[1]}/{parts[2]}/")
        if c is None:
            c = self._caches.get(f"/{parts[1]}/{parts[2]}/{parts[3]}/")
        return c

    def _on_events(self, events: Sequence[storage.Event]) -> None:
        for ev in events:
            cache = self._cache_for(ev.kv.key)
            if cache is not None:
                prev = None
                if ev.prev is not None:  # the cache holds it decoded already: no second decode
                    cur = cache.objects.get(ev.kv.key)
                    if cur is not None and cur.revision == ev.prev.mod_revision:
                        prev = cur
                cache.apply(to_watch_event(ev, prev))
            self.revision = ev.kv.mod_revision
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
