"""The CRI container log format, the files a runtime writes at `log_directory/log_path` for each
container: one record per line, `<RFC3339Nano time> <stdout|stderr> <tags> <content>`, where the
tag `F` marks a full line and `P` a partial one (a long line split by the runtime; the parts are
joined up to the next `F`). `parse_line` reads a record, `format_line` writes one, and `join`
reassembles partial records; the agent's `pods/log` serving is their user."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Iterable, Iterator

STDOUT = "stdout"
STDERR = "stderr"
TAG_FULL = "F"
TAG_PARTIAL = "P"
_FRACTION = re.compile(r"\.(\d+)")


class LogFormatError(ValueError):
    """A line is not a CRI log record."""


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """One record: `time` as written (RFC 3339 with nanoseconds), the stream, whether it ends
    a line (`F`) and the content without the record's newline."""

    time: str
    stream: str
    full: bool
    content: bytes

    @property
    def timestamp(self) -> datetime.datetime:
        """The time as an aware datetime (microsecond precision)."""
        return parse_time(self.time)


def parse_time(value: str) -> datetime.datetime:
    """Parse an RFC 3339 time with up to nanosecond fractions (`2024-01-02T03:04:05.123456789Z`,
    or with a numeric offset)."""
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], value, count=1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise LogFormatError(f"not an RFC 3339 time: {value!r}") from None


def format_time(when: datetime.datetime, nanos: int | None = None) -> str:
    """RFC 3339 with nine fraction digits, as runtimes write it (`nanos` overrides the fraction)."""
    utc = when.astimezone(datetime.UTC)
    frac = utc.microsecond * 1000 if nanos is None else nanos
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_line(line: bytes) -> LogRecord:
    """Parse one record (with or without its trailing newline)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise LogFormatError(f"not a CRI log record: {line[:100]!r}")
    time, stream, tags = (p.decode("ascii", "replace") for p in parts[:3])
    if stream not in (STDOUT, STDERR):
        raise LogFormatError(f"unknown stream {stream!r} in CRI log record")
    parse_time(time)
    content = parts[3] if len(parts) > 3 else b""
    return LogRecord(time, stream, TAG_PARTIAL not in tags.split(":"), content)


def format_line(record: LogRecord) -> bytes:
    tag = TAG_FULL if record.full else TAG_PARTIAL
    return f"{record.time} {record.stream} {tag} ".encode() + record.content + b"\n"


def join(records: Iterable[LogRecord]) -> Iterator[LogRecord]:
    """Merge partial records of a stream into whole lines (the time of the first part)."""
    pending: dict[str, list[LogRecord]] = {}
    for rec in records:
        if not rec.full:
            pending.setdefault(rec.stream, []).append(rec)
            continue
        parts = pending.pop(rec.stream, [])
        if parts:
            content = b"".join(p.content for p in parts) + rec.content
            yield LogRecord(parts[0].time, rec.stream, True, content)
        else:
            yield rec
    for parts in pending.values():
        yield LogRecord(parts[0].time, parts[0].stream, False, b"".join(p.content for p in parts))
