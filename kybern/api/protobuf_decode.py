"""The protobuf decoder of Kubernetes objects: `decode` turns message bytes into the dict that
kube-apiserver's Go structs would print as JSON. Go writes every field that is not a pointer,
so zero values of non-pointer optional fields are dropped (their JSON tags say `omitempty`),
while pointer fields and required fields (no `omitempty`) keep them; the zero Time and an
empty RawExtension decode to null, as Go prints them; absent required lists and maps decode
empty; unknown fields are skipped; malformed bytes raise `WireError`."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from kybern.api.protobuf_wire import (
    BOOL,
    BYTES,
    DOUBLE,
    DURATION,
    INT32,
    INT64,
    INTSTR,
    MAP,
    MASK64,
    MICROTIME,
    MSG,
    NULL,
    QUANTITY,
    RAW,
    REPEATED,
    SLICE,
    STR,
    TIME,
    Field,
    Message,
    WireError,
    format_duration,
    format_micro_time,
    format_time,
    read_varint,
    skip,
)


def decode(msg: Message, data: bytes, pos: int = 0, end: int = -1) -> dict[str, Any]:
    """The JSON-shaped dict of message bytes data[pos:end]."""
    if end < 0:
        end = len(data)
    out: dict[str, Any] = {}
    by_number = msg.by_number
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        elif pos + 1 < end and data[pos + 1] < 0x80:  # field numbers 16..2047
            tag = (tag & 0x7F) | data[pos + 1] << 7
            pos += 2
        else:
            tag, pos = read_varint(data, pos)
        f = by_number.get(tag >> 3)
        wire = tag & 7
        if f is None:
            pos = skip(data, pos, wire, end)
            continue
        mode = f.mode
        if wire == 2:
            n = data[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = read_varint(data, pos)
            stop = pos + n
            if stop > end:
                raise WireError("unexpected EOF")
            if mode == STR:
                v: Any = data[pos:stop].decode("utf-8", "replace")
                pos = stop
                if v or f.keep_zero:
                    out[f.name] = v
                elif f.name in out:
                    del out[f.name]
                continue
            if mode == MSG:
                v = decode(f.msg, data, pos, stop)  # type: ignore[arg-type]
                pos = stop
                if f.inline:
                    out.update(v)
                else:
                    out[f.name] = v
                continue
            if mode == REPEATED + MSG:
                v = decode(f.msg, data, pos, stop)  # type: ignore[arg-type]
                pos = stop
                items = out.get(f.name)
                if items is None:
                    out[f.name] = [v]
                else:
                    items.append(v)
                continue
            if mode == MAP:
                k, v = _entry(f, data, pos, stop)
                m = out.get(f.name)
                if m is None:
                    m = out[f.name] = {}
                m[k] = v
            elif INT32 <= f.kind <= BOOL:  # packed scalars
                items = out.setdefault(f.name, []) if mode >= REPEATED else None
                while pos < stop:
                    v, pos = read_varint(data, pos)
                    v = _scalar(f.kind, v)
                    if items is not None:
                        items.append(v)
                    else:
                        _set(out, f, v)
                if pos != stop:
                    raise WireError("unexpected EOF")
            elif mode >= REPEATED:
                v = _length_delimited(f.kind, f.msg, data, pos, stop)
                if v is NULL:
                    v = None
                items = out.get(f.name)
                if items is None:
                    out[f.name] = [v]
                else:
                    items.append(v)
            else:
                _set(out, f, _length_delimited(mode, f.msg, data, pos, stop))
            pos = stop
        elif wire == 0 and mode <= BOOL and mode >= INT32:  # a singular scalar
            v = data[pos]
            if v < 0x80:
                pos += 1
                if mode == BOOL:
                    v = v != 0
            else:
                v, pos = read_varint(data, pos)
                v = _scalar(mode, v)
            if v or f.keep_zero:
                out[f.name] = v
            elif f.name in out:
                del out[f.name]
        elif wire == 0:
            if not INT32 <= f.kind <= BOOL:
                raise WireError(f"proto: wrong wireType = 0 for field {f.name}")
            v, pos = read_varint(data, pos)
            v = _scalar(f.kind, v)
            if mode >= REPEATED:
                out.setdefault(f.name, []).append(v)
            else:
                _set(out, f, v)
        elif wire == 1 and f.kind == DOUBLE:
            if pos + 8 > end:
                raise WireError("unexpected EOF")
            v = struct.unpack_from("<d", data, pos)[0]
            pos += 8
            if mode >= REPEATED:
                out.setdefault(f.name, []).append(v)
            else:
                _set(out, f, v)
        else:
            raise WireError(f"proto: wrong wireType = {wire} for field {f.name}")
    if pos != end:
        raise WireError("unexpected EOF")
    for f in msg.required_lists:
        if f.name not in out:
            out[f.name] = {} if f.map else []
    return out


def _scalar(kind: int, v: int) -> Any:
    if kind == BOOL:
        return v != 0
    if kind == INT32:
        v &= 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v
    v &= MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def _set(out: dict[str, Any], f: Field, v: Any) -> None:
    """A singular field's value; a zero value of a non-pointer optional field is dropped, as
    Go's `omitempty` would (the last occurrence on the wire wins)."""
    if v is NULL:
        out[f.name] = None
    elif v is None or (not f.keep_zero and (v == 0 or v == "")):
        if f.name in out:
            del out[f.name]
    elif f.inline:
        out.update(v)
    else:
        out[f.name] = v


def _length_delimited(kind: int, sub: Message | None, data: bytes, pos: int, end: int) -> Any:
    if kind == STR:
        return data[pos:end].decode("utf-8", "replace")
    if kind == MSG:
        assert sub is not None
        return decode(sub, data, pos, end)
    if kind == TIME or kind == MICROTIME:
        seconds, nanos = _two_ints(data, pos, end)
        if not seconds and not nanos:
            return NULL  # the zero time: null in Go's JSON
        if kind == TIME:
            return format_time(seconds)
        return format_micro_time(seconds, nanos)
    if kind == QUANTITY:
        s = _first_bytes(data, pos, end)
        return s.decode("utf-8", "replace") if s else "0"
    if kind == INTSTR:
        typ, ival, sval = 0, 0, b""
        while pos < end:
            tag, pos = read_varint(data, pos)
            if tag == 0x08:
                typ, pos = read_varint(data, pos)
            elif tag == 0x10:
                ival, pos = read_varint(data, pos)
            elif tag == 0x1A:
                n, pos = read_varint(data, pos)
                sval = data[pos : pos + n]
                pos += n
            else:
                pos = skip(data, pos, tag & 7, end)
        if pos != end:
            raise WireError("unexpected EOF")
        return sval.decode("utf-8", "replace") if typ == 1 else _scalar(INT32, ival)
    if kind == BYTES:
        return base64.b64encode(data[pos:end]).decode("ascii")
    if kind == RAW:
        raw = _first_bytes(data, pos, end)
        if not raw:
            return NULL
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise WireError(f"embedded object is not JSON: {e}") from None
    if kind == SLICE:
        items: list[str] = []
        while pos < end:
            tag, pos = read_varint(data, pos)
            if tag != 0x0A:
                pos = skip(data, pos, tag & 7, end)
                continue
            n, pos = read_varint(data, pos)
            items.append(data[pos : pos + n].decode("utf-8", "replace"))
            pos += n
        if pos != end:
            raise WireError("unexpected EOF")
        return items
    if kind == DURATION:
        return format_duration(_scalar(INT64, _two_ints(data, pos, end)[0]))
    raise WireError(f"wrong wireType = 2 for a field of kind {kind}")


def _two_ints(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Varint fields 1 and 2 of a small message (Time, MicroTime, Duration)."""
    a = b = 0
    while pos < end:
        tag, pos = read_varint(data, pos)
        if tag == 0x08:
            a, pos = read_varint(data, pos)
        elif tag == 0x10:
            b, pos = read_varint(data, pos)
        else:
            pos = skip(data, pos, tag & 7, end)
    if pos != end:
        raise WireError("unexpected EOF")
    return _scalar(INT64, a), _scalar(INT32, b)


def _first_bytes(data: bytes, pos: int, end: int) -> bytes:
    """Field 1 (length-delimited) of a small message (Quantity, RawExtension, FieldsV1)."""
    out = b""
    while pos < end:
        tag, pos = read_varint(data, pos)
        if tag == 0x0A:
            n, pos = read_varint(data, pos)
            out = data[pos : pos + n]
            pos += n
        else:
            pos = skip(data, pos, tag & 7, end)
    if pos != end:
        raise WireError("unexpected EOF")
    return out


def _entry(f: Field, data: bytes, pos: int, end: int) -> tuple[Any, Any]:
    """A map entry: key (field 1) and value (field 2), zero values when absent."""
    if f.value_kind == STR and f.key_kind == STR:  # map<string, string>: the usual case
        if end - pos >= 4 and data[pos] == 0x0A and data[pos + 1] < 0x80:
            kend = pos + 2 + data[pos + 1]
            if kend + 2 <= end and data[kend] == 0x12 and kend + 2 + data[kend + 1] == end:
                return (
                    data[pos + 2 : kend].decode("utf-8", "replace"),
                    data[kend + 2 : end].decode("utf-8", "replace"),
                )
    key: Any = "" if f.key_kind == STR else 0
    value: Any = None
    while pos < end:
        tag, pos = read_varint(data, pos)
        if tag == 0x0A and f.key_kind == STR:
            n, pos = read_varint(data, pos)
            key = data[pos : pos + n].decode("utf-8", "replace")
            pos += n
        elif tag == 0x08 and f.key_kind != STR:
            key, pos = read_varint(data, pos)
            key = _scalar(f.key_kind, key)
        elif tag == 0x12:
            n, pos = read_varint(data, pos)
            value = _length_delimited(f.value_kind, f.msg, data, pos, pos + n)
            if value is NULL:
                value = None
            pos += n
        elif tag == 0x10 and f.value_kind in (INT32, INT64, BOOL):
            value, pos = read_varint(data, pos)
            value = _scalar(f.value_kind, value)
        else:
            pos = skip(data, pos, tag & 7, end)
    if pos != end:
        raise WireError("unexpected EOF")
    if value is None:
        value = _ZERO.get(f.value_kind)
        if f.value_kind == MSG:
            value = {}
    return key, value


_ZERO: dict[int, Any] = {
    STR: "",
    BYTES: "",
    INT32: 0,
    INT64: 0,
    BOOL: False,
    QUANTITY: "0",
    SLICE: [],
}
