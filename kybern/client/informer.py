"""Informers: list, then watch from the list's resourceVersion, keeping a local indexed cache
and calling handlers on add/update/delete; re-list on `410 Expired` and on broken streams, with
backoff; bookmarks keep the resume point fresh. `InformerFactory` shares one informer per
resource (and selector) in a process."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import gc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kybern.api import errors, registry
from kybern.client import rest

log = logging.getLogger("kybern.client")
Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


GC_YOUNG_THRESHOLD = 20000  # allocations between young collections (CPython's default: 700)


def tune_gc() -> None:
    """For a process whose informers hold many objects: every cached object is many small
    dicts, and each decoded event allocates hundreds more, so with CPython's default
    thresholds (a young collection every 700 allocations, and full ones as the cache grows)
    the cyclic collector took ~25 % of a simulated-nodes process's CPU under load. Collect the
    young generation less often and move what exists now (modules, the synced caches) out of
    the collector's way (`gc.freeze`). Call it once the informers have synced; it only raises
    thresholds, so calling it again is harmless."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 and gen0 < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, max(gen1, 20), gen2)
    gc.collect()  # garbage left from the start-up is not frozen with the rest
    gc.freeze()


def key_of(obj: Obj) -> str:
    m = obj["metadata"]
    ns = m.get("namespace")
    return f"{ns}/{m['name']}" if ns else m["name"]


@dataclass
class Handlers:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


@dataclass
class Informer:
    client: rest.Client
    res: registry.Resource
    namespace: str = ""
    label_selector: str = ""
    field_selector: str = ""
    watch_timeout: int = 300
    items: dict[str, Obj] = field(default_factory=dict)
    resource_version: str = ""
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._handlers: list[Handlers] = []
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._task: asyncio.Task[None] | None = None

    # ---- the cache ---------------------------------------------------------------------

    def add_handlers(self, h: Handlers) -> None:
        self._handlers.append(h)
        if self.synced.is_set() and h.on_add is not None:
            for obj in list(self.items.values()):
                h.on_add(obj)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self._indexers[name] = fn
        idx: dict[str, set[str]] = {}
        for k, obj in self.items.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(k)
        self._indices[name] = idx

    def get(self, name: str, namespace: str = "") -> Obj | None:
        return self.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str = "") -> list[Obj]:
        if not namespace:
            return list(self.items.values())
        return [o for o in self.items.values() if o["metadata"].get("namespace") == namespace]

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        return [
            self.items[k] for k in self._indices.get(name, {}).get(value, ()) if k in self.items
        ]

    def _index(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            if old is not None:
                for v in fn(old):
                    s = idx.get(v)
                    if s is not None:
                        s.discard(key)
                        if not s:
                            del idx[v]
            if new is not None:
                for v in fn(new):
                    idx.setdefault(v, set()).add(key)

    def _apply(self, typ: str, obj: Obj) -> None:
        m = obj["metadata"]  # key_of(obj), inline: this runs for every event
        ns = m.get("namespace")
        key = f"{ns}/{m['name']}" if ns else m["name"]
        items = self.items
        old = items.get(key)
        if typ == "DELETED":
            if old is None:
                return
            del items[key]
            if self._indexers:
                self._index(key, old, None)
            for h in self._handlers:
                if h.on_delete is not None:
                    h.on_delete(obj)
            return
        items[key] = obj
        if self._indexers:
            self._index(key, old, obj)
        if old is None:
            for h in self._handlers:
                if h.on_add is not None:
                    h.on_add(obj)
        else:
            for h in self._handlers:
                if h.on_update is not None:
                    h.on_update(old, obj)

    # ---- list and watch ----------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.res.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _relist(self) -> None:
        items: builtins.list[Obj] = []
        token = ""
        while True:
            page = await self.client.list(
                self.res,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=500,
                continue_token=token,
            )
            kind = self.res.kind
            for o in page.get("items") or []:
                o.setdefault("kind", kind)
                o.setdefault("apiVersion", self.res.api_version)
                items.append(o)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        self.resource_version = page["metadata"]["resourceVersion"]
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.items if k not in fresh]:
            self._apply("DELETED", self.items[key])
        for o in items:
            old = self.items.get(key_of(o))
            if old is None or old["metadata"].get("resourceVersion") != o["metadata"].get(
                "resourceVersion"
            ):
                self._apply("MODIFIED" if old else "ADDED", o)
        self.synced.set()

    async def run(self) -> None:
        delay = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for typ, obj in self.client.watch(
                    self.res,
                    self.namespace,
                    resource_version=self.resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=self.watch_timeout,
                ):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if typ != "BOOKMARK":
                        self._apply(typ, obj)
                delay = 0.2
            except errors.StatusError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.warning("informer %s: %s", self.res.plural, e.message)
                need_list = e.code != 504
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                log.debug("informer %s: connection: %s", self.res.plural, e)
            await asyncio.sleep(delay)  # back off before reconnecting
            delay = min(delay * 2, 10.0)


class InformerFactory:
    """One informer per (resource, namespace, selectors) in a process."""

    def __init__(self, client: rest.Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, str, str, str, str, str], Informer] = {}

    def informer(
        self,
        res: registry.Resource,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Informer:
        key = (res.group, res.version, res.plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, res, namespace, label_selector, field_selector)
            self._informers[key] = inf
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(i.wait_synced(timeout) for i in self._informers.values()))

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
