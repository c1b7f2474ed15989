"""exec, attach and port-forward streams between a client and the container runtime. Clients
speak the Kubernetes WebSocket channel protocols (`v5.channel.k8s.io`, `v4.channel.k8s.io` and
its base64 form: one leading byte per message names the channel — 0 stdin, 1 stdout, 2 stderr,
3 error/status, 4 resize — and v5 adds the CLOSE signal `[255, channel]`), or SPDY/3.1, or for
port-forward SPDY tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`). containerd 1.6's
stream server speaks SPDY (remote command `v4.channel.k8s.io`, `portforward.k8s.io`) and
WebSocket v4 without the CLOSE signal, so `bridge_remote_command` terminates the client's
WebSocket and drives SPDY streams towards the runtime (a stdin CLOSE becomes a FIN there), while
SPDY sessions and tunnels pass through unchanged (the runtime is the SPDY peer)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from kybern.agent.streaming_logs import parse_bool
from kybern.agent.streaming_spdy import SpdyError, SpdySession, SpdyStream
from kybern.client import upgrade

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
REMOTE_COMMAND_PROTOCOLS = (V5, V4, V4_BASE64)
PORT_FORWARD = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
PORT_FORWARD_TUNNEL = TUNNEL_PREFIX + PORT_FORWARD
STREAM_PROTOCOL_HEADER = "X-Stream-Protocol-Version"
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
CHANNEL_NAMES = {
    STDIN: "stdin",
    STDOUT: "stdout",
    STDERR: "stderr",
    ERROR: "error",
    RESIZE: "resize",
}


class StreamRequestError(ValueError):
    """The request's streaming options are invalid (HTTP 400)."""


@dataclass
class StreamOptions:
    """What a client asked for on exec/attach (tty wins over stderr, as in a kubelet)."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False
    command: list[str] = field(default_factory=list)

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], getall: list[str], *, exec: bool
    ) -> StreamOptions:
        try:
            opts = cls(
                stdin=parse_bool("stdin", query.get("stdin", "")),
                stdout=parse_bool("stdout", query.get("stdout", "")),
                stderr=parse_bool("stderr", query.get("stderr", "")),
                tty=parse_bool("tty", query.get("tty", "")),
                command=list(getall),
            )
        except ValueError as e:
            raise StreamRequestError(str(e)) from None
        if opts.tty and opts.stderr:
            opts.stderr = False  # a terminal has one output stream
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise StreamRequestError("you must specify at least 1 of stdin, stdout, stderr")
        if exec and not opts.command:
            raise StreamRequestError("you must specify at least one command for the container")
        return opts


# ---- channel framing --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelMessage:
    channel: int
    data: bytes
    close: bool = False  # v5: the peer closed its side of `channel`


def decode_message(message: bytes | str, protocol: str) -> ChannelMessage | None:
    """A client's WebSocket message as (channel, data); None for an empty message. Raises
    ValueError for a malformed one."""
    if protocol == V4_BASE64:
        text = message if isinstance(message, str) else message.decode("ascii", "replace")
        if not text:
            return None
        channel = ord(text[0]) - ord("0")
        try:
            data = base64.b64decode(text[1:], validate=True)
        except (ValueError, TypeError):
            raise ValueError("malformed base64 channel message") from None
        return ChannelMessage(channel, data)
    raw = message.encode() if isinstance(message, str) else message
    if not raw:
        return None
    if protocol == V5 and raw[0] == CLOSE_SIGNAL:
        if len(raw) != 2:
            raise ValueError("a close signal carries exactly one channel byte")
        return ChannelMessage(raw[1], b"", close=True)
    return ChannelMessage(raw[0], raw[1:])


def encode_message(channel: int, data: bytes, protocol: str) -> bytes | str:
    if protocol == V4_BASE64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


def parse_resize(data: bytes) -> list[tuple[int, int]]:
    """(width, height) of each terminal size in a resize message: JSON objects
    `{"Width": w, "Height": h}`, possibly several back to back (Go's json.Encoder)."""
    decoder, text, pos, out = json.JSONDecoder(), data.decode("utf-8", "replace"), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            raise ValueError(f"malformed terminal size: {text[pos : pos + 60]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError("a terminal size is a JSON object")
        width, height = obj.get("Width", 0), obj.get("Height", 0)
        if not isinstance(width, int) or not isinstance(height, int) or width < 0 or height < 0:
            raise ValueError(f"invalid terminal size: {obj}")
        out.append((width, height))
    return out


def encode_resize(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}, separators=(",", ":")).encode() + b"\n"


# ---- the runtime side ---------------------------------------------------------------------------


@dataclass
class RemoteCommand:
    """The SPDY streams of one exec/attach at the runtime's stream server."""

    session: SpdySession
    error: SpdyStream
    stdin: SpdyStream | None = None
    stdout: SpdyStream | None = None
    stderr: SpdyStream | None = None
    resize: SpdyStream | None = None


class RuntimeStreamError(Exception):
    """The runtime's stream server refused the session: `status` and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _refusal(up: upgrade.Upstream) -> RuntimeStreamError:
    try:
        body = (await up.read_body()).decode("utf-8", "replace").strip()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        body = ""
    up.close()
    status = up.status if up.status >= 400 else 502
    return RuntimeStreamError(status, body or f"the runtime answered {up.status} {up.reason}")


async def open_remote_command(
    url: str, opts: StreamOptions, timeout: float = 30.0
) -> RemoteCommand:
    """Upgrade to SPDY/3.1 at the runtime's exec/attach URL (remote command protocol v4) and
    create the streams `opts` asks for, as client-go's SPDY executor does."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), (STREAM_PROTOCOL_HEADER, V4)]
    try:
        up = await upgrade.dial_upgrade(url, "POST", headers, timeout=timeout)
    except upgrade.UpgradeError as e:
        raise RuntimeStreamError(502, str(e)) from None
    if up.status != 101:
        raise await _refusal(up)
    if up.header(STREAM_PROTOCOL_HEADER) != V4:
        up.close()
        raise RuntimeStreamError(
            502, f"the runtime chose protocol {up.header(STREAM_PROTOCOL_HEADER)!r}"
        )
    session = SpdySession(up.reader, up.writer)
    session.start()
    try:

        async def create(kind: str, wanted: bool = True) -> SpdyStream | None:
            if not wanted:
                return None
            return await session.open_stream({"streamtype": kind}, timeout=timeout)

        error = await create("error")
        assert error is not None
        rc = RemoteCommand(session, error)
        rc.stdin = await create("stdin", opts.stdin)
        rc.stdout = await create("stdout", opts.stdout)
        rc.stderr = await create("stderr", opts.stderr)
        rc.resize = await create("resize", opts.tty)
    except BaseException:
        await session.close()
        raise
    return rc


# ---- the client side ----------------------------------------------------------------------------


class _Sender:
    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws, self.protocol = ws, protocol
        self.lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        msg = encode_message(channel, data, self.protocol)
        async with self.lock:
            if isinstance(msg, str):
                await self.ws.send_str(msg)
            else:
                await self.ws.send_bytes(msg)


async def _forward(m: ChannelMessage, rc: RemoteCommand) -> None:
    stdin, resize = rc.stdin, rc.resize
    if m.channel == STDIN and stdin is not None and not stdin.local_closed:
        if stdin.reset_status:
            return
        if m.close:
            await stdin.close()
        elif m.data:
            await stdin.write(m.data)
    elif m.channel == RESIZE and resize is not None and m.data and not resize.reset_status:
        with contextlib.suppress(ValueError):
            for width, height in parse_resize(m.data):
                await resize.write(encode_resize(width, height))


async def _inbound(ws: web.WebSocketResponse, protocol: str, rc: RemoteCommand) -> None:
    """Client → runtime: stdin data and its CLOSE, terminal sizes. Ends when the client closes;
    input the runtime can no longer take (the command ended) is dropped."""
    async for msg in ws:
        if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            continue
        try:
            m = decode_message(msg.data, protocol)
        except ValueError:
            continue
        if m is not None:
            with contextlib.suppress(ConnectionError, SpdyError):
                await _forward(m, rc)


async def bridge_remote_command(
    request: web.BaseRequest, protocol: str, rc: RemoteCommand
) -> web.WebSocketResponse:
    """Accept the client's WebSocket and bridge it to the runtime's SPDY streams: output as it
    comes, and once the runtime has finished every stream, its status on channel 3 and a normal
    close (1000). A client that goes away ends the runtime session."""
    ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0, autoping=True)
    try:
        await ws.prepare(request)
    except BaseException:
        await rc.session.close()
        raise
    sender = _Sender(ws, protocol)
    status = bytearray()

    async def pump(stream: SpdyStream, channel: int) -> None:
        while data := await stream.read():
            await sender.send(channel, data)

    async def collect() -> None:
        while data := await rc.error.read():
            status.extend(data)

    outputs = [collect()]
    outputs += [pump(s, c) for s, c in ((rc.stdout, STDOUT), (rc.stderr, STDERR)) if s is not None]
    out: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*outputs))
    inbound: asyncio.Future[Any] = asyncio.ensure_future(_inbound(ws, protocol, rc))
    try:
        # the lowest output channel, empty: tells the client the session is established
        first = STDOUT if rc.stdout else STDERR if rc.stderr else ERROR
        await sender.send(first, b"")
        await asyncio.wait([out, inbound], return_when=asyncio.FIRST_COMPLETED)
        if out.done() and out.exception() is None:
            if status:
                await sender.send(ERROR, bytes(status))
            await ws.close()
    except (ConnectionError, RuntimeError):
        pass  # the client went away
    finally:
        for t in (out, inbound):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        await rc.session.close()
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


def requested_protocols(request: web.BaseRequest) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in header.split(",") if p.strip()]


def is_websocket(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_spdy(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/")


def spdy_request_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """The upgrade headers of a client's SPDY request, to repeat to the runtime."""
    out = [("Connection", "Upgrade"), ("Upgrade", request.headers.get("Upgrade", "SPDY/3.1"))]
    for value in request.headers.getall(STREAM_PROTOCOL_HEADER, []):
        out += [(STREAM_PROTOCOL_HEADER, v.strip()) for v in value.split(",") if v.strip()]
    return out


async def pass_spdy(request: web.BaseRequest, url: str) -> web.StreamResponse:
    """A client's SPDY upgrade, passed to the runtime's stream server and relayed as is."""
    try:
        up = await upgrade.dial_upgrade(url, "POST", spdy_request_headers(request))
    except upgrade.UpgradeError as e:
        raise RuntimeStreamError(502, str(e)) from None
    return await upgrade.pass_through(request, up)


async def tunnel_port_forward(request: web.BaseRequest, url: str) -> web.WebSocketResponse:
    """kubectl's port-forward over WebSocket (`SPDY/3.1+portforward.k8s.io`): the binary
    messages carry a SPDY session whose peer is the runtime's port-forward server; we upgrade
    there and copy the bytes between the two."""
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        (STREAM_PROTOCOL_HEADER, PORT_FORWARD),
    ]
    try:
        up = await upgrade.dial_upgrade(url, "POST", headers)
    except upgrade.UpgradeError as e:
        raise RuntimeStreamError(502, str(e)) from None
    if up.status != 101:
        raise await _refusal(up)
    ws = web.WebSocketResponse(protocols=(PORT_FORWARD_TUNNEL,), max_msg_size=0, autoping=True)
    try:
        await ws.prepare(request)
    except BaseException:
        up.close()
        raise

    async def inbound() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                up.writer.write(msg.data)
                await up.writer.drain()

    async def outbound() -> None:
        while data := await up.reader.read(upgrade.RELAY_CHUNK):
            await ws.send_bytes(data)

    tasks = [asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        up.close()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def relay_websocket(
    request: web.BaseRequest, url: str, protocols: list[str]
) -> web.WebSocketResponse:
    """A WebSocket the runtime serves itself (port-forward `v4.channel.k8s.io` with ports in the
    URL, as the Python client uses it): relayed message by message."""
    async with aiohttp.ClientSession() as http:
        try:
            upstream = await http.ws_connect(url, protocols=protocols, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            raise RuntimeStreamError(e.status if e.status >= 400 else 502, str(e)) from None
        except aiohttp.ClientError as e:
            raise RuntimeStreamError(502, str(e)) from None
        ws = web.WebSocketResponse(protocols=(upstream.protocol or "",), max_msg_size=0)
        await ws.prepare(request)

        async def copy(
            src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)

        tasks = [
            asyncio.ensure_future(copy(ws, upstream)),
            asyncio.ensure_future(copy(upstream, ws)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
            await upstream.close()
            with contextlib.suppress(Exception):
                await ws.close()
        return ws
