"""HTTP upgrade plumbing shared by the API server and the node agent (both proxy streaming
connections): `dial_upgrade` sends an upgrade request (WebSocket or SPDY/3.1, over TCP or TLS)
and reads the response head; `hijack` takes an aiohttp server connection over after answering
`101 Switching Protocols`; `relay` copies bytes both ways until either side ends; and
`pass_through` gives a client the upstream's answer, relayed after a 101 or repeated as the
error it was. The API server relays `pods/exec|attach|portforward` to agents this way, and the
agent passes clients' SPDY sessions through to the container runtime's stream server, as
kube-apiserver and a kubelet do with their upgrade-aware proxies."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

HEAD_LIMIT = 64 * 1024
BODY_LIMIT = 64 * 1024
RELAY_CHUNK = 64 * 1024
TAP_HIGH_WATER = 1 << 20  # bytes queued from a hijacked client before reading pauses
_HOP_BY_HOP = frozenset(
    {"date", "server", "content-length", "transfer-encoding", "keep-alive", "proxy-connection"}
)


class UpgradeError(Exception):
    """The upstream could not be reached or answered something that is not HTTP."""


@dataclass
class Upstream:
    """An upstream connection after its response head: `status` 101 means upgraded."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def response_headers(self) -> list[tuple[str, str]]:
        """The headers to repeat to a client (no hop-by-hop framing headers)."""
        return [(k, v) for k, v in self.headers if k.lower() not in _HOP_BY_HOP]

    async def read_body(self, timeout: float = 10.0) -> bytes:
        """The body of a non-101 answer (Content-Length, chunked, or up to EOF; capped)."""
        async with asyncio.timeout(timeout):
            length = self.header("Content-Length")
            if length.isdigit():
                return await self.reader.readexactly(min(int(length), BODY_LIMIT))
            if "chunked" in self.header("Transfer-Encoding").lower():
                out = bytearray()
                while len(out) < BODY_LIMIT:
                    size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    out += await self.reader.readexactly(size)
                    await self.reader.readline()
                return bytes(out)
            return await self.reader.read(BODY_LIMIT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise UpgradeError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def dial_upgrade(
    url: str,
    method: str,
    headers: Iterable[tuple[str, str]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> Upstream:
    """Send `method url` with `headers` (which carry the Upgrade) and read the response head."""
    u = urllib.parse.urlsplit(url)
    secure = u.scheme in ("https", "wss")
    host, port = u.hostname or "127.0.0.1", u.port or (443 if secure else 80)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=(ssl_context or ssl.create_default_context()) if secure else None,
                server_hostname=host if secure else None,
                limit=HEAD_LIMIT,
            )
    except (OSError, TimeoutError) as e:
        raise UpgradeError(f"cannot connect to {host}:{port}: {e}") from None
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {u.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if method in ("POST", "PUT"):
        lines.append("Content-Length: 0")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
        status, reason, response_headers = _parse_head(head[:-4])
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        writer.close()
        raise UpgradeError(f"no response from {host}:{port}: {e!r}") from None
    except UpgradeError:
        writer.close()
        raise
    return Upstream(reader, writer, status, reason, response_headers)


class Tap:
    """The raw bytes a client sends on a hijacked connection (aiohttp feeds them to the payload
    parser of the connection's protocol, which this stands in for). Reading pauses while more
    than TAP_HIGH_WATER bytes wait."""

    def __init__(self, request: web.BaseRequest) -> None:
        self._transport = request.transport
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._size = 0
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._queue.put_nowait(bytes(data))
            self._size += len(data)
            if self._size > TAP_HIGH_WATER and self._transport is not None and not self._paused:
                self._paused = True
                self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(b"")

    async def read(self) -> bytes:
        data = await self._queue.get()
        self._size -= len(data)
        if self._paused and self._size <= TAP_HIGH_WATER // 2 and self._transport is not None:
            self._paused = False
            with contextlib.suppress(Exception):
                self._transport.resume_reading()
        if not data:
            self._queue.put_nowait(b"")  # stay at EOF for later reads
        return data


async def hijack(
    request: web.BaseRequest, headers: Iterable[tuple[str, str]]
) -> tuple[Tap, web.StreamResponse]:
    """Answer `101 Switching Protocols` with `headers` and take the connection over: what the
    client sends next arrives through the Tap, what we write goes out unframed."""
    tap = Tap(request)
    request.protocol.set_parser(tap)  # type: ignore[arg-type]  # before the 101: no byte is lost
    resp = web.StreamResponse(status=101, reason="Switching Protocols")
    for k, v in headers:
        resp.headers.add(k, v)
    resp.force_close()
    await resp.prepare(request)
    return tap, resp


async def relay(tap: Tap, resp: web.StreamResponse, upstream: Upstream) -> None:
    """Copy bytes client→upstream and upstream→client until either side ends, then close."""

    async def up() -> None:
        while data := await tap.read():
            upstream.writer.write(data)
            await upstream.writer.drain()

    async def down() -> None:
        while data := await upstream.reader.read(RELAY_CHUNK):
            await resp.write(data)

    tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        upstream.close()


async def pass_through(request: web.BaseRequest, upstream: Upstream) -> web.StreamResponse:
    """Give the client the upstream's answer: relay it after a 101, else repeat the error."""
    if upstream.status == 101:
        tap, resp = await hijack(request, upstream.response_headers())
        await relay(tap, resp, upstream)
        return resp
    try:
        body = await upstream.read_body()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        body = b""
    finally:
        upstream.close()
    content_type = upstream.header("Content-Type") or "text/plain; charset=utf-8"
    return web.Response(status=upstream.status, body=body, headers={"Content-Type": content_type})
