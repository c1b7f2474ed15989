"""Serving CRI log files (`kybern.agent.streaming_logs`): query options, where the last N lines
start (partial records, block edges, an unfinished last record), rendering (timestamps, since,
limitBytes) and following a file that grows, is rotated, and whose container stops."""

from __future__ import annotations

import asyncio
import datetime
import io
from pathlib import Path

import pytest

from kybern.agent import streaming_logs as sl
from kybern.cri import logs

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


def rec(content: str, *, second: int = 0, stream: str = "stdout", full: bool = True) -> bytes:
    when = logs.format_time(T0 + datetime.timedelta(seconds=second))
    return logs.format_line(logs.LogRecord(when, stream, full, content.encode()))


def test_options_from_query() -> None:
    now = T0
    opts = sl.LogOptions.from_query(
        {
            "follow": "true",
            "timestamps": "1",
            "tailLines": "3",
            "limitBytes": "10",
            "sinceSeconds": "60",
        },
        now,
    )
    assert (opts.follow, opts.timestamps, opts.previous) == (True, True, False)
    assert (opts.tail_lines, opts.limit_bytes) == (3, 10)
    assert opts.since == now - datetime.timedelta(seconds=60)
    opts = sl.LogOptions.from_query({"sinceTime": "2024-05-01T12:00:05Z", "previous": "True"})
    assert opts.since == T0 + datetime.timedelta(seconds=5) and opts.previous
    for bad in (
        {"follow": "yes"},
        {"tailLines": "-1"},
        {"tailLines": "x"},
        {"limitBytes": "0"},
        {"sinceSeconds": "0"},
        {"sinceSeconds": "5", "sinceTime": "2024-05-01T12:00:05Z"},
        {"sinceTime": "yesterday"},
    ):
        with pytest.raises(ValueError):
            sl.LogOptions.from_query(bad)


def test_tail_offset_counts_lines_not_records() -> None:
    data = (
        rec("a") + rec("b-part1", full=False) + rec("b-part2", full=False) + rec("b-end") + rec("c")
    )
    f = io.BytesIO(data)
    assert sl.tail_offset(f, 0) == len(data)
    assert sl.tail_offset(f, 1) == data.index(rec("c"))
    assert sl.tail_offset(f, 2) == data.index(rec("b-part1", full=False))  # the whole line
    assert sl.tail_offset(f, 3) == 0
    assert sl.tail_offset(f, 100) == 0
    # a record still being written is not a line: the last full line is before it
    unfinished = data + rec("d")[:-10]
    assert sl.tail_offset(io.BytesIO(unfinished), 1) == data.index(rec("c"))


def test_tail_offset_across_block_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl, "READ_SIZE", 7)  # records span several blocks
    records = [rec(f"line-{i}", second=i) for i in range(20)]
    data = b"".join(records)
    for n in (1, 5, 19):
        start = sl.tail_offset(io.BytesIO(data), n)
        assert data[start:] == b"".join(records[-n:])
    assert sl.tail_offset(io.BytesIO(b""), 3) == 0


def test_renderer() -> None:
    r = sl.LogRenderer(sl.LogOptions(timestamps=True))
    parts = [
        logs.parse_line(rec("start ", full=False)),
        logs.parse_line(rec("end")),
        logs.parse_line(rec("next", stream="stderr")),
    ]
    out = b"".join(r.render(p) for p in parts)
    t = logs.format_time(T0)
    assert out == f"{t} start end\n{t} next\n".encode()  # one prefix per line

    r = sl.LogRenderer(sl.LogOptions(since=T0 + datetime.timedelta(seconds=2)))
    lines = [rec(f"l{i}", second=i).rstrip(b"\n") for i in range(4)]
    assert r.render_lines([*lines, b"garbage"]) == b"l2\nl3\n"

    r = sl.LogRenderer(sl.LogOptions(limit_bytes=5))
    assert r.render_lines(lines) == b"l0\nl1"
    assert r.done and r.render(logs.parse_line(lines[0])) == b""


async def test_stream_log_reads_and_tails(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"".join(rec(f"l{i}") for i in range(5)))
    out: list[bytes] = []

    async def write(data: bytes) -> None:
        out.append(data)

    async def running() -> bool:
        return True

    await sl.stream_log(path, sl.LogOptions(tail_lines=2), write, running)
    assert b"".join(out) == b"l3\nl4\n"
    with pytest.raises(FileNotFoundError):
        await sl.stream_log(tmp_path / "absent.log", sl.LogOptions(), write, running)


async def test_stream_log_follows_rotation_and_stops_with_the_container(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(rec("first"))
    out = bytearray()
    got = asyncio.Event()
    alive = True

    async def write(data: bytes) -> None:
        out.extend(data)
        got.set()

    async def running() -> bool:
        return alive

    async def seen(text: bytes) -> None:
        while text not in out:
            got.clear()
            await got.wait()

    follow = sl.LogOptions(follow=True)
    task = asyncio.ensure_future(
        sl.stream_log(path, follow, write, running, poll_interval=0.01, state_interval=0.01)
    )
    try:
        async with asyncio.timeout(10):
            await seen(b"first\n")
            with path.open("ab") as f:
                f.write(rec("half-")[:-5])  # an unfinished record waits for its end
                f.flush()
                f.write(rec("half-")[-5:] + rec("second"))
            await seen(b"second\n")
            # the runtime reopens its log: the old file is renamed, a new one takes its name
            path.rename(tmp_path / "0.log.rotated")
            path.write_bytes(rec("after-rotation"))
            await seen(b"after-rotation\n")
            with path.open("ab") as f:
                f.write(rec("last words"))
            alive = False  # the container stopped: what it wrote is drained, then the end
            await task
    finally:
        task.cancel()
    assert bytes(out) == b"first\nhalf-\nsecond\nafter-rotation\nlast words\n"


async def test_stream_log_stops_when_the_client_leaves(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(rec("x"))
    left = False

    async def write(data: bytes) -> None:
        nonlocal left
        left = True  # the client goes away after its first chunk

    async def running() -> bool:
        return True

    async with asyncio.timeout(10):
        await sl.stream_log(
            path, sl.LogOptions(follow=True), write, running, lambda: left, poll_interval=0.01
        )
