"""The protobuf wire primitives and encoder of Kubernetes objects, driven by the compiled field
table of `kybern.api.protobuf`: `Field` and `Message` (the compiled table), varints, and
`encode`, which turns a JSON-shaped dict into message bytes. Kubernetes' special messages map
to their JSON forms (Time and MicroTime to RFC3339 strings, Duration to a Go duration string,
Quantity to its string, IntOrString to an int or a string, RawExtension and FieldsV1 to
embedded JSON, ExtraValue-like wrappers to lists); the helpers for them are here too. The
decoder is `protobuf_decode`."""

from __future__ import annotations

import base64
import calendar
import functools
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

# field kinds
STR, BYTES, INT32, INT64, BOOL, DOUBLE, MSG = range(7)
TIME, MICROTIME, DURATION, QUANTITY, INTSTR, RAW, SLICE = range(7, 14)
REPEATED = 100  # mode of a list field: REPEATED + kind
MAP = 200  # mode of a map field

MASK64 = (1 << 64) - 1
_SMALL = [bytes([i]) for i in range(128)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d\d):(\d\d))$"
)
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "μs": 1000,
    "ms": 1000_000,
    "s": 1000_000_000,
    "m": 60 * 1000_000_000,
    "h": 3600 * 1000_000_000,
}


class _Null:
    """A decoded value that Go prints as JSON null (the zero Time, an empty RawExtension)."""

    __slots__ = ()


NULL: Any = _Null()


class WireError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


class Field:
    """One field of a compiled message. `keep_zero`: a decoded zero value is kept (pointer or
    required field); `msg` is the message of MSG fields and of MSG map values."""

    __slots__ = (
        "inline",
        "keep_zero",
        "key_kind",
        "kind",
        "map",
        "mode",
        "msg",
        "name",
        "number",
        "repeated",
        "required",
        "tag",
        "value_kind",
    )

    def __init__(self, name: str, number: int, kind: int) -> None:
        self.name = name
        self.number = number
        self.kind = kind
        self.repeated = False
        self.map = False
        self.key_kind = STR
        self.value_kind = STR
        self.msg: Message | None = None
        self.keep_zero = False
        self.required = False
        self.inline = False  # an embedded Go struct: its fields sit in the parent's JSON
        wire = 0 if kind in (INT32, INT64, BOOL) else 1 if kind == DOUBLE else 2
        self.tag = varint(number << 3 | wire)
        self.mode = kind

    def finish(self) -> None:
        """Set `mode`, the kind the codecs dispatch on: the kind of a singular field,
        REPEATED + kind for a list, MAP for a map."""
        self.mode = MAP if self.map else REPEATED + self.kind if self.repeated else self.kind


class Message:
    """A compiled message: fields by JSON name (encoding) and by number (decoding), the
    required list/map fields that decoding fills with an empty value when absent, and the JSON
    names that belong to inline fields (`inline_names`: JSON name -> the inline field, which
    `by_name` holds under NUL + its proto name)."""

    __slots__ = ("by_name", "by_number", "inline_names", "name", "required_lists")

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_name: dict[str, Field] = {}
        self.by_number: dict[int, Field] = {}
        self.inline_names: dict[str, Field] = {}
        self.required_lists: tuple[Field, ...] = ()


# ---- primitives ------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    if n < 0x80:
        if n < 0:
            n &= MASK64
        else:
            return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("proto: integer overflow")


def skip(data: bytes, pos: int, wire: int, end: int) -> int:
    if wire == 0:
        return read_varint(data, pos)[1]
    if wire == 1:
        pos += 8
    elif wire == 2:
        n, pos = read_varint(data, pos)
        pos += n
    elif wire == 5:
        pos += 4
    elif wire == 3:  # a group: skip to its end tag
        while True:
            if pos >= end:
                raise WireError("unexpected EOF")
            tag, pos = read_varint(data, pos)
            if tag & 7 == 4:
                break
            pos = skip(data, pos, tag & 7, end)
    else:
        raise WireError(f"proto: illegal wireType {wire}")
    if pos > end:
        raise WireError("unexpected EOF")
    return pos


def read_fields(data: bytes, pos: int = 0, end: int = -1) -> dict[int, Any]:
    """The fields of a small untyped message: number -> last value (bytes for
    length-delimited fields, int for varints)."""
    if end < 0:
        end = len(data)
    out: dict[int, Any] = {}
    while pos < end:
        tag, pos = read_varint(data, pos)
        if tag & 7 == 2:
            n, pos = read_varint(data, pos)
            if pos + n > end:
                raise WireError("unexpected EOF")
            out[tag >> 3] = data[pos : pos + n]
            pos += n
        elif tag & 7 == 0:
            out[tag >> 3], pos = read_varint(data, pos)
        else:
            pos = skip(data, pos, tag & 7, end)
    if pos != end:
        raise WireError("unexpected EOF")
    return out


def _len(payload: bytes) -> bytes:
    n = len(payload)
    return (_SMALL[n] if n < 128 else varint(n)) + payload


# ---- special types ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def parse_time(s: str) -> tuple[int, int]:
    """An RFC3339 timestamp -> (Unix seconds, nanoseconds)."""
    m = _RFC3339.match(s)
    if m is None:
        raise ValueError(f"parsing time {s!r} as RFC3339")
    y, mo, d, h, mi, sec, frac, sign, oh, om = m.groups()
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec), 0, 0, 0))
    if sign:
        offset = int(oh) * 3600 + int(om) * 60
        seconds += -offset if sign == "+" else offset
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds, nanos


@functools.lru_cache(maxsize=8192)
def format_time(seconds: int) -> str:
    d = _EPOCH + timedelta(seconds=seconds)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


def format_micro_time(seconds: int, nanos: int) -> str:
    return f"{format_time(seconds)[:-1]}.{nanos // 1000:06d}Z"


def format_duration(ns: int) -> str:
    """Go's time.Duration.String."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1000_000_000:
        for unit, size in (("ns", 1), ("µs", 1000), ("ms", 1000_000)):
            if u < size * 1000:
                return sign + _frac(u, size) + unit
    h, rest = divmod(u, 3600 * 1000_000_000)
    m, rest = divmod(rest, 60 * 1000_000_000)
    out = _frac(rest, 1000_000_000) + "s"
    if h or m:
        out = f"{m}m" + out
    if h:
        out = f"{h}h" + out
    return sign + out


def _frac(v: int, size: int) -> str:
    whole, part = divmod(v, size)
    if not part:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{part:0{digits}d}".rstrip("0")


def parse_duration(s: str) -> int:
    """A Go duration string -> nanoseconds."""
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return 0
    total = 0.0
    pos = 0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos or m.group(1) in ("", "."):
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"time: invalid duration {s!r}")
    return -round(total) if s.startswith("-") else round(total)


def _quantity(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("quantity must be a string or a number")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ---- encoding --------------------------------------------------------------------------------


def encode(msg: Message, obj: dict[str, Any]) -> bytes:
    """The message bytes of a JSON-shaped dict (fields the message lacks are skipped)."""
    out: list[bytes] = []
    append = out.append
    fields = msg.by_name
    if msg.inline_names:
        obj = _fold_inline(msg, obj)
    for key, value in obj.items():
        f = fields.get(key)
        if f is None or value is None:
            continue
        mode = f.mode
        if mode == STR:
            b = value.encode()
            n = len(b)
            append(f.tag)
            append(_SMALL[n] if n < 128 else varint(n))
            append(b)
        elif mode == MSG:
            b = encode(f.msg, value)  # type: ignore[arg-type]
            n = len(b)
            append(f.tag)
            append(_SMALL[n] if n < 128 else varint(n))
            append(b)
        elif mode == INT32 or mode == INT64 or mode == BOOL:
            if type(value) is int and 0 <= value < 128 and mode != BOOL:
                append(f.tag)
                append(_SMALL[value])
            else:
                append(f.tag)
                append(_value(mode, None, value))
        elif mode == REPEATED + MSG:
            tag = f.tag
            sub = f.msg
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            for item in value:
                b = encode(sub, item)  # type: ignore[arg-type]
                n = len(b)
                append(tag)
                append(_SMALL[n] if n < 128 else varint(n))
                append(b)
        elif mode == MAP:
            tag = f.tag
            key_kind = f.key_kind
            value_kind = f.value_kind
            for k in sorted(value):
                v = value[k]
                if key_kind == STR:
                    kb = k.encode()
                    entry = b"\x0a" + _len(kb)
                else:
                    entry = b"\x08" + varint(k)
                if v is not None:
                    if value_kind == STR:
                        entry += b"\x12" + _len(v.encode())
                    else:
                        entry += b"\x12" + _value(value_kind, f.msg, v)
                n = len(entry)
                append(tag)
                append(_SMALL[n] if n < 128 else varint(n))
                append(entry)
        elif mode >= REPEATED:
            tag = f.tag
            kind = f.kind
            sub = f.msg
            if isinstance(value, str | dict):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            for item in value:
                append(tag)
                append(_value(kind, sub, item))
        else:
            append(f.tag)
            append(_value(mode, f.msg, value))
    return b"".join(out)


def _fold_inline(msg: Message, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with the keys of inline fields gathered under those fields."""
    out: dict[str, Any] = {}
    names = msg.inline_names
    for key, value in obj.items():
        f = names.get(key)
        if f is None:
            out[key] = value
        else:
            group = out.get("\0" + f.name)
            if group is None:
                group = out["\0" + f.name] = {}
            group[key] = value
    return out


def _value(kind: int, sub: Message | None, v: Any) -> bytes:
    """One value's encoding after its tag (length prefix included for length-delimited)."""
    if kind == STR:
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {type(v).__name__}")
        return _len(v.encode())
    if kind == MSG:
        assert sub is not None
        if not isinstance(v, dict):
            raise TypeError(f"expected an object, got {type(v).__name__}")
        return _len(encode(sub, v))
    if kind == INT32 or kind == INT64:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise TypeError(f"expected an integer, got {type(v).__name__}")
        return varint(v)
    if kind == BOOL:
        if not isinstance(v, bool):
            raise TypeError(f"expected a boolean, got {type(v).__name__}")
        return b"\x01" if v else b"\x00"
    if kind == TIME or kind == MICROTIME:
        seconds, nanos = parse_time(v)
        inner = b"\x08" + varint(seconds) if seconds else b""
        if kind == MICROTIME and nanos:
            inner += b"\x10" + varint(nanos // 1000 * 1000)
        return _len(inner)
    if kind == QUANTITY:
        return _len(b"\x0a" + _len(_quantity(v).encode()))
    if kind == INTSTR:
        if isinstance(v, str):
            return _len(b"\x08\x01\x10\x00\x1a" + _len(v.encode()))
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("expected an integer or a string")
        return _len(b"\x08\x00\x10" + varint(v) + b"\x1a\x00")
    if kind == BYTES:
        return _len(base64.b64decode(v, validate=True))
    if kind == RAW:
        return _len(b"\x0a" + _len(orjson.dumps(v)))
    if kind == SLICE:
        return _len(b"".join(b"\x0a" + _len(s.encode()) for s in v))
    if kind == DURATION:
        return _len(b"\x08" + varint(parse_duration(v)))
    if kind == DOUBLE:
        return struct.pack("<d", float(v))
    raise TypeError(f"unknown field kind {kind}")
