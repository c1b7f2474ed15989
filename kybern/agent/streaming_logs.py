"""Serving a container's CRI log file the way `kubectl logs` expects it: `LogOptions` from the
kubelet's query parameters (follow, previous, timestamps, tailLines, sinceSeconds/sinceTime,
limitBytes), `tail_offset` (where the last N lines of a file start, read backwards in blocks),
`LogRenderer` (CRI records to output bytes: the since filter, timestamp prefixes, partial
records joined into lines, the byte limit) and `stream_log`, which reads the file and, when
following, polls it for new records (no inotify) until the container stops running or the
client goes away, switching to the new file when the runtime reopens a rotated log."""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kybern.cri import logs

READ_SIZE = 64 * 1024
POLL_INTERVAL = 0.1  # seconds between reads of a followed file that has no new data
STATE_INTERVAL = 0.5  # seconds between checks that a followed container still runs
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("", "0", "f", "F", "false", "FALSE", "False")


def parse_bool(name: str, value: str) -> bool:
    """A boolean query parameter as Go's `strconv.ParseBool` reads it ("" is false)."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f'invalid value for {name}: "{value}": must be a boolean')


def parse_int(name: str, value: str | None, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f'invalid value for {name}: "{value}": must be an integer') from None
    if n < minimum:
        raise ValueError(f"{name}: Invalid value: {n}: must be greater than or equal to {minimum}")
    return n


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: datetime.datetime | None = None

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], now: datetime.datetime | None = None
    ) -> LogOptions:
        """The options of a `containerLogs` (or `pods/log`) request; ValueError when invalid."""
        opts = cls(
            follow=parse_bool("follow", query.get("follow", "")),
            previous=parse_bool("previous", query.get("previous", "")),
            timestamps=parse_bool("timestamps", query.get("timestamps", "")),
            tail_lines=parse_int("tailLines", query.get("tailLines"), 0),
            limit_bytes=parse_int("limitBytes", query.get("limitBytes"), 1),
        )
        since_seconds = parse_int("sinceSeconds", query.get("sinceSeconds"), 1)
        since_time = query.get("sinceTime") or ""
        if since_seconds is not None and since_time:
            raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        if since_seconds is not None:
            now = now or datetime.datetime.now(datetime.UTC)
            opts.since = now - datetime.timedelta(seconds=since_seconds)
        elif since_time:
            try:
                opts.since = logs.parse_time(since_time)
            except logs.LogFormatError:
                raise ValueError(f'invalid value for sinceTime: "{since_time}"') from None
        return opts


def _full(record: bytes) -> bool:
    parts = record.split(b" ", 3)
    return len(parts) >= 3 and b"P" not in parts[2].split(b":")


def tail_offset(f: BinaryIO, lines: int) -> int:
    """The offset in `f` (a CRI log file) where its last `lines` lines start: full records (`F`)
    end lines, partial ones (`P`) belong to the line their next `F` ends; a last record without
    its newline is not a line yet. Reads backwards in blocks. Blocking."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, data, found = end, b"", 0
    nl: int | None = None  # offset of the newline ending the next (older) record to look at

    def more() -> bool:
        nonlocal pos, data
        if pos == 0:
            return False
        step = min(READ_SIZE, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        return True

    while True:
        if nl is None:
            i = data.rfind(b"\n")
            if i < 0:
                if more():
                    continue
                return 0
            nl = pos + i
        j = data.rfind(b"\n", 0, nl - pos)
        if j < 0 and more():
            continue
        start = pos + j + 1 if j >= 0 else 0
        if _full(data[start - pos : nl - pos]):
            found += 1
            if found > lines:
                return nl + 1
        if start == 0:
            return 0
        nl = start - 1


class LogRenderer:
    """Turns CRI records into the bytes `kubectl logs` prints."""

    def __init__(self, opts: LogOptions) -> None:
        self.opts = opts
        self.remaining = opts.limit_bytes
        self._new_line = True

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def render(self, record: logs.LogRecord) -> bytes:
        if self.done:
            return b""
        if self.opts.since is not None:
            try:
                if record.timestamp < self.opts.since:
                    return b""
            except logs.LogFormatError:
                return b""
        out = record.content + (b"\n" if record.full else b"")
        if self.opts.timestamps and self._new_line:
            out = record.time.encode() + b" " + out
        self._new_line = record.full
        if self.remaining is not None:
            out = out[: self.remaining]
            self.remaining -= len(out)
        return out

    def render_lines(self, lines: list[bytes]) -> bytes:
        out = []
        for line in lines:
            try:
                record = logs.parse_line(line)
            except logs.LogFormatError:
                continue  # as a kubelet: an unparsable record is skipped
            out.append(self.render(record))
        return b"".join(out)


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def _rotated(path: Path, f: BinaryIO) -> bool:
    """Whether `path` now names another file than the open `f` (the runtime reopened it)."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except OSError:
        return False


async def stream_log(
    path: Path,
    opts: LogOptions,
    write: Callable[[bytes], Awaitable[None]],
    running: Callable[[], Awaitable[bool]],
    gone: Callable[[], bool] = lambda: False,
    *,
    poll_interval: float = POLL_INTERVAL,
    state_interval: float = STATE_INTERVAL,
) -> None:
    """Write the log at `path` through `write`; when following, keep reading new records until
    `running()` says the container stopped (then drain the file) or `gone()` says the client
    left. FileNotFoundError when there is no log file."""
    f = await asyncio.to_thread(_open, path)
    try:
        if opts.tail_lines is not None:
            await asyncio.to_thread(
                f.seek, await asyncio.to_thread(tail_offset, f, opts.tail_lines)
            )
        renderer, pending = LogRenderer(opts), b""
        last_check, stopping = time.monotonic(), False
        while True:
            chunk = await asyncio.to_thread(f.read, READ_SIZE)
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                out = renderer.render_lines(lines)
                if out:
                    await write(out)
                if renderer.done:
                    return
                continue
            if not opts.follow or stopping or gone():
                return
            if await asyncio.to_thread(_rotated, path, f):
                f.close()
                f, pending = await asyncio.to_thread(_open, path), b""
                continue
            if time.monotonic() - last_check >= state_interval:
                last_check = time.monotonic()
                stopping = not await running()  # one more pass reads what it wrote last
                continue
            await asyncio.sleep(poll_interval)
    finally:
        f.close()
