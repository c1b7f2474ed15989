"""What an extension API server serves: a `Resource` is a kind with handlers — `list` (every
object the caller may see; the SDK filters by namespace, label and field selectors), optionally
`get` (one object by name; default: found in `list`) and `watch` (an async stream of
`(type, object)` events from a resourceVersion). `Context` is what a handler learns about the
request (the authenticated user, namespace, selectors). `MemoryStore` is a ready-made backing
for objects held in memory, with resourceVersions and watch events, which `Resource.backed_by`
turns into handlers; `Column` adds a column to the server-side Table `kubectl get` prints."""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kybern.api import errors, selectors
from kybern.ext.auth import User

Obj = dict[str, Any]
EventType = str  # ADDED | MODIFIED | DELETED
WATCH_QUEUE = 1000  # events a slow watcher may lag behind before it is dropped
EVENT_WINDOW = 1000  # past events a watch may resume from


@dataclass
class Context:
    """The request a handler serves."""

    request: web.Request
    user: User
    namespace: str = ""  # "" for cluster-scoped kinds and lists across namespaces
    label_selector: selectors.LabelSelector = field(default_factory=selectors.LabelSelector)
    field_selector: selectors.FieldSelector = field(default_factory=selectors.FieldSelector)

    def matches(self, obj: Obj, extra_fields: Iterable[str] = ()) -> bool:
        """Does `obj` pass this request's namespace, label and field selectors?"""
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace", "") != self.namespace:
            return False
        if not self.label_selector.matches(meta.get("labels") or {}):
            return False
        if self.field_selector.empty:
            return True
        return self.field_selector.matches(selectors.object_fields(obj, tuple(extra_fields)))


ListFunc = Callable[[Context], Awaitable[Iterable[Obj]]]
GetFunc = Callable[[Context, str], Awaitable[Obj | None]]
WatchFunc = Callable[[Context, str], AsyncIterator[tuple[EventType, Obj]]]


@dataclass(frozen=True)
class Column:
    """A Table column: `value(obj)` gives the cell."""

    name: str
    value: Callable[[Obj], Any]
    type: str = "string"
    description: str = ""


@dataclass
class Resource:
    """One served kind (plural `plural`) and its handlers."""

    plural: str
    kind: str
    list: ListFunc
    get: GetFunc | None = None
    watch: WatchFunc | None = None
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    field_selectors: tuple[str, ...] = ()  # beyond metadata.name and metadata.namespace
    schema: Obj | None = None  # OpenAPI v3 schema of the kind (default: any object)
    resource_version: Callable[[], str] | None = None  # of lists, when the source has one

    @property
    def verbs(self) -> builtins.list[str]:
        return ["get", "list", "watch"] if self.watch is not None else ["get", "list"]

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @classmethod
    def backed_by(cls, store: MemoryStore, plural: str, kind: str, **kw: Any) -> Resource:
        """A resource serving the objects of `store` (get, list and watch)."""
        return cls(
            plural=plural,
            kind=kind,
            list=store.list_handler,
            get=store.get_handler,
            watch=store.watch_handler,
            resource_version=lambda: str(store.revision),
            **kw,
        )


class MemoryStore:
    """Objects in memory with a revision counter and watch events (use on the loop thread)."""

    def __init__(self) -> None:
        self.revision = 0
        self._objects: dict[tuple[str, str], Obj] = {}
        self._events: collections.deque[tuple[int, EventType, Obj]] = collections.deque(
            maxlen=EVENT_WINDOW
        )
        self._watchers: set[asyncio.Queue[tuple[int, EventType, Obj] | None]] = set()

    def items(self, namespace: str = "") -> list[Obj]:
        return [o for (ns, _), o in self._objects.items() if not namespace or ns == namespace]

    def get(self, name: str, namespace: str = "") -> Obj | None:
        return self._objects.get((namespace, name))

    def put(self, obj: Obj) -> Obj:
        """Create or replace `obj` (by namespace/name): new resourceVersion, uid and
        creationTimestamp kept from the existing object or made up."""
        meta = obj.setdefault("metadata", {})
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        old = self._objects.get(key)
        old_meta = (old or {}).get("metadata") or {}
        meta["uid"] = old_meta.get("uid") or meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = (
            old_meta.get("creationTimestamp") or meta.get("creationTimestamp") or _now()
        )
        self.revision += 1
        meta["resourceVersion"] = str(self.revision)
        self._objects[key] = obj
        self._emit("MODIFIED" if old is not None else "ADDED", obj)
        return obj

    def delete(self, name: str, namespace: str = "") -> Obj | None:
        obj = self._objects.pop((namespace, name), None)
        if obj is not None:
            self.revision += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.revision)}}
            self._emit("DELETED", obj)
        return obj

    def _emit(self, kind: EventType, obj: Obj) -> None:
        ev = (self.revision, kind, obj)
        self._events.append(ev)
        for q in list(self._watchers):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # too slow: end its watch, the client re-lists
                self._watchers.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        q.get_nowait()
                q.put_nowait(None)

    # ---- handlers for Resource.backed_by ----------------------------------------------

    async def list_handler(self, ctx: Context) -> list[Obj]:
        return self.items(ctx.namespace)

    async def get_handler(self, ctx: Context, name: str) -> Obj | None:
        return self.get(name, ctx.namespace)

    async def watch_handler(
        self, ctx: Context, resource_version: str
    ) -> AsyncIterator[tuple[EventType, Obj]]:
        """Events after `resource_version`; from "" or "0", every current object as ADDED
        first. 410 Expired when the window no longer holds the resume point."""
        queue: asyncio.Queue[tuple[int, EventType, Obj] | None] = asyncio.Queue(WATCH_QUEUE)
        self._watchers.add(queue)
        try:
            if resource_version in ("", "0"):
                start = self.revision
                for obj in self.items(ctx.namespace):
                    yield "ADDED", obj
            else:
                try:
                    start = int(resource_version)
                except ValueError:
                    raise errors.bad_request(
                        f'invalid resource version "{resource_version}"'
                    ) from None
                oldest = self._events[0][0] - 1 if self._events else self.revision
                if start < oldest:
                    raise errors.gone(f"too old resource version: {start} ({oldest})")
                for rev, kind, obj in list(self._events):
                    if rev > start:
                        yield kind, obj
                        start = rev
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                if ev[0] > start:
                    yield ev[1], ev[2]
        finally:
            self._watchers.discard(queue)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
