"""Watch streaming: replays what a client missed (from the watch cache's window, else from the
backend's history), then streams live events from its `Watcher` queue as newline-delimited
JSON, with bookmarks, `timeoutSeconds`, and an `ERROR` event carrying `410 Expired` when the
requested revision has been compacted."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import orjson
from aiohttp import web

from kybern import storage
from kybern.api import errors, protobuf, registry
from kybern.apiserver import cache as cachemod
from kybern.apiserver import codec, crds, tables
from kybern.apiserver import store as storemod

BOOKMARK_INTERVAL = 5.0
DEFAULT_TIMEOUT = (1800, 3600)


def _error_frame(err: errors.StatusError, proto: bool = False) -> bytes:
    if proto:
        return protobuf.watch_frame("ERROR", protobuf.encode_object(err.status()))
    return orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n"


async def serve(
    request: web.Request,
    st: storemod.Store,
    res: registry.Resource,
    namespace: str,
    name_selector: str = "",
) -> web.StreamResponse:
    q = request.query
    table = tables.watch_table(request, st, res)  # None unless Tables were asked for
    proto = table is None and codec.protobuf_watch(res.api_version, res.kind)
    fields = q.get("fieldSelector", "")
    if name_selector:  # the legacy /watch/.../NAME form
        fields = ",".join(f for f in (fields, f"metadata.name={name_selector}") if f)
    flt = st.make_filter(res, q.get("labelSelector", ""), fields)
    rv = q.get("resourceVersion", "")
    bookmarks = codec.bool_param(request, "allowWatchBookmarks")
    timeout = codec.int_param(request, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = random.randint(*DEFAULT_TIMEOUT)
    since = 0
    if rv not in ("", "0"):
        try:
            since = int(rv)
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{rv}"') from None
    if rv == "":
        await st.consistent()
    elif since > st.cacher.revision and not await st.cacher.wait_revision(since, 3.0):
        raise errors.timeout(f"Too large resource version: {since}, current: {st.cacher.revision}")

    rc = st.cacher.get(res.key_prefix)
    view = st.crds.watch_view(res)  # custom resources: as the watched version serves them
    watcher = cachemod.Watcher(namespace if res.namespaced else "", flt)
    rc.watchers.add(watcher)  # from here on, live events queue up
    initial: list[bytes] = []
    sent = st.cacher.revision
    backlog: list[cachemod.WatchEvent] | None = []
    if rv in ("", "0"):
        matched = [o for o in rc.items(watcher.namespace) if flt is None or flt(o)]
        if view is not None:
            matched = await st.crds.view_many(res, matched)
        for o in matched:
            initial.append(
                table.frame("ADDED", o)
                if table
                else codec.proto_frame("ADDED", o)
                if proto
                else b'{"type":"ADDED","object":%s}\n' % o.json
            )
    else:
        backlog = rc.events_after(since)
        sent = since
    resp = web.StreamResponse(
        headers={"Content-Type": protobuf.WATCH_MEDIA_TYPE if proto else "application/json"}
    )
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        if initial:
            await resp.write(b"".join(initial))
        if backlog is None:  # older than the window: ask the backend
            try:
                evs = await st.backend.events_since(res.namespace_prefix(watcher.namespace), since)
            except storage.CompactedError as e:
                await resp.write(
                    _error_frame(
                        errors.gone(f"too old resource version: {since} ({e.compact_revision})"),
                        proto,
                    )
                )
                return resp
            backlog = [cachemod.to_watch_event(e) for e in evs]
        for ev in backlog:
            if watcher.namespace and ev.obj.namespace != watcher.namespace:
                continue
            out = cachemod.translate(ev, flt)
            if out is not None and view is not None:
                out = await crds.convert_event(view, out)
            if out is not None:
                await resp.write(
                    table.frame(out.type, out.obj) if table else out.proto if proto else out.json
                )
            sent = max(sent, ev.revision)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = min(left, BOOKMARK_INTERVAL) if bookmarks else left
            try:
                if not watcher.queue.empty():  # no timer when an event is waiting
                    live: cachemod.WatchEvent | None = watcher.queue.get_nowait()
                else:
                    async with asyncio.timeout(wait):  # no task per wait, as wait_for made
                        live = await watcher.queue.get()
            except TimeoutError:
                if bookmarks and time.monotonic() < deadline:
                    rev = max(sent, st.cacher.revision) if watcher.queue.empty() else sent
                    bookmark = {
                        "kind": res.kind,
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(rev)},
                    }
                    await resp.write(
                        protobuf.watch_frame("BOOKMARK", protobuf.encode_object(bookmark))
                        if proto
                        else orjson.dumps({"type": "BOOKMARK", "object": bookmark}) + b"\n"
                    )
                continue
            if live is None:  # dropped: too slow, or the server is stopping
                break
            if live.revision <= sent:
                continue
            sent = live.revision
            if view is not None:
                live = await crds.convert_event(view, live)
            chunk = [
                table.frame(live.type, live.obj) if table else live.proto if proto else live.json
            ]
            dropped = False
            while not watcher.queue.empty():  # batch what is already queued
                nxt = watcher.queue.get_nowait()
                if nxt is None:  # dropped: send what came before, then close
                    dropped = True
                    break
                if nxt.revision > sent:
                    sent = nxt.revision
                    if view is not None:
                        nxt = await crds.convert_event(view, nxt)
                    chunk.append(
                        table.frame(nxt.type, nxt.obj)
                        if table
                        else nxt.proto
                        if proto
                        else nxt.json
                    )
            await resp.write(b"".join(chunk))
            if dropped:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        rc.watchers.discard(watcher)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp
