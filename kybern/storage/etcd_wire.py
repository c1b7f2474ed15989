"""The protobuf wire format of the part of etcd's v3 API the etcd backend uses, written from the
published field numbers of `etcdserverpb` (rpc.proto) and `mvccpb` (kv.proto): encoders for
RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest (with Compare and RequestOp),
CompactionRequest, StatusRequest and WatchRequest (create, cancel, progress), and decoders for
their responses into small dataclasses. Requests go to grpcio as bytes and responses come back
as bytes, so no protobuf runtime or generated code is needed; unknown fields are skipped, as
protobuf requires, so newer etcd versions decode unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

# gRPC method paths (package etcdserverpb)
RANGE = "/etcdserverpb.KV/Range"
PUT = "/etcdserverpb.KV/Put"
DELETE_RANGE = "/etcdserverpb.KV/DeleteRange"
TXN = "/etcdserverpb.KV/Txn"
COMPACT = "/etcdserverpb.KV/Compact"
WATCH = "/etcdserverpb.Watch/Watch"
STATUS = "/etcdserverpb.Maintenance/Status"

# Compare.CompareResult and Compare.CompareTarget
EQUAL, GREATER, LESS, NOT_EQUAL = 0, 1, 2, 3
TARGET_VERSION, TARGET_CREATE, TARGET_MOD, TARGET_VALUE = 0, 1, 2, 3
# RangeRequest.SortOrder and SortTarget
SORT_NONE, SORT_ASCEND, SORT_DESCEND = 0, 1, 2
SORT_KEY, SORT_VERSION, SORT_CREATE, SORT_MOD = 0, 1, 2, 3
# mvccpb.Event.EventType
EVENT_PUT, EVENT_DELETE = 0, 1

_MASK64 = (1 << 64) - 1


class WireError(ValueError):
    """Bytes that are not a valid encoding."""


# ---- encoding ----------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= _MASK64  # negative int64 values take ten bytes, as in Go
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def f_int(num: int, value: int) -> bytes:
    """A varint field (int64, bool, enum); zero values are omitted (proto3)."""
    return _tag(num, 0) + _varint(int(value)) if value else b""


def f_bytes(num: int, value: bytes, *, always: bool = False) -> bytes:
    """A length-delimited field; empty values are omitted unless `always` (sub-messages)."""
    if not value and not always:
        return b""
    return _tag(num, 2) + _varint(len(value)) + value


def range_request(
    key: bytes,
    range_end: bytes = b"",
    *,
    limit: int = 0,
    revision: int = 0,
    sort_order: int = SORT_NONE,
    sort_target: int = SORT_KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
) -> bytes:
    return b"".join(
        (
            f_bytes(1, key),
            f_bytes(2, range_end),
            f_int(3, limit),
            f_int(4, revision),
            f_int(5, sort_order),
            f_int(6, sort_target),
            f_int(7, serializable),
            f_int(8, keys_only),
            f_int(9, count_only),
        )
    )


def put_request(key: bytes, value: bytes, *, prev_kv: bool = False) -> bytes:
    return f_bytes(1, key) + f_bytes(2, value) + f_int(4, prev_kv)


def delete_range_request(key: bytes, range_end: bytes = b"", *, prev_kv: bool = False) -> bytes:
    return f_bytes(1, key) + f_bytes(2, range_end) + f_int(3, prev_kv)


def compare(key: bytes, target: int, result: int, value: int) -> bytes:
    """Compare on VERSION, CREATE or MOD (the `target_union` field follows the target)."""
    union = {TARGET_VERSION: 4, TARGET_CREATE: 5, TARGET_MOD: 6}[target]
    # the union member is written even when 0: "create_revision == 0" must reach the server
    return f_int(1, result) + f_int(2, target) + f_bytes(3, key) + _tag(union, 0) + _varint(value)


def op_range(request: bytes) -> bytes:
    return f_bytes(1, request, always=True)


def op_put(request: bytes) -> bytes:
    return f_bytes(2, request, always=True)


def op_delete(request: bytes) -> bytes:
    return f_bytes(3, request, always=True)


def txn_request(compares: list[bytes], success: list[bytes], failure: list[bytes]) -> bytes:
    parts = [f_bytes(1, c, always=True) for c in compares]
    parts += [f_bytes(2, op, always=True) for op in success]
    parts += [f_bytes(3, op, always=True) for op in failure]
    return b"".join(parts)


def compaction_request(revision: int, *, physical: bool = False) -> bytes:
    return f_int(1, revision) + f_int(2, physical)


def watch_create(
    key: bytes,
    range_end: bytes,
    start_revision: int,
    *,
    progress_notify: bool = False,
    prev_kv: bool = False,
    watch_id: int = 0,
) -> bytes:
    create = b"".join(
        (
            f_bytes(1, key),
            f_bytes(2, range_end),
            f_int(3, start_revision),
            f_int(4, progress_notify),
            f_int(6, prev_kv),
            f_int(7, watch_id),
        )
    )
    return f_bytes(1, create, always=True)


def watch_cancel(watch_id: int) -> bytes:
    return f_bytes(2, f_int(1, watch_id), always=True)


def watch_progress() -> bytes:
    return f_bytes(3, b"", always=True)


# ---- decoding ----------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one message: ints for varints, bytes for
    length-delimited fields; fixed-width fields are skipped (etcd uses none we read)."""
    out: list[tuple[int, int | bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = _read_varint(data, pos)
            out.append((num, v))
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            if pos + n > end:
                raise WireError("truncated field")
            out.append((num, data[pos : pos + n]))
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
    if pos != end:
        raise WireError("truncated message")
    return out


@dataclass(slots=True)
class Header:
    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@dataclass(slots=True)
class KV:
    key: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


@dataclass(slots=True)
class RangeResponse:
    header: Header
    kvs: list[KV] = field(default_factory=list)
    more: bool = False
    count: int = 0


@dataclass(slots=True)
class TxnResponse:
    header: Header
    succeeded: bool = False
    responses: list[RangeResponse | Header] = field(default_factory=list)


@dataclass(slots=True)
class WatchEvent:
    type: int
    kv: KV
    prev_kv: KV | None


@dataclass(slots=True)
class WatchResponse:
    header: Header
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False
    events: list[WatchEvent] = field(default_factory=list)


@dataclass(slots=True)
class StatusResponse:
    header: Header
    version: str = ""
    db_size: int = 0
    leader: int = 0
    raft_index: int = 0
    raft_term: int = 0
    errors: list[str] = field(default_factory=list)


def header(data: bytes) -> Header:
    h = Header()
    for num, v in fields(data):
        if isinstance(v, int):
            if num == 1:
                h.cluster_id = v
            elif num == 2:
                h.member_id = v
            elif num == 3:
                h.revision = _int64(v)
            elif num == 4:
                h.raft_term = v
    return h


def key_value(data: bytes) -> KV:
    kv = KV()
    for num, v in fields(data):
        if isinstance(v, bytes):
            if num == 1:
                kv.key = v
            elif num == 5:
                kv.value = v
        elif num == 2:
            kv.create_revision = _int64(v)
        elif num == 3:
            kv.mod_revision = _int64(v)
        elif num == 4:
            kv.version = _int64(v)
        elif num == 6:
            kv.lease = _int64(v)
    return kv


def _header_of(data: bytes) -> Header:
    for num, v in fields(data):
        if num == 1 and isinstance(v, bytes):
            return header(v)
    return Header()


def range_response(data: bytes) -> RangeResponse:
    resp = RangeResponse(Header())
    for num, v in fields(data):
        if isinstance(v, bytes):
            if num == 1:
                resp.header = header(v)
            elif num == 2:
                resp.kvs.append(key_value(v))
        elif num == 3:
            resp.more = bool(v)
        elif num == 4:
            resp.count = _int64(v)
    return resp


def response_header(data: bytes) -> Header:
    """The header of a Put, DeleteRange or Compaction response."""
    return _header_of(data)


def txn_response(data: bytes) -> TxnResponse:
    """Range results come back as RangeResponse; put/delete results as their Header."""
    resp = TxnResponse(Header())
    for num, v in fields(data):
        if num == 1 and isinstance(v, bytes):
            resp.header = header(v)
        elif num == 2 and isinstance(v, int):
            resp.succeeded = bool(v)
        elif num == 3 and isinstance(v, bytes):
            for onum, ov in fields(v):
                if not isinstance(ov, bytes):
                    continue
                if onum == 1:
                    resp.responses.append(range_response(ov))
                else:
                    resp.responses.append(_header_of(ov))
    return resp


def _event(data: bytes) -> WatchEvent:
    ev = WatchEvent(EVENT_PUT, KV(), None)
    for num, v in fields(data):
        if num == 1 and isinstance(v, int):
            ev.type = v
        elif num == 2 and isinstance(v, bytes):
            ev.kv = key_value(v)
        elif num == 3 and isinstance(v, bytes):
            ev.prev_kv = key_value(v)
    return ev


def watch_response(data: bytes) -> WatchResponse:
    resp = WatchResponse(Header())
    for num, v in fields(data):
        if isinstance(v, bytes):
            if num == 1:
                resp.header = header(v)
            elif num == 6:
                resp.cancel_reason = v.decode("utf-8", "replace")
            elif num == 11:
                resp.events.append(_event(v))
        elif num == 2:
            resp.watch_id = _int64(v)
        elif num == 3:
            resp.created = bool(v)
        elif num == 4:
            resp.canceled = bool(v)
        elif num == 5:
            resp.compact_revision = _int64(v)
        elif num == 7:
            resp.fragment = bool(v)
    return resp


def status_response(data: bytes) -> StatusResponse:
    resp = StatusResponse(Header())
    for num, v in fields(data):
        if isinstance(v, bytes):
            if num == 1:
                resp.header = header(v)
            elif num == 2:
                resp.version = v.decode("utf-8", "replace")
            elif num == 8:
                resp.errors.append(v.decode("utf-8", "replace"))
        elif num == 3:
            resp.db_size = _int64(v)
        elif num == 4:
            resp.leader = v
        elif num == 5:
            resp.raft_index = v
        elif num == 6:
            resp.raft_term = v
    return resp
