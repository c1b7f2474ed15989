"""A watcher the watch cache drops (its queue ends with `None`) while `watch.serve` is batching
already-queued events into one chunk: the events before the drop are sent, in order, and then
the response ends, so the client knows to list again (it used to stay open, silent or sending
only bookmarks, until `timeoutSeconds`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

# the API handler over a memory store with namespace "d", as the expired-watch tests use it
from test_watch_expired import CM as CM
from test_watch_expired import setup as setup

from kybern.api import registry
from kybern.apiserver import cache
from kybern.apiserver import store as storemod

DEADLINE = 10.0  # seconds; the watch itself asks for far longer (timeoutSeconds)
View = Callable[[cache.CachedObject], Awaitable[cache.CachedObject]]


def _event(name: str, revision: int) -> cache.WatchEvent:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "d", "resourceVersion": str(revision)},
    }
    key = f"{CM.key_prefix}d/{name}"
    return cache.WatchEvent("ADDED", cache.CachedObject(key, obj, revision), None, revision)


async def _watch(
    client: TestClient[Any, Any], st: storemod.Store
) -> tuple[ClientResponse, cache.Watcher, int]:
    """A watch of ConfigMaps in `d` from now on: its response, its watcher, its revision."""
    rev = st.cacher.revision
    resp = await asyncio.wait_for(
        client.get(
            f"/api/v1/namespaces/d/configmaps?watch=1&resourceVersion={rev}&timeoutSeconds=3600"
        ),
        DEADLINE,
    )
    assert resp.status == 200
    (watcher,) = st.cacher.get(CM.key_prefix).watchers  # registered before the headers went
    return resp, watcher, rev


async def _names_then_eof(resp: ClientResponse) -> list[str]:
    """The names in the events of the stream, once it has ended (fails at the deadline)."""
    body = await asyncio.wait_for(resp.content.read(), DEADLINE)  # until EOF
    assert resp.content.at_eof()
    events = [orjson.loads(line) for line in body.splitlines()]
    assert {e["type"] for e in events} == {"ADDED"}, events
    return [e["object"]["metadata"]["name"] for e in events]


async def test_drop_queued_behind_events_ends_the_stream(
    setup: tuple[TestClient[Any, Any], storemod.Store],
) -> None:
    """Three events and then the drop wait in the queue: `serve` takes the first, batches the
    next two, meets the drop; all three are sent and the stream ends."""
    client, st = setup
    resp, watcher, rev = await _watch(client, st)
    for i in (1, 2, 3):  # no await in between: serve sees them all queued at once
        watcher.offer(_event(f"c{i}", rev + i))
    watcher.queue.put_nowait(None)  # what the cache's drop leaves at the end of the queue
    assert await _names_then_eof(resp) == ["c1", "c2", "c3"]
    assert not st.cacher.get(CM.key_prefix).watchers


async def test_slow_watcher_dropped_during_a_conversion_ends_the_stream(
    setup: tuple[TestClient[Any, Any], storemod.Store],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real drop (the watcher's queue overflows) while `serve` awaits the conversion of a
    batched event (as a custom resource's conversion webhook makes it wait): the events it had
    taken are sent, then the stream ends."""
    client, st = setup
    converting = asyncio.Event()
    release = asyncio.Event()

    async def view(o: cache.CachedObject) -> cache.CachedObject:
        if o.obj["metadata"]["name"] == "c2":
            converting.set()
            await release.wait()
        return o

    def watch_view(res: registry.Resource) -> View | None:
        return view if res is CM else None

    monkeypatch.setattr(st.crds, "watch_view", watch_view)
    resp, watcher, rev = await _watch(client, st)
    for i in (1, 2, 3):
        watcher.offer(_event(f"c{i}", rev + i))
    await asyncio.wait_for(converting.wait(), DEADLINE)  # c1 taken, c2 being batched
    n = rev + 3
    while not watcher.dropped:  # the watcher falls behind: its queue overflows
        n += 1
        watcher.offer(_event(f"x{n}", n))
        assert n <= rev + 3 + cache.WATCHER_QUEUE + 1, "the watcher was never dropped"
    release.set()
    assert await _names_then_eof(resp) == ["c1", "c2"]  # c3 went with the drop
    assert not st.cacher.get(CM.key_prefix).watchers
