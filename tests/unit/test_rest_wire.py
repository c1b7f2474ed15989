"""What a real aiohttp server receives from the REST client (method, target, every header in
order, body) for create, binding, patch, update, delete, get, list and watch calls, checked
against expected requests and against the general path (`async with` around each request and
`iter_any()` on watch streams, kept below as it was); the answers, errors and watch events are
the same too, and the connection goes back to the pool after every kind of answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybern.api import errors, registry
from kybern.client import rest

Obj = dict[str, Any]
PODS = registry.Resource(group="", version="v1", kind="Pod", plural="pods", namespaced=True)
NODES = registry.Resource(group="", version="v1", kind="Node", plural="nodes", namespaced=False)
MERGE = "application/merge-patch+json"
Captured = tuple[str, str, list[tuple[bytes, bytes]], bytes]


class OldClient(rest.Client):
    """The general path: the request entered as a context manager, the watch stream read
    with `iter_any()` (the client before the fast path)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        decode: bool = True,
    ) -> Any:
        data = None
        headers = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers = rest._content_type(content_type)
        async with self.session.request(
            method,
            self._url(path),
            params=params or None,
            data=data,
            headers=headers,
            timeout=rest._timeout(timeout),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise rest._error(resp.status, raw)
            return orjson.loads(raw) if decode and raw else None

    async def watch(
        self,
        res: registry.Resource,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> AsyncIterator[tuple[str, Obj]]:
        params = rest._params(
            watch="true",
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=str(timeout_seconds),
            allowWatchBookmarks="true" if bookmarks else "",
        )
        async with self.session.get(
            self._url(rest.resource_path(res, namespace)),
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status >= 400:
                raise rest._error(resp.status, await resp.read())
            lines = rest._Lines()
            async for chunk in resp.content.iter_any():
                for line in lines.feed(chunk):
                    ev = orjson.loads(line)
                    if ev.get("type") == "ERROR":
                        raise errors.from_status(ev.get("object") or {}, 500)
                    yield ev["type"], ev["object"]


def _status(code: int, reason: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    )


class Server:
    """An aiohttp server that records every request: 404 Status for `missing`, 500 plain
    text for `broken`, 204 for `empty`, the chunked `stream` for `watch=true`, else 201 (POST)
    or 200 and a pod naming the method and body length."""

    def __init__(self, stream: list[bytes] | None = None) -> None:
        self.seen: list[Captured] = []
        self.peers: set[object] = set()
        self.stream = stream or []
        self.runner: web.ServerRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.runner = web.ServerRunner(web.Server(self._handle))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _handle(self, req: web.BaseRequest) -> web.StreamResponse:
        body = await req.read()
        port = str(self.port).encode()
        headers = [(k, v.replace(port, b"PORT")) for k, v in req.raw_headers]
        self.seen.append((req.method, req.raw_path, headers, body))
        assert req.transport is not None
        self.peers.add(req.transport.get_extra_info("peername"))
        if req.query.get("watch") == "true":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(req)
            for piece in self.stream:
                await resp.write(piece)
            await resp.write_eof()
            return resp
        if "missing" in req.path:
            out = _status(404, "NotFound", 'pods "missing" not found')
            return web.Response(status=404, body=out, content_type="application/json")
        if "broken" in req.path:
            return web.Response(status=500, text="<html>boom</html>")
        if "empty" in req.path:
            return web.Response(status=204)
        if "big" in req.path:  # more than one read: not all there when the headers are
            return web.Response(body=BIG, content_type="application/json")
        out = orjson.dumps({"kind": "Pod", "method": req.method, "n": len(body)})
        code = 201 if req.method == "POST" else 200
        return web.Response(status=code, body=out, content_type="application/json")


BIG = orjson.dumps({"kind": "PodList", "items": [{"n": "x" * 1000}] * 4000})
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p-1", "namespace": "e2e"}}
BINDING = {
    "apiVersion": "v1",
    "kind": "Binding",
    "metadata": {"name": "p-1"},
    "target": {"name": "n1"},
}


async def _traffic(c: rest.Client) -> list[Any]:
    """Every verb the benchmark processes and the controllers use, and the error answers."""
    out: list[Any] = [
        await c.create(PODS, POD),
        await c.create(PODS, BINDING, "e2e", subresource="binding", name="p-1"),
        await c.request(
            "POST", rest.resource_path(PODS, "e2e"), body=orjson.dumps(POD), decode=False
        ),
        await c.patch(PODS, "p-1", {"status": {"phase": "Running"}}, "e2e", subresource="status"),
        await c.request(
            "PATCH",
            rest.resource_path(PODS, "e2e", "p-1", "status"),
            body={"metadata": {"uid": "u"}, "status": {"phase": "Running"}},
            content_type=MERGE,
            decode=False,
        ),
        await c.patch(PODS, "p 1/é", b'{"a":1}', "e2e", patch_type="apply", field_manager="m"),
        await c.update(PODS, POD),
        await c.get(NODES, "node.example.com"),
        await c.list(PODS, "e2e", label_selector="app=x,tier in (a,b)", limit=5),
        await c.delete(PODS, "p-1", "e2e", grace_period=0, uid="u"),
        await c.request("GET", "/api/v1/pods?limit=1&x=%41"),
        await c.request("DELETE", "/api/v1/namespaces/e2e/pods/empty"),
    ]
    for name in ("missing", "broken"):
        with pytest.raises(errors.StatusError) as e:
            await c.get(PODS, name, "e2e")
        out.append((e.value.code, e.value.reason, e.value.message))
    # answers nobody reads: all there, still arriving, an error, none
    for name in ("p-1", "big", "missing", "empty", "big", "p-2"):
        try:
            out.append(await c.request("GET", rest.resource_path(PODS, "e2e", name), decode=False))
        except errors.StatusError as e:
            out.append((e.code, e.reason, e.message))
    out.append(len(await c.request("GET", "/api/v1/pods/big")))
    out.append([ev async for ev in c.watch(PODS, "e2e", resource_version="7")])
    return out


def _events(n: int) -> bytes:
    return b"".join(
        orjson.dumps({"type": "MODIFIED", "object": {"metadata": {"name": f"p-{i}"}}}) + b"\n"
        for i in range(n)
    )


async def _run(
    cls: type[rest.Client], token: str = "", stream: list[bytes] | None = None
) -> tuple[list[Captured], list[Any], int]:
    async with Server(stream) as srv:
        cfg = rest.Config(server=f"http://127.0.0.1:{srv.port}", token=token)
        async with cls(cfg, user_agent="ua-test") as c:
            answers = await _traffic(c)
    return srv.seen, answers, len(srv.peers)


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


BASE = (("Host", "127.0.0.1:PORT"), ("User-Agent", "ua-test"), ("Accept", "application/json"))
# what aiohttp adds to every request (gzip and deflate, and br/zstd when their decoders exist)
AE = ("Accept-Encoding", aiohttp.client_reqrep.ClientRequest.DEFAULT_HEADERS["Accept-Encoding"])


def _body(ct: str, body: bytes) -> list[tuple[bytes, bytes]]:
    return _h(*BASE, ("Content-Type", ct), AE, ("Content-Length", str(len(body))))


async def test_the_server_receives_the_expected_requests() -> None:
    seen, answers, conns = await _run(rest.Client, stream=[_events(3)])
    get = _h(*BASE, AE)
    binding = orjson.dumps(BINDING)
    merge = b'{"metadata":{"uid":"u"},"status":{"phase":"Running"}}'
    delete = (
        b'{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,'
        b'"preconditions":{"uid":"u"}}'
    )
    assert seen[1] == (
        "POST",
        "/api/v1/namespaces/e2e/pods/p-1/binding",
        _body("application/json", binding),
        binding,
    )
    assert seen[4] == (
        "PATCH",
        "/api/v1/namespaces/e2e/pods/p-1/status",
        _body(MERGE, merge),
        merge,
    )
    assert seen[9] == (
        "DELETE",
        "/api/v1/namespaces/e2e/pods/p-1",
        _body("application/json", delete),
        delete,
    )
    assert seen[2] == (
        "POST",
        "/api/v1/namespaces/e2e/pods",
        _body("application/json", orjson.dumps(POD)),
        orjson.dumps(POD),
    )
    assert seen[0][:2] == ("POST", "/api/v1/namespaces/e2e/pods")
    assert seen[0][3] == seen[2][3] == orjson.dumps(POD)
    assert seen[5][1] == "/api/v1/namespaces/e2e/pods/p%201%2F%C3%A9?fieldManager=m"
    assert (b"Content-Type", b"application/apply-patch+yaml") in seen[5][2]
    assert seen[7] == ("GET", "/api/v1/nodes/node.example.com", get, b"")
    assert seen[8][:2] == (
        "GET",
        "/api/v1/namespaces/e2e/pods?labelSelector=app%3Dx,tier+in+(a,b)&limit=5",
    )
    assert seen[-1][1] == (
        "/api/v1/namespaces/e2e/pods?watch=true&resourceVersion=7&timeoutSeconds=300"
        "&allowWatchBookmarks=true"
    )
    assert seen[-1][2] == get
    assert answers[1] == {"kind": "Pod", "method": "POST", "n": len(binding)}
    assert answers[2] is None and answers[4] is None and answers[11] is None
    assert answers[12] == (404, "NotFound", 'pods "missing" not found')
    assert answers[13][0] == 500
    assert answers[14:20] == [None, None, answers[12], None, None, None]
    assert answers[20] == 2
    assert answers[-1] == [("MODIFIED", {"metadata": {"name": f"p-{i}"}}) for i in range(3)]
    assert conns == 1  # every answer, errors included, gave its connection back to the pool


async def test_answers_are_read_only_when_still_arriving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer that has all arrived is taken as it is (its connection is back in the pool
    already); one still arriving is read to its end, so that its connection can be reused."""
    reads: list[int] = []
    read = aiohttp.ClientResponse.read

    async def counted(resp: aiohttp.ClientResponse) -> bytes:
        out = await read(resp)
        reads.append(len(out))
        return out

    monkeypatch.setattr(aiohttp.ClientResponse, "read", counted)
    async with Server() as srv:
        async with rest.Client(rest.Config(server=f"http://127.0.0.1:{srv.port}")) as c:
            for name in ("p-1", "big", "p-2", "big", "p-3"):
                assert await c.request("GET", f"/api/v1/pods/{name}", decode=False) is None
            assert len(await c.request("GET", "/api/v1/pods/big")) == 2
            assert await c.request("GET", "/api/v1/pods/p-4") == {
                "kind": "Pod",
                "method": "GET",
                "n": 0,
            }
            for decode in (True, False):
                with pytest.raises(errors.StatusError) as e:
                    await c.request("GET", "/api/v1/pods/missing", decode=decode)
                assert (e.value.code, e.value.message) == (404, 'pods "missing" not found')
            assert await c.request("DELETE", "/api/v1/pods/empty") is None
    assert reads == [len(BIG)] * 3
    assert len(srv.peers) == 1


@pytest.mark.parametrize("token", ["", "s3cret"])
async def test_requests_and_answers_equal_the_general_path(token: str) -> None:
    stream = [_events(5)[:17], _events(5)[17:]]
    fast = await _run(rest.Client, token, stream)
    general = await _run(OldClient, token, stream)
    assert fast == general
    if token:
        assert all((b"Authorization", b"Bearer s3cret") in h for _, _, h, _ in fast[0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=0, max_value=60))
async def test_watch_events_equal_the_general_path(seed: int, n: int) -> None:
    rng = random.Random(seed)
    data = _events(n) + b"\n \n" + _events(2)
    points = sorted({rng.randrange(len(data) + 1) for _ in range(rng.randrange(12))})
    stream = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    stream = [s for s in stream if s]
    got = []
    for cls in (rest.Client, OldClient):
        async with Server(stream) as srv:
            async with cls(rest.Config(server=f"http://127.0.0.1:{srv.port}")) as c:
                got.append([ev async for ev in c.watch(PODS, "e2e")])
    assert got[0] == got[1]
    assert len(got[0]) == n + 2


async def test_a_cancelled_request_leaves_no_connection_behind() -> None:
    """A request cancelled while it waits for the answer closes its connection (the pool
    never hands out a half-read one); the next request gets a fresh one and succeeds."""
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def slow(req: web.BaseRequest) -> web.StreamResponse:
        if "slow" in req.path:
            arrived.set()
            await gate.wait()
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    runner = web.ServerRunner(web.Server(slow))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with rest.Client(rest.Config(server=f"http://127.0.0.1:{port}")) as c:
            task = asyncio.create_task(c.request("GET", "/slow"))
            await asyncio.wait_for(arrived.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.wait_for(c.request("GET", "/fast"), 10) == {"ok": True}
    finally:
        gate.set()
        await runner.cleanup()
