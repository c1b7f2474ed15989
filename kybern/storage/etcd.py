"""The distributed store: the storage contract on a real etcd v3 cluster, as kube-apiserver uses
it. Writes are transactions comparing `mod_revision` (create: `create_revision == 0`), lists are
ranges at a revision (a consistent snapshot) sorted by key, and subscribers are fed by ONE etcd
watch on the watched prefix (`/registry/`) with `prev_kv` and progress notifications, resumed
from the last delivered revision on another member when a member fails. A write is answered
once its event has been delivered to the subscribers (as with SQLite, so `current_revision()`
is never behind an acknowledged write), and `latest_revision` makes a read consistent with
writes made through other API servers: a quorum read of etcd's revision, then a wait until the
watch has delivered everything up to it (if the newest revisions are outside the watched range,
e.g. another program's keys, a write to a fence key inside it ends the wait). `events_since`
replays history with a watch from a past revision; compaction runs on a schedule like
kube-apiserver's (every 5 minutes, to the revision seen 5 minutes earlier, coordinated between
API servers by a compare-and-swap on a key). Errors: a compacted revision raises
`CompactedError`; no quorum, unreachable members or a write whose outcome is unknown raise
`UnavailableError` (HTTP 503)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import grpc
import grpc.aio

from kybern.storage import etcd_wire as wire
from kybern.storage.etcd_client import (
    CompactedRevisionError,
    EtcdClient,
    FutureRevisionError,
    TlsFiles,
)
from kybern.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    KeyValue,
    ListResult,
    NotFoundError,
    StorageError,
    UnavailableError,
    WatchCallback,
)

log = logging.getLogger(__name__)

INTERNAL = "-/"  # kybern's own keys, under the watched prefix: /registry/-/...
FENCE_KEY = INTERNAL + "fence"
COMPACT_KEY = INTERNAL + "compact_rev_key"
_START_TIMEOUT = 30.0  # how long `start` waits for the cluster to answer


def bytes_prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for all keys starting with `prefix` (b"\\0": no upper bound)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


class EtcdBackend:
    """See the module docstring. `endpoints` are `host:port` of members; `key_prefix` is put in
    front of every key (several clusters, or tests, sharing one etcd); `watch_prefix` is the
    subscribed range (writes outside it are not delivered to subscribers). `timeout` bounds
    each request; `compact_interval` (0: off) is the automatic compaction period."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: TlsFiles | None = None,
        key_prefix: str = "",
        watch_prefix: str = "/registry/",
        compact_interval: float = 300.0,
        timeout: float = 5.0,
        fence_after: float = 0.25,
    ) -> None:
        self.endpoints = list(endpoints)
        self._client = EtcdClient(endpoints, tls=tls, timeout=timeout)
        self._kp = key_prefix.encode()
        self._watch_prefix = watch_prefix
        self._watch_key = self._kp + watch_prefix.encode()
        self._watch_end = bytes_prefix_end(self._watch_key)
        self._compact_interval = compact_interval
        self._timeout = timeout
        self._fence_after = fence_after
        self._subscribers: list[WatchCallback] = []
        self._revision = 0  # every watched event up to here has been delivered
        self._visible = 0  # newest revision subscribers were told of (start, or an event)
        self._last_event: int | None = None  # newest watched event delivered (None: unknown)
        self._start = 0  # etcd's revision when the subscription started
        self._compact_rev = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._compact_task: asyncio.Task[None] | None = None
        self._watch_created: asyncio.Future[None] | None = None
        self._fence_task: asyncio.Task[int] | None = None
        self._pending_read: asyncio.Future[int] | None = None  # the next shared quorum read
        self._reader: asyncio.Task[None] | None = None
        self.watch_error = ""  # why the subscription is down right now ("" when it is up)
        self._broken = ""  # set when the subscription lost events it cannot replay
        self._started = False
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        await self._client.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                head = await self._quorum_revision()
                break
            except UnavailableError as e:
                if time.monotonic() > deadline:
                    await self._client.close()
                    raise UnavailableError(f"etcd at {','.join(self.endpoints)}: {e}") from e
                await asyncio.sleep(0.2)
        self._revision = self._visible = self._start = head
        with contextlib.suppress(StorageError):
            self._compact_rev = await self._probe_compaction()
        self._watch_created = loop.create_future()
        self._watch_task = asyncio.create_task(self._watch_main(head + 1))
        self._started = True
        try:
            await asyncio.wait_for(asyncio.shield(self._watch_created), _START_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise UnavailableError(f"etcd: cannot open a watch: {self.watch_error}") from None
        if self._compact_interval > 0:
            self._compact_task = asyncio.create_task(self._auto_compact())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._watch_task, self._compact_task, self._fence_task, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(UnavailableError("store is closed"))
        self._waiters.clear()
        await self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("store is closed")
        if not self._started:
            raise UnavailableError("store is not started")

    def current_revision(self) -> int:
        return self._revision

    def compact_revision(self) -> int:
        return self._compact_rev

    def subscribe(self, callback: WatchCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # ---- revisions -------------------------------------------------------------------------

    async def _quorum_revision(self, timeout: float | None = None) -> int:
        """etcd's current revision by a linearizable (quorum) read of one key."""
        resp = await self._client.range(
            wire.range_request(self._watch_key, keys_only=True), timeout=timeout
        )
        return resp.header.revision

    def _fresh_revision(self) -> asyncio.Future[int]:
        """etcd's revision by a quorum read that starts after this call. Callers that arrive
        while a read is in flight share the next one (as etcd batches ReadIndex requests), so
        a busy server makes one quorum read per round trip, not one per request."""
        if self._pending_read is None:
            self._pending_read = asyncio.get_running_loop().create_future()
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_loop())
        return self._pending_read

    async def _read_loop(self) -> None:
        while self._pending_read is not None:
            fut, self._pending_read = self._pending_read, None
            try:
                rev = await self._quorum_revision()
            except Exception as e:
                if not fut.done():
                    fut.set_exception(e)
                    fut.exception()  # retrieved here: a caller may have gone away
            else:
                if not fut.done():
                    fut.set_result(rev)

    async def latest_revision(self) -> int:
        """A revision a consistent read must wait for: etcd's revision now (a quorum read), or
        the newest watched event before it, once the watch has delivered everything up to it."""
        self._check_open()
        head = await asyncio.shield(self._fresh_revision())
        if self._broken:
            raise UnavailableError(self._broken)
        if head > self._revision and not await self._wait_seen(head, self._fence_after):
            fenced = await self._fence()
            if not await self._wait_seen(fenced, self._timeout):
                raise UnavailableError(f"etcd watch is behind: {self.watch_error or 'slow'}")
        return min(head, self._visible)

    async def _wait_seen(self, revision: int, timeout: float) -> bool:
        if revision <= self._revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (revision, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _advance(self, revision: int) -> None:
        if revision <= self._revision:
            return
        self._revision = revision
        if self._waiters:
            for rev, fut in self._waiters:
                if rev <= revision and not fut.done():
                    fut.set_result(None)

    async def _fence(self) -> int:
        """Write the fence key (inside the watched range); its revision. One at a time."""
        if self._fence_task is None or self._fence_task.done():
            self._fence_task = asyncio.create_task(self._write_fence())
        return await asyncio.shield(self._fence_task)

    async def _write_fence(self) -> int:
        key = self._kp + (self._watch_prefix + FENCE_KEY).encode()
        header = await self._client.put(key, str(time.time()).encode())
        return header.revision

    # ---- the subscription ----------------------------------------------------------------

    def _event(self, ev: wire.WatchEvent) -> Event:
        key = ev.kv.key[len(self._kp) :].decode()
        prev = ev.prev_kv
        prev_kv = (
            None
            if prev is None
            else KeyValue(key, prev.value, prev.create_revision, prev.mod_revision)
        )
        if ev.type == wire.EVENT_DELETE:
            value = b"" if prev is None else prev.value
            created = 0 if prev is None else prev.create_revision
            return Event(
                EventType.DELETE, KeyValue(key, value, created, ev.kv.mod_revision), prev_kv
            )
        kv = KeyValue(key, ev.kv.value, ev.kv.create_revision, ev.kv.mod_revision)
        return Event(EventType.PUT, kv, None if ev.kv.version == 1 else prev_kv)

    def _deliver(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kv.key == self._watch_prefix + COMPACT_KEY and ev.type is EventType.PUT:
                with contextlib.suppress(ValueError):
                    self._compact_rev = max(self._compact_rev, int(ev.kv.value or b"0"))
        for callback in list(self._subscribers):
            try:
                callback(events)
            except Exception:
                log.exception("storage subscriber failed")
        rev = events[-1].kv.mod_revision
        self._last_event = rev
        self._visible = max(self._visible, rev)
        self._advance(rev)

    async def _watch_main(self, start: int) -> None:
        """The one watch feeding the subscribers; reconnects (to another member if needed)
        from the revision after the last one delivered."""
        next_rev = start
        delay = 0.05
        while not self._closed:
            index, call = self._client.watch_call()
            try:
                await call.write(
                    wire.watch_create(
                        self._watch_key,
                        self._watch_end,
                        next_rev,
                        progress_notify=True,
                        prev_kv=True,
                    )
                )
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        raise ConnectionError("watch stream ended")
                    resp = wire.watch_response(msg)
                    if resp.created and not resp.canceled:
                        self.watch_error = ""
                        delay = 0.05
                        if self._watch_created is not None and not self._watch_created.done():
                            self._watch_created.set_result(None)
                        continue
                    if resp.compact_revision:
                        next_rev = self._lost_history(next_rev, resp.compact_revision)
                        break
                    if resp.canceled:
                        raise ConnectionError(f"watch canceled: {resp.cancel_reason}")
                    if resp.events:
                        events = [self._event(e) for e in resp.events]
                        next_rev = events[-1].kv.mod_revision + 1
                        self._deliver(events)
                    elif resp.header.revision >= next_rev:
                        # a progress notification: etcd sends these to a watcher that has
                        # received everything up to the revision, in order with its events
                        self._advance(resp.header.revision)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except (grpc.aio.AioRpcError, ConnectionError, wire.WireError) as e:
                detail = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                self.watch_error = f"{self._client.endpoints[index]}: {detail}"
                if not self._closed:
                    log.warning("etcd watch interrupted (%s); resuming at %d", detail, next_rev)
                    self._client.failover(index)
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _lost_history(self, wanted: int, compacted: int) -> int:
        self._compact_rev = max(self._compact_rev, compacted)
        self._broken = (
            f"etcd watch lost events {wanted}..{compacted - 1} (compacted while disconnected); "
            "restart this API server"
        )
        log.error("%s", self._broken)
        return compacted

    # ---- reads -----------------------------------------------------------------------------

    def _kv(self, kv: wire.KV) -> KeyValue:
        return KeyValue(
            kv.key[len(self._kp) :].decode(), kv.value, kv.create_revision, kv.mod_revision
        )

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        resp = await self._client.range(wire.range_request(self._kp + key.encode()))
        return self._kv(resp.kvs[0]) if resp.kvs else None

    def _range(self, prefix: str, start_key: str) -> tuple[bytes, bytes]:
        low = self._kp + max(prefix, start_key).encode()
        full = self._kp + prefix.encode()
        return low, bytes_prefix_end(full) if full else b"\0"

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """Revision 0 reads at `current_revision()` (consistent with the subscription: what
        comes after it is exactly what the subscribers get next); a future revision reads
        at the newest one."""
        self._check_open()
        at = revision if revision > 0 else self._revision
        key, end = self._range(prefix, start_key)
        try:
            resp = await self._client.range(wire.range_request(key, end, limit=limit, revision=at))
        except FutureRevisionError:
            resp = await self._client.range(wire.range_request(key, end, limit=limit))
            at = resp.header.revision
        except CompactedRevisionError:
            if revision > 0:
                raise CompactedError(revision, await self._compacted_at(revision)) from None
            resp = await self._client.range(wire.range_request(key, end, limit=limit))
            at = resp.header.revision
        return ListResult([self._kv(kv) for kv in resp.kvs], at, resp.more)

    async def _probe_compaction(self) -> int:
        """etcd's compact revision: 0 if revision 1 is still readable, else what a watch from
        revision 1 is told."""
        try:
            await self._client.range(wire.range_request(self._watch_key, revision=1))
            return 0
        except CompactedRevisionError:
            return await self._client.watch_compaction(self._watch_key, b"", 1, self._timeout)

    async def _compacted_at(self, revision: int) -> int:
        """The compact revision, learnt from etcd when ours is not past `revision`."""
        if self._compact_rev <= revision:
            learnt = await self._client.watch_compaction(
                self._watch_key, b"", max(revision, 1), self._timeout
            )
            self._compact_rev = max(self._compact_rev, learnt)
        return max(self._compact_rev, revision + 1)

    async def events_since(self, prefix: str, revision: int) -> builtins.list[Event]:
        """Replays history with a watch over the watched range from `revision + 1` (filtered
        to `prefix`) up to the newest watched event delivered when called: etcd has no history
        range, and a watch on `prefix` alone could not tell when it has caught up."""
        self._check_open()
        if not prefix.startswith(self._watch_prefix) and not self._watch_prefix.startswith(prefix):
            raise StorageError(f"{prefix!r} is outside the watched prefix {self._watch_prefix!r}")
        if revision < self._compact_rev:
            raise CompactedError(revision, self._compact_rev)
        target = self._last_event
        if target is None and revision >= self._start:
            return []  # every watched event after the start would have been delivered
        if target is None:  # history from before the start: make an event to stop at
            target = await self._fence()
            if not await self._wait_seen(target, self._timeout):
                raise UnavailableError(f"etcd watch is behind: {self.watch_error or 'slow'}")
        if revision >= target:
            return []
        try:
            history = await self._client.replay(
                self._watch_key, self._watch_end, revision + 1, target, self._timeout
            )
        except CompactedRevisionError as e:
            self._compact_rev = max(self._compact_rev, e.compact_revision)
            raise CompactedError(revision, e.compact_revision) from None
        low = self._kp + prefix.encode()
        high = bytes_prefix_end(low) if low else None
        return [
            self._event(ev)
            for ev in history
            if ev.kv.key >= low and (high is None or ev.kv.key < high)
        ]

    # ---- writes ----------------------------------------------------------------------------

    def _watched(self, key: str) -> bool:
        return key.startswith(self._watch_prefix)

    async def _settle(self, key: str, revision: int) -> None:
        """Answer a write once the subscribers have its event (bounded: it is committed)."""
        if self._watched(key) and not await self._wait_seen(revision, self._timeout):
            log.warning("etcd watch did not deliver revision %d in time", revision)

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        k = self._kp + key.encode()
        resp = await self._client.txn(
            wire.txn_request(
                [wire.compare(k, wire.TARGET_CREATE, wire.EQUAL, 0)],
                [wire.op_put(wire.put_request(k, bytes(value)))],
                [],
            )
        )
        if not resp.succeeded:
            raise KeyExistsError(key)
        rev = resp.header.revision
        await self._settle(key, rev)
        return KeyValue(key, bytes(value), rev, rev)

    def _guard(self, k: bytes, expected: int) -> bytes:
        if expected:
            return wire.compare(k, wire.TARGET_MOD, wire.EQUAL, expected)
        return wire.compare(k, wire.TARGET_VERSION, wire.GREATER, 0)  # exists

    def _failed(self, key: str, resp: wire.TxnResponse) -> StorageError:
        current = resp.responses[0] if resp.responses else None
        if not isinstance(current, wire.RangeResponse) or not current.kvs:
            return NotFoundError(key)
        return ConflictError(key, self._kv(current.kvs[0]))

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        self._check_open()
        k = self._kp + key.encode()
        read = wire.op_range(wire.range_request(k))
        resp = await self._client.txn(
            wire.txn_request(
                [self._guard(k, expected_revision)],
                [wire.op_put(wire.put_request(k, bytes(value))), read],
                [read],
            )
        )
        if not resp.succeeded:
            raise self._failed(key, resp)
        written = resp.responses[1]
        assert isinstance(written, wire.RangeResponse) and written.kvs
        kv = self._kv(written.kvs[0])
        await self._settle(key, kv.mod_revision)
        return kv

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        self._check_open()
        k = self._kp + key.encode()
        read = wire.op_range(wire.range_request(k))
        resp = await self._client.txn(
            wire.txn_request(
                [self._guard(k, expected_revision)],
                [read, wire.op_delete(wire.delete_range_request(k))],
                [read],
            )
        )
        if not resp.succeeded:
            raise self._failed(key, resp)
        last = resp.responses[0]
        assert isinstance(last, wire.RangeResponse) and last.kvs
        rev = resp.header.revision
        await self._settle(key, rev)
        return KeyValue(key, last.kvs[0].value, last.kvs[0].create_revision, rev)

    # ---- compaction ------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Compact etcd (the whole keyspace) to `revision`, clamped to the current revision."""
        self._check_open()
        target = min(revision, self._revision)
        if target <= self._compact_rev:
            return
        with contextlib.suppress(CompactedRevisionError):  # someone compacted further already
            await self._client.compact(target)
        self._compact_rev = max(self._compact_rev, target)

    async def _auto_compact(self) -> None:
        """kube-apiserver's compactor: every interval, a compare-and-swap on the version of the
        compact key elects one API server, which compacts to the revision the previous round
        saw; the others learn the new version and wait for the next round."""
        key = self._kp + (self._watch_prefix + COMPACT_KEY).encode()
        version, seen = 0, 0
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                resp = await self._client.txn(
                    wire.txn_request(
                        [wire.compare(key, wire.TARGET_VERSION, wire.EQUAL, version)],
                        [wire.op_put(wire.put_request(key, str(seen).encode()))],
                        [wire.op_range(wire.range_request(key))],
                    )
                )
                previous, seen = seen, resp.header.revision
                if not resp.succeeded:
                    got = resp.responses[0] if resp.responses else None
                    if isinstance(got, wire.RangeResponse) and got.kvs:
                        version = got.kvs[0].version
                    continue
                version += 1
                if previous > self._compact_rev:
                    log.info("compacting etcd to revision %d", previous)
                    await self.compact(previous)
            except StorageError as e:
                log.warning("etcd compaction round failed: %s", e)
