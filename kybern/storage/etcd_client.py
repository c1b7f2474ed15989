"""A small etcd v3 gRPC client over grpcio's asyncio API, for the etcd backend: one channel per
member endpoint (plain or TLS with client certificates), calls that carry etcd's "require a
leader" metadata so a member without quorum answers at once instead of hanging, a deadline on
every call, and failover between members with retries only where they are safe — a read is
retried on the next member until its deadline; a write is retried only when it cannot have
reached etcd's log (the connection was never made, or the member answered "no leader" before
proposing it), otherwise its outcome is unknown and the caller gets `UnavailableError`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from kybern.storage import etcd_wire as wire
from kybern.storage.interface import StorageError, UnavailableError

log = logging.getLogger(__name__)

# etcd answers a request carrying this metadata with "etcdserver: no leader" when the member
# has no leader, rather than queueing it until the server-side timeout
REQUIRE_LEADER = (("hasleader", "true"),)
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),  # etcd's default --grpc-keepalive-min-time is 5 s
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_SAFE_RETRY_WINDOW = 2.5  # seconds a request keeps trying other members (e.g. an election)
# etcd's own messages for errors raised before a request is proposed to the raft log
_NOT_PROPOSED = (
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
)


class CompactedRevisionError(StorageError):
    """etcd: the revision asked for has been compacted (to `compact_revision`, when known)."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class FutureRevisionError(StorageError):
    """etcd: the revision asked for is newer than the store."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for `etcds://`: the CA to verify members with (empty: the system roots) and an
    optional client certificate and key."""

    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _not_sent(err: grpc.aio.AioRpcError) -> bool:
    """True when the request cannot have been proposed: safe to send again anywhere."""
    details = err.details() or ""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return "failed to connect" in details or any(m in details for m in _NOT_PROPOSED)
    return any(m in details for m in _NOT_PROPOSED)


def _transient(err: grpc.aio.AioRpcError) -> bool:
    """Errors worth trying another member for (reads)."""
    return err.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ) or any(m in (err.details() or "") for m in (*_NOT_PROPOSED, "leader changed"))


def _storage_error(err: grpc.aio.AioRpcError) -> StorageError | None:
    details = err.details() or ""
    if "required revision has been compacted" in details:
        return CompactedRevisionError(details)
    if "required revision is a future revision" in details:
        return FutureRevisionError(details)
    return None


class EtcdClient:
    """Channels to every member and unary calls with failover; `watch_call` opens a Watch
    stream on the member in use. Use from one event loop."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: TlsFiles | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = list(endpoints)
        self.tls = tls
        self.timeout = timeout
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]] = []
        self._current = 0
        self._closed = False

    async def start(self) -> None:
        creds: grpc.ChannelCredentials | None = None
        if self.tls is not None:
            ca, cert, key = await asyncio.gather(
                asyncio.to_thread(_read, self.tls.cafile),
                asyncio.to_thread(_read, self.tls.certfile),
                asyncio.to_thread(_read, self.tls.keyfile),
            )
            creds = grpc.ssl_channel_credentials(ca, key, cert)
        for ep in self.endpoints:
            if creds is None:
                channel = grpc.aio.insecure_channel(ep, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(ep, creds, options=_CHANNEL_OPTIONS)
            self._channels.append(channel)
            self._stubs.append({})

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, []
        await asyncio.gather(*(ch.close(grace=None) for ch in channels), return_exceptions=True)

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    def failover(self, index: int | None = None) -> int:
        """Move to the next member (after `index`, the member that failed); returns the new
        index. Members whose channel is known to be down are skipped when another is usable."""
        start = self._current if index is None else index
        n = len(self._channels)
        for step in range(1, n + 1):
            i = (start + step) % n
            state = self._channels[i].get_state(try_to_connect=True)
            if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE or step == n:
                if index is None or self._current == index:
                    self._current = i
                return self._current
        return self._current

    def channel(self) -> tuple[int, grpc.aio.Channel]:
        if self._closed or not self._channels:
            raise UnavailableError("etcd client is closed")
        return self._current, self._channels[self._current]

    async def call(
        self, method: str, request: bytes, *, write: bool, timeout: float | None = None
    ) -> bytes:
        """One unary call. Reads retry on other members on any transient error; writes only
        when the request was not proposed. Raises UnavailableError (or the mapped etcd error)."""
        total = self.timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + total
        retry_until = min(deadline, start + _SAFE_RETRY_WINDOW)
        delay = 0.02
        last: grpc.aio.AioRpcError | None = None
        while True:
            index, channel = self.channel()
            left = deadline - time.monotonic()
            try:
                stub = self._stubs[index].get(method)
                if stub is None:
                    stub = self._stubs[index][method] = channel.unary_unary(method)
                reply: bytes = await stub(
                    request, timeout=max(left, 0.001), metadata=REQUIRE_LEADER
                )
                return reply
            except grpc.aio.AioRpcError as err:
                mapped = _storage_error(err)
                if mapped is not None:
                    raise mapped from None
                last = err
                retryable = _not_sent(err) if write else _transient(err)
                if err.code() != grpc.StatusCode.CANCELLED or self._closed:
                    self.failover(index)
                if self._closed:
                    raise UnavailableError("etcd client is closed") from None
                if not retryable or time.monotonic() + delay >= retry_until:
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        assert last is not None
        what = "write outcome unknown" if write and not _not_sent(last) else "unavailable"
        raise UnavailableError(
            f"etcd {what}: {last.code().name}: {last.details()} ({self.endpoints[index]})"
        ) from None

    # ---- typed helpers -------------------------------------------------------------------

    async def range(self, request: bytes, *, timeout: float | None = None) -> wire.RangeResponse:
        return wire.range_response(
            await self.call(wire.RANGE, request, write=False, timeout=timeout)
        )

    async def txn(self, request: bytes, *, read_only: bool = False) -> wire.TxnResponse:
        return wire.txn_response(await self.call(wire.TXN, request, write=not read_only))

    async def put(self, key: bytes, value: bytes) -> wire.Header:
        return wire.response_header(
            await self.call(wire.PUT, wire.put_request(key, value), write=True)
        )

    async def compact(self, revision: int) -> wire.Header:
        reply = await self.call(wire.COMPACT, wire.compaction_request(revision), write=True)
        return wire.response_header(reply)

    async def status(self, index: int, timeout: float) -> wire.StatusResponse:
        """Maintenance.Status of one member (no failover)."""
        stub = self._channels[index].unary_unary(wire.STATUS)
        reply: bytes = await stub(b"", timeout=timeout)
        return wire.status_response(reply)

    def watch_call(self) -> tuple[int, grpc.aio.StreamStreamCall[bytes, bytes]]:
        """A new Watch stream on the member in use (requires a leader: a member that loses
        its leader ends the stream, and the caller reconnects elsewhere)."""
        index, channel = self.channel()
        stream = channel.stream_stream(wire.WATCH)
        return index, stream(metadata=REQUIRE_LEADER)

    async def watch_compaction(
        self, key: bytes, range_end: bytes, start: int, timeout: float
    ) -> int:
        """What a watch from `start` is told about compaction: etcd's compact revision when
        `start` is compacted (etcd has no other API for it), else 0."""
        _, call = self.watch_call()
        try:
            await call.write(wire.watch_create(key, range_end, start))
            async with asyncio.timeout(timeout):
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        return 0
                    resp = wire.watch_response(msg)
                    if resp.compact_revision:
                        return resp.compact_revision
                    if resp.events or resp.canceled:
                        return 0
        except (TimeoutError, grpc.aio.AioRpcError, wire.WireError):
            return 0
        finally:
            call.cancel()

    async def replay(
        self, key: bytes, range_end: bytes, start: int, target: int, timeout: float
    ) -> list[wire.WatchEvent]:
        """Every event in [key, range_end) with a revision from `start` through `target` (which
        must be the revision of an event in that range: etcd's watch never says "caught up"),
        read by a watch with `prev_kv`, resumed on another member after an error until
        `timeout` passes. Raises CompactedRevisionError or UnavailableError."""
        out: list[wire.WatchEvent] = []
        deadline = time.monotonic() + timeout
        while start <= target:
            index, call = self.watch_call()
            try:
                await call.write(wire.watch_create(key, range_end, start, prev_kv=True))
                while start <= target:
                    async with asyncio.timeout(timeout):
                        msg = await call.read()
                    if msg is grpc.aio.EOF:
                        raise ConnectionError("watch stream ended")
                    resp = wire.watch_response(msg)
                    if resp.compact_revision:
                        raise CompactedRevisionError("compacted", resp.compact_revision)
                    if resp.canceled:
                        raise ConnectionError(f"watch canceled: {resp.cancel_reason}")
                    for ev in resp.events:
                        if ev.kv.mod_revision > target:
                            start = target + 1
                            break
                        out.append(ev)
                        start = ev.kv.mod_revision + 1
            except (grpc.aio.AioRpcError, ConnectionError, TimeoutError, wire.WireError) as e:
                self.failover(index)
                if time.monotonic() > deadline:
                    raise UnavailableError(f"etcd history read failed: {e}") from None
            finally:
                call.cancel()
        return out
