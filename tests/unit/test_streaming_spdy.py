"""SPDY/3.1 as Kubernetes streaming uses it (`kybern.agent.streaming_spdy`): the header
dictionary, header blocks and their shared zlib streams, frame layouts, and two sessions talking
over in-memory pipes (stream open/reply, data and FIN, reset, refusal, pings, end of input)."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from kybern.agent import streaming_spdy as spdy


class Pipe:
    """One direction of an in-memory connection: what is written arrives at `reader`."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.reader.feed_data(data)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reader.feed_eof()


def test_dictionary_is_the_spdy3_one() -> None:
    # draft 3 fixes the dictionary; zlib streams name it by its Adler-32
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06status\x00\x00\x00\x06200 OK" in spdy.DICTIONARY
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_header_block_layout() -> None:
    block = spdy.encode_header_block({"StreamType": "error", "X": ["a", "b"]})
    assert block == (
        struct.pack(">I", 2)
        + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 5) + b"error"
        + struct.pack(">I", 1) + b"x" + struct.pack(">I", 3) + b"a\0b"
    )  # fmt: skip
    assert spdy.decode_header_block(block) == {"streamtype": ["error"], "x": ["a", "b"]}
    with pytest.raises(spdy.SpdyError):
        spdy.decode_header_block(block[:-2])


def test_header_codec_shares_one_zlib_stream_per_direction() -> None:
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = sender.compress({"streamtype": "error"})
    # a zlib header declaring a preset dictionary (FDICT), then the dictionary's id
    assert first[1] & 0x20 and first[2:6] == struct.pack(">I", 0xE3C6A7C2)
    second = sender.compress({"streamtype": "stdout", "port": "80"})
    assert receiver.decompress(first) == {"streamtype": ["error"]}
    assert receiver.decompress(second) == {"streamtype": ["stdout"], "port": ["80"]}
    # the second block depends on the first: alone it cannot be read
    with pytest.raises(spdy.SpdyError):
        spdy.HeaderCodec().decompress(second)


def test_header_codec_reads_a_plain_zlib_peer() -> None:
    """What another implementation (zlib with the dictionary, sync flush) sends is understood."""
    peer = zlib.compressobj(zdict=spdy.DICTIONARY)
    blocks = [spdy.encode_header_block({"streamtype": t}) for t in ("stdin", "resize")]
    codec = spdy.HeaderCodec()
    for block, kind in zip(blocks, ("stdin", "resize"), strict=True):
        wire = peer.compress(block) + peer.flush(zlib.Z_SYNC_FLUSH)
        assert codec.decompress(wire) == {"streamtype": [kind]}


def test_frame_layouts() -> None:
    data = spdy.encode_data(5, b"hello", fin=True)
    assert data == struct.pack(">II", 5, (1 << 24) | 5) + b"hello"
    f = spdy.parse_frame(data[:8], data[8:])
    assert (f.kind, f.stream_id, f.payload, f.fin) == (0, 5, b"hello", True)

    syn = spdy.encode_syn_stream(3, b"BLOCK", priority=2)
    assert syn[:8] == struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 10 + 5)
    assert syn[8:18] == struct.pack(">IIBB", 3, 0, 2 << 5, 0)
    f = spdy.parse_frame(syn[:8], syn[8:])
    assert (f.kind, f.stream_id, f.payload, f.fin) == (spdy.SYN_STREAM, 3, b"BLOCK", False)

    reply = spdy.encode_syn_reply(3, b"B", fin=True)
    f = spdy.parse_frame(reply[:8], reply[8:])
    assert (f.kind, f.stream_id, f.payload, f.fin) == (spdy.SYN_REPLY, 3, b"B", True)

    rst = spdy.encode_rst_stream(7, spdy.RST_CANCEL)
    f = spdy.parse_frame(rst[:8], rst[8:])
    assert (f.kind, f.stream_id, f.payload) == (spdy.RST_STREAM, 7, struct.pack(">I", 5))

    ping = spdy.encode_ping(2)
    assert ping == struct.pack(">HHII", 0x8003, spdy.PING, 4, 2)
    goaway = spdy.encode_goaway(9)
    assert goaway == struct.pack(">HHIII", 0x8003, spdy.GOAWAY, 8, 9, 0)


def test_frame_errors() -> None:
    v2 = struct.pack(">HHI", 0x8002, spdy.PING, 4)
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.parse_frame(v2, b"\0\0\0\1")
    short = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 4)
    with pytest.raises(spdy.SpdyError, match="too short"):
        spdy.parse_frame(short, b"\0\0\0\1")
    with pytest.raises(ValueError):
        spdy.encode_data(1, b"x" * (spdy.MAX_DATA + 1))


async def connected(
    on_stream: spdy.StreamHandler,
) -> tuple[spdy.SpdySession, spdy.SpdySession]:
    to_server, to_client = asyncio.StreamReader(), asyncio.StreamReader()
    client = spdy.SpdySession(to_client, Pipe(to_server))
    server = spdy.SpdySession(to_server, Pipe(to_client), server=True, on_stream=on_stream)
    client.start()
    server.start()
    return client, server


async def test_sessions_exchange_streams() -> None:
    received: dict[str, bytes] = {}
    done = asyncio.Event()

    async def serve(stream: spdy.SpdyStream) -> None:
        kind = stream.header("StreamType")
        if kind == "refused":
            await stream.reset(spdy.RST_REFUSED_STREAM)
            return
        await stream.reply()
        if kind == "stdout":
            await stream.write(b"x" * (spdy.WRITE_CHUNK + 10))  # two data frames
            await stream.close()
        elif kind == "stdin":
            data = b""
            while chunk := await stream.read():
                data += chunk
            received["stdin"] = data
            done.set()

    client, server = await connected(serve)
    async with asyncio.timeout(10):
        out = await client.open_stream({"streamtype": "stdout"})
        assert out.id == 1
        data = b""
        while chunk := await out.read():
            data += chunk
        assert data == b"x" * (spdy.WRITE_CHUNK + 10) and out.remote_closed
        assert await out.read() == b""  # stays at its end

        stdin = await client.open_stream({"streamtype": "stdin"})
        assert stdin.id == 3
        await stdin.write(b"abc")
        await stdin.close()
        with pytest.raises(spdy.SpdyError):
            await stdin.write(b"more")
        await done.wait()
        assert received["stdin"] == b"abc"

        with pytest.raises(spdy.SpdyError, match="before its reply"):
            await client.open_stream({"streamtype": "refused"})
    await client.close()
    await server.close()


async def test_pings_are_answered_and_end_of_input_ends_streams() -> None:
    async def serve(stream: spdy.SpdyStream) -> None:
        await stream.reply()

    client, server = await connected(serve)
    async with asyncio.timeout(10):
        stream = await client.open_stream({"streamtype": "error"})
        # a server ping (even id) comes back; the client's own (odd) ones are not echoed
        got = asyncio.StreamReader()
        client_pipe = client.writer
        assert isinstance(client_pipe, Pipe)
        original = client_pipe.write

        def spy(data: bytes) -> None:
            got.feed_data(data)
            original(data)

        client_pipe.write = spy  # type: ignore[method-assign]
        await server.send(spdy.encode_ping(2))
        frame = await spdy.read_frame(got)
        assert (frame.kind, frame.payload) == (spdy.PING, struct.pack(">I", 2))

        server.writer.close()  # the server's side of the connection ends
        assert await stream.read() == b""
        await client.done.wait()
        assert client.closed
        with pytest.raises(ConnectionResetError):
            await client.open_stream({"streamtype": "stdout"})
    await client.close()
    await server.close()


async def test_a_client_refuses_streams_the_server_opens() -> None:
    async def serve(stream: spdy.SpdyStream) -> None:
        await stream.reply()

    client, server = await connected(serve)
    async with asyncio.timeout(10):
        pushed = spdy.SpdyStream(server, 2, {})
        server.streams[2] = pushed
        await server.send_headers(spdy.SYN_STREAM, 2, {"streamtype": "data"})
        assert await pushed.read() == b""  # RST_STREAM (refused) arrived
        assert pushed.reset_status == spdy.RST_REFUSED_STREAM
    await client.close()
    await server.close()
