"""The agent's probe and hook handlers against real servers on loopback (no containers needed):
httpGet (2xx/3xx pass, 4xx/5xx fail with the status, headers sent, named ports, redirects),
tcpSocket (connect or refused), grpc (the standard `grpc.health.v1.Health/Check`: SERVING
passes, NOT_SERVING and an unknown service fail) and the sleep hook; probe workers apply
thresholds and tell the pod worker when a result changes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web

from kybern.agent import probes, runtime

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]


def _serialize_status(status: int) -> bytes:
    return bytes([0x08, status])


class Health:
    """A grpc.health.v1 server: service name -> status (1 SERVING, 2 NOT_SERVING)."""

    def __init__(self, statuses: dict[str, int]) -> None:
        self.statuses = statuses

    async def check(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        service = request[2:].decode() if request else ""
        if service not in self.statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return _serialize_status(self.statuses[service])


@pytest_asyncio.fixture
async def http_port() -> AsyncIterator[int]:
    seen: dict[str, str] = {}

    async def ok(request: web.Request) -> web.Response:
        seen.update(request.headers)
        if request.headers.get("X-Want") != "yes":
            return web.Response(status=403, text="no header")
        return web.Response(text="fine")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port
    await runner.cleanup()


@pytest_asyncio.fixture
async def handlers() -> AsyncIterator[probes.Handlers]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield probes.Handlers(None, s)  # type: ignore[arg-type]  # exec is not used here


async def test_http_get(handlers: probes.Handlers, http_port: int) -> None:
    container = {"ports": [{"name": "web", "containerPort": http_port}]}
    hdr = [{"name": "X-Want", "value": "yes"}]
    ok = await handlers.run(
        {"httpGet": {"path": "/ok", "port": "web", "httpHeaders": hdr}},
        container,
        "",
        "127.0.0.1",
        2,
    )
    assert ok == probes.Outcome(True)
    redirected = await handlers.run(
        {"httpGet": {"path": "moved", "port": http_port, "httpHeaders": hdr}},
        {},
        "",
        "127.0.0.1",
        2,
    )
    assert redirected.ok
    no_header = await handlers.run(
        {"httpGet": {"path": "/ok", "port": http_port}}, {}, "", "127.0.0.1", 2
    )
    assert not no_header.ok and "statuscode: 403" in no_header.message
    down = await handlers.run(
        {"httpGet": {"path": "/broken", "port": http_port}}, {}, "", "127.0.0.1", 2
    )
    assert not down.ok and "503" in down.message


async def test_tcp_socket(handlers: probes.Handlers, http_port: int) -> None:
    assert (await handlers.run({"tcpSocket": {"port": http_port}}, {}, "", "127.0.0.1", 2)).ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = await handlers.run({"tcpSocket": {"port": closed}}, {}, "", "127.0.0.1", 2)
    assert not refused.ok and "dial tcp" in refused.message
    bad = await handlers.run({"tcpSocket": {"port": "nope"}}, {}, "", "127.0.0.1", 2)
    assert not bad.ok and "not a port" in bad.message


async def test_grpc_health(handlers: probes.Handlers) -> None:
    health = Health({"": 1, "db": 2})
    server = grpc.aio.server()
    method = grpc.unary_unary_rpc_method_handler(
        health.check, request_deserializer=lambda b: b, response_serializer=lambda b: b
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        assert (await handlers.run({"grpc": {"port": port}}, {}, "", "127.0.0.1", 2)).ok
        db = await handlers.run({"grpc": {"port": port, "service": "db"}}, {}, "", "127.0.0.1", 2)
        assert not db.ok and "responded with 2" in db.message
        unknown = await handlers.run(
            {"grpc": {"port": port, "service": "x"}}, {}, "", "127.0.0.1", 2
        )
        assert not unknown.ok and "NOT_FOUND" in unknown.message
    finally:
        await server.stop(None)


async def test_sleep_hook(handlers: probes.Handlers) -> None:
    assert (await handlers.run({"sleep": {"seconds": 0}}, {}, "", "", 1)).ok
    assert not (await handlers.run({}, {}, "", "", 1)).ok


async def test_probe_workers_flip_results_after_thresholds(
    handlers: probes.Handlers, http_port: int
) -> None:
    changes: list[str] = []
    woke = asyncio.Event()

    def changed(uid: str) -> None:
        changes.append(uid)
        woke.set()

    mgr = probes.ProbeManager(handlers, changed)
    pod = {
        "metadata": {"uid": "u1", "name": "p", "namespace": "n"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "readinessProbe": {"tcpSocket": {"port": http_port}, "periodSeconds": 1},
                    "livenessProbe": {
                        "httpGet": {"path": "/broken", "port": http_port},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }
            ]
        },
    }
    info = runtime.ContainerInfo(
        id="cid", sandbox_id="s", name="c", attempt=0, state=runtime.RUNNING
    )
    mgr.sync(pod, [info], "127.0.0.1")
    assert mgr.results.ready == {"cid": False}  # readiness starts false
    try:
        async with asyncio.timeout(30):
            while not (mgr.results.ready.get("cid") and "cid" in mgr.results.unhealthy):
                woke.clear()
                await woke.wait()
        assert mgr.results.unhealthy["cid"].startswith("Liveness probe failed: ")
        assert "503" in mgr.results.unhealthy["cid"]
    finally:
        await mgr.stop()
    assert set(changes) == {"u1"} and mgr.results.ready == {}
