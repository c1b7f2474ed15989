"""The etcd backend's pure parts: the protobuf wire codec of the etcd v3 messages (requests
encode to the published field numbers; responses decode, skipping unknown fields), the prefix
range end, and the URL factory for `etcd://` and `etcds://`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kybern.storage import etcd_wire as wire
from kybern.storage import open_backend
from kybern.storage.etcd import EtcdBackend, bytes_prefix_end
from kybern.storage.factory import etcd_endpoints


def msg(*fields: bytes) -> bytes:
    return b"".join(fields)


def test_range_request_fields() -> None:
    data = wire.range_request(b"/a", b"/b", limit=5, revision=300, keys_only=True)
    assert wire.fields(data) == [(1, b"/a"), (2, b"/b"), (3, 5), (4, 300), (8, 1)]
    assert wire.range_request(b"k") == b"\x0a\x01k"  # zero values are left out


def test_compare_writes_zero_revisions() -> None:
    """`create_revision == 0` must reach etcd: the oneof member is written even when 0."""
    data = wire.compare(b"k", wire.TARGET_CREATE, wire.EQUAL, 0)
    assert wire.fields(data) == [(2, wire.TARGET_CREATE), (3, b"k"), (5, 0)]
    mod = wire.compare(b"k", wire.TARGET_MOD, wire.EQUAL, 7)
    assert wire.fields(mod) == [(2, wire.TARGET_MOD), (3, b"k"), (6, 7)]


def test_txn_and_watch_requests() -> None:
    txn = wire.txn_request(
        [wire.compare(b"k", wire.TARGET_VERSION, wire.GREATER, 0)],
        [wire.op_put(wire.put_request(b"k", b"v"))],
        [wire.op_range(wire.range_request(b"k"))],
    )
    parts = wire.fields(txn)
    assert [n for n, _ in parts] == [1, 2, 3]
    put = wire.fields(parts[1][1])  # type: ignore[arg-type]
    assert put == [(2, wire.put_request(b"k", b"v"))]
    create = wire.fields(wire.watch_create(b"/r/", b"/r0", 10, prev_kv=True, progress_notify=True))
    assert create[0][0] == 1
    assert wire.fields(create[0][1]) == [(1, b"/r/"), (2, b"/r0"), (3, 10), (4, 1), (6, 1)]  # type: ignore[arg-type]
    assert wire.watch_progress() == b"\x1a\x00"


def _kv(key: bytes, value: bytes, create: int, mod: int, version: int) -> bytes:
    return msg(
        wire.f_bytes(1, key),
        wire.f_int(2, create),
        wire.f_int(3, mod),
        wire.f_int(4, version),
        wire.f_bytes(5, value),
    )


def test_decode_responses() -> None:
    header = msg(wire.f_int(1, 9), wire.f_int(3, 42), wire.f_int(4, 2))
    kv = _kv(b"/k", b"v", 3, 40, 2)
    unknown = wire.f_bytes(99, b"future field") + wire.f_int(98, 1)
    rng = wire.range_response(
        msg(
            wire.f_bytes(1, header),
            wire.f_bytes(2, kv),
            wire.f_int(3, 1),
            wire.f_int(4, 7),
            unknown,
        )
    )
    assert rng.header.revision == 42 and rng.more and rng.count == 7
    assert rng.kvs == [wire.KV(b"/k", 3, 40, 2, b"v", 0)]
    event = msg(
        wire.f_int(1, wire.EVENT_DELETE),
        wire.f_bytes(2, _kv(b"/k", b"", 0, 43, 0)),
        wire.f_bytes(3, kv),
    )
    watch = wire.watch_response(
        msg(wire.f_bytes(1, header), wire.f_int(2, 5), wire.f_bytes(11, event), unknown)
    )
    assert watch.watch_id == 5 and not watch.created and len(watch.events) == 1
    ev = watch.events[0]
    assert ev.type == wire.EVENT_DELETE and ev.kv.mod_revision == 43
    assert ev.prev_kv is not None and ev.prev_kv.value == b"v"
    txn = wire.txn_response(
        msg(
            wire.f_bytes(1, header),
            wire.f_bytes(3, wire.f_bytes(2, wire.f_bytes(1, header))),  # a put's response
            wire.f_bytes(3, wire.f_bytes(1, msg(wire.f_bytes(1, header), wire.f_bytes(2, kv)))),
        )
    )
    assert not txn.succeeded and isinstance(txn.responses[0], wire.Header)
    assert isinstance(txn.responses[1], wire.RangeResponse) and txn.responses[1].kvs[0].key == b"/k"
    canceled = wire.watch_response(msg(wire.f_int(4, 1), wire.f_int(5, 17)))
    assert canceled.canceled and canceled.compact_revision == 17
    with pytest.raises(wire.WireError):
        wire.range_response(b"\x0a\x05ab")  # truncated


def test_negative_int64_round_trip() -> None:
    data = wire.f_int(3, -1)
    assert len(data) == 11  # ten bytes of varint, as Go writes it
    assert wire.header(data).revision == -1


def test_prefix_end() -> None:
    assert bytes_prefix_end(b"/registry/") == b"/registry0"
    assert bytes_prefix_end(b"a\xff") == b"b"
    assert bytes_prefix_end(b"\xff\xff") == b"\0"  # no bound


def test_open_backend_etcd_urls(tmp_path: Path) -> None:
    b = open_backend("etcd://127.0.0.1:1,127.0.0.2:2?prefix=/k")
    assert isinstance(b, EtcdBackend) and b.endpoints == ["127.0.0.1:1", "127.0.0.2:2"]
    assert etcd_endpoints("etcd://h") == ["h:2379"]
    assert etcd_endpoints("etcd://[::1]:4000") == ["[::1]:4000"]
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert isinstance(open_backend("etcds://h:1", etcd_cafile=str(ca)), EtcdBackend)
    for bad in ("etcd://", "etcd://h:x", "etcd://h/path", "etcd://h?prefix=k"):
        with pytest.raises(ValueError):
            open_backend(bad)
    with pytest.raises(ValueError):
        open_backend("etcd://h:1", etcd_cafile=str(ca))  # TLS files need etcds://
    with pytest.raises(ValueError):
        open_backend("etcds://h:1", etcd_certfile=str(ca))  # a certificate needs its key
