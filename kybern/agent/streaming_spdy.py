"""SPDY/3.1 framing as Kubernetes streaming speaks it (the `httpstream/spdy` dialect: SPDY/3 frames,
headers compressed with zlib and the SPDY/3 dictionary, no flow control enforced), written from
the public draft-3 specification: frame encoding and parsing (`encode_*`, `read_frame`), the
header-block codec (`HeaderCodec`, one zlib stream per direction and connection) and an asyncio
session (`SpdySession`, `SpdyStream`) that opens streams and waits for their replies as a client,
or accepts and replies to them as a server. The agent uses the client side towards the container
runtime's stream server (exec/attach over SPDY carry stdin half-close, which WebSocket v4 cannot);
the server side exists for tests and symmetric use. No I/O beyond the reader/writer it is given."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

VERSION = 3
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
RST_PROTOCOL_ERROR = 1
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6
MAX_DATA = (1 << 24) - 1
WRITE_CHUNK = 32 * 1024  # data frames we send are at most this long
_HEADER_BLOCK_LIMIT = 1 << 20

# The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): 65 length-prefixed
# words, then a run of status codes, reason phrases, dates and common values.
_DICT_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status "
    "200_OK version HTTP/1.1 url public set-cookie keep-alive origin"
)
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    words = [w.replace("_", " ").encode() for w in _DICT_WORDS.split()]
    return b"".join(struct.pack(">I", len(w)) + w for w in words) + _DICT_TAIL.encode()


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """A protocol violation or a stream that was refused/reset."""


Headers = dict[str, list[str]]


def encode_header_block(headers: Mapping[str, str | Iterable[str]]) -> bytes:
    """The uncompressed name/value block: names lowercased, several values joined by NUL."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        values = [value] if isinstance(value, str) else list(value)
        merged.setdefault(name.lower(), []).extend(values)
    out = [struct.pack(">I", len(merged))]
    for name, values in merged.items():
        n, v = name.encode(), "\0".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block (names as sent, values split at NUL)."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, out = 4, Headers()
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (v,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4 : pos + 4 + v].decode()
            pos += 4 + v
            if pos > len(block):
                raise SpdyError("truncated header block")
            out.setdefault(name, []).extend(value.split("\0"))
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"malformed header block: {e}") from None
    return out


class HeaderCodec:
    """Header compression of one connection: each direction is one zlib stream with the SPDY
    dictionary, flushed (sync) after every block, so blocks must be coded in frame order."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def compress(self, headers: Mapping[str, str | Iterable[str]]) -> bytes:
        block = encode_header_block(headers)
        return self._out.compress(block) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._in.decompress(data, _HEADER_BLOCK_LIMIT)
        except zlib.error as e:
            raise SpdyError(f"header decompression failed: {e}") from None
        return decode_header_block(block)


# ---- frames -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A parsed frame: `kind` is 0 for data, else the control frame type; `stream_id` is 0 for
    connection-level control frames; `payload` is the frame body after the stream id (for
    SYN_STREAM after the priority/slot bytes; header blocks are still compressed)."""

    kind: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


def encode_data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
    if len(data) > MAX_DATA:
        raise ValueError("data frame too long")
    flags = FLAG_FIN if fin else 0
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def encode_syn_stream(
    stream_id: int, block: bytes, *, fin: bool = False, priority: int = 0
) -> bytes:
    body = struct.pack(">IIBB", stream_id, 0, (priority & 7) << 5, 0) + block
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)


def encode_syn_reply(stream_id: int, block: bytes, *, fin: bool = False) -> bytes:
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + block)


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_stream: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_stream, status))


def parse_frame(head: bytes, body: bytes) -> Frame:
    """A frame from its 8-byte head and its body."""
    word, flags_len = struct.unpack(">II", head)
    flags = flags_len >> 24
    if not word & 0x80000000:
        return Frame(0, flags, word & 0x7FFFFFFF, body)
    version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
    if version != VERSION:
        raise SpdyError(f"unsupported SPDY version {version}")
    if kind in (SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE):
        if len(body) < (10 if kind == SYN_STREAM else 4):
            raise SpdyError(f"control frame {kind} too short")
        stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
        return Frame(kind, flags, stream_id, body[10:] if kind == SYN_STREAM else body[4:])
    return Frame(kind, flags, 0, body)


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """Read one frame (IncompleteReadError at end of input)."""
    head = await reader.readexactly(8)
    length = struct.unpack_from(">I", head, 4)[0] & 0xFFFFFF
    return parse_frame(head, await reader.readexactly(length) if length else b"")


# ---- session ------------------------------------------------------------------------------


class Writer(Protocol):
    """What a session writes to (an asyncio.StreamWriter, or an in-memory pipe in tests)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class SpdyStream:
    """One stream. `read()` returns the peer's data in order and b"" once the peer finished it
    (FIN), reset it or the connection ended; `write`/`close` send data and our FIN."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.replied: asyncio.Future[Headers] = asyncio.get_running_loop().create_future()
        self.reset_status = 0
        self.local_closed = False
        self.remote_closed = False
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(64)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower()) or [""]
        return values[0]

    async def read(self) -> bytes:
        if self.remote_closed and self._queue.empty():
            return b""
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            raise SpdyError(f"write on closed stream {self.id}")
        for i in range(0, len(data), WRITE_CHUNK):
            await self.session.send(encode_data(self.id, data[i : i + WRITE_CHUNK]))

    async def close(self) -> None:
        """Half-close: our side sends no more data."""
        if not self.local_closed and not self.reset_status and not self.session.closed:
            self.local_closed = True
            await self.session.send(encode_data(self.id, b"", fin=True))

    async def reset(self, status: int = RST_CANCEL) -> None:
        if not self.reset_status and not self.session.closed:
            self.reset_status = status
            with contextlib.suppress(ConnectionError):
                await self.session.send(encode_rst_stream(self.id, status))
        self._end()

    async def reply(self, headers: Mapping[str, str] | None = None) -> None:
        """Server side: accept the stream."""
        await self.session.send_headers(SYN_REPLY, self.id, headers or {})

    async def _feed(self, data: bytes) -> None:
        if data and not self.remote_closed:
            await self._queue.put(data)

    def _end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(b"")
        if not self.replied.done():
            self.replied.set_exception(SpdyError(f"stream {self.id} closed before its reply"))
            self.replied.exception()  # retrieved: nobody may be waiting


StreamHandler = Callable[[SpdyStream], Awaitable[None]]


class SpdySession:
    """A SPDY connection over `reader`/`writer`. A client opens odd-numbered streams and waits
    for their SYN_REPLY; a server passes each new stream to `on_stream` (which must reply or
    reset it). Pings from the peer are answered; GOAWAY, a protocol error or the end of input
    end every stream. `run()` is the read loop (started by `start()`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: Writer,
        *,
        server: bool = False,
        on_stream: StreamHandler | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.server = server
        self.on_stream = on_stream
        self.streams: dict[int, SpdyStream] = {}
        self.closed = False
        self.goaway = False
        self.error: Exception | None = None
        self.done = asyncio.Event()
        self._codec = HeaderCodec()
        self._next_id = 2 if server else 1
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def send(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("SPDY connection closed")
        async with self._lock:
            self.writer.write(frame)
            await self.writer.drain()

    async def send_headers(
        self,
        kind: int,
        stream_id: int,
        headers: Mapping[str, str | Iterable[str]],
        fin: bool = False,
    ) -> None:
        if self.closed:
            raise ConnectionResetError("SPDY connection closed")
        async with self._lock:  # compress in frame order: one zlib stream per direction
            block = self._codec.compress(headers)
            if kind == SYN_STREAM:
                frame = encode_syn_stream(stream_id, block, fin=fin)
            else:
                frame = encode_syn_reply(stream_id, block, fin=fin)
            self.writer.write(frame)
            await self.writer.drain()

    async def open_stream(
        self, headers: Mapping[str, str], *, fin: bool = False, timeout: float = 30.0
    ) -> SpdyStream:
        """Open a stream and wait for the peer's reply (SpdyError if it resets it)."""
        stream_id, self._next_id = self._next_id, self._next_id + 2
        stream = SpdyStream(self, stream_id, {k.lower(): [v] for k, v in headers.items()})
        stream.local_closed = fin
        self.streams[stream_id] = stream
        await self.send_headers(SYN_STREAM, stream_id, headers, fin)
        async with asyncio.timeout(timeout):
            await stream.replied
        return stream

    async def run(self) -> None:
        try:
            while True:
                await self._dispatch(await read_frame(self.reader))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except SpdyError as e:
            self.error = e
            with contextlib.suppress(ConnectionError, OSError):
                await self.send(encode_goaway(0, 1))
        finally:
            self._shutdown()

    async def _dispatch(self, f: Frame) -> None:
        stream = self.streams.get(f.stream_id)
        if f.kind == 0:
            if stream is not None:
                await stream._feed(f.payload)
                if f.fin:
                    stream._end()
        elif f.kind == SYN_STREAM:
            headers = self._codec.decompress(f.payload)
            await self._accept(f, headers)
        elif f.kind in (SYN_REPLY, HEADERS):
            headers = self._codec.decompress(f.payload)
            if stream is not None and f.kind == SYN_REPLY and not stream.replied.done():
                stream.replied.set_result(headers)
            if stream is not None and f.fin:
                stream._end()
        elif f.kind == RST_STREAM:
            if stream is not None:
                stream.reset_status = struct.unpack_from(">I", f.payload, 0)[0] or RST_CANCEL
                stream._end()
        elif f.kind == PING:
            (ping_id,) = struct.unpack_from(">I", f.payload, 0)
            ours = 0 if self.server else 1  # clients ping with odd ids, servers with even
            if ping_id % 2 != ours:
                await self.send(encode_ping(ping_id))
        elif f.kind == GOAWAY:
            self.goaway = True  # no new streams; the open ones end with their FIN or the EOF
        # SETTINGS, WINDOW_UPDATE and unknown control frames are ignored

    async def _accept(self, f: Frame, headers: Headers) -> None:
        if not self.server or self.on_stream is None or f.stream_id % 2 == 0:
            await self.send(encode_rst_stream(f.stream_id, RST_REFUSED_STREAM))
            return
        stream = SpdyStream(self, f.stream_id, headers)
        stream.replied.set_result({})
        self.streams[f.stream_id] = stream
        if f.fin:
            stream._end()
        task = asyncio.ensure_future(self.on_stream(stream))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _shutdown(self) -> None:
        self.closed = True
        for stream in self.streams.values():
            stream._end()
        self.done.set()

    async def close(self) -> None:
        """End the connection: the read loop stops, every stream ends, the writer closes."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._handlers):
            task.cancel()
        self._shutdown()
        with contextlib.suppress(Exception):
            self.writer.close()
