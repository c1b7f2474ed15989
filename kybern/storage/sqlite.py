"""The embedded production store: an append-only log in one SQLite file, as kine keeps for k3s.
Every write appends a row `kv(id = revision, name, created, deleted, create_revision,
prev_revision, value)`; the current state is the newest row per key that is not a deletion (a
deletion row stores an empty value: its last value is the row `prev_revision` points at). All
writes go through one writer thread (the loop hands it what was written in one go once per
loop iteration) that commits them in groups (one transaction and one fsync per batch, WAL with
`synchronous=FULL`) and hands each committed batch back to the event loop in
one callback, which feeds the subscribers before it answers the writers; it remembers which keys
exist and the newest rows of recently written ones, so most writes query nothing before their
insert. Reads run on a small thread pool with their own connections, bounded by the revision
the loop has seen. Compaction (automatic and `compact`) runs on the writer thread in chunks,
then frees pages with `incremental_vacuum` and truncates the WAL, so the files stay bounded."""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from kybern.storage.memory import prefix_end

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " created INTEGER NOT NULL, deleted INTEGER NOT NULL, create_revision INTEGER NOT NULL,"
    " prev_revision INTEGER NOT NULL, value BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0)",
)
_SQL_LATEST = (
    "SELECT id, deleted, create_revision, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
)
_SQL_INSERT = (
    "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQL_GET = (
    "SELECT id, deleted, create_revision, value FROM kv"
    " WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1"
)
_SQL_COMPACT_REV = "SELECT value FROM meta WHERE name = 'compact_revision'"
# Newest row per key at or below a revision: a covering scan of the (name, id) index grouped by
# name runs as a co-routine in name order, and CROSS JOIN keeps it the outer loop, so the rows
# stream out sorted and LIMIT stops the scan early (no temp b-tree). `{upper}` is the prefix-end
# bound, or nothing for an empty prefix.
_SQL_LIST = (
    "SELECT k.name, k.value, k.create_revision, k.id FROM"
    " (SELECT name, MAX(id) AS mid FROM kv WHERE name >= :low {upper} AND id <= :rev"
    "  GROUP BY name ORDER BY name) AS m"
    " CROSS JOIN kv AS k ON k.id = m.mid WHERE k.deleted = 0 LIMIT :limit"
)
_SQL_LIVE_KEYS = (
    "SELECT k.name FROM (SELECT name, MAX(id) AS mid FROM kv GROUP BY name) AS m"
    " CROSS JOIN kv AS k ON k.id = m.mid WHERE k.deleted = 0"
)
_SQL_EVENTS = (
    "SELECT k.id, k.name, k.deleted, k.create_revision, k.value, p.id, p.create_revision, p.value"
    " FROM kv AS k LEFT JOIN kv AS p ON p.id = k.prev_revision"
    " WHERE k.id > :after AND k.id <= :rev AND k.name >= :low {upper} ORDER BY k.id"
)
# Compaction of one chunk (lo, hi]: rows superseded by a row in the chunk, then deletions in it.
_SQL_COMPACT_SUPERSEDED = (
    "DELETE FROM kv WHERE id IN"
    " (SELECT prev_revision FROM kv WHERE id > ? AND id <= ? AND prev_revision > 0)"
)
_SQL_COMPACT_DELETIONS = "DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1"
_SQL_SET_COMPACT_REV = "UPDATE meta SET value = ? WHERE name = 'compact_revision'"

_CREATE, _UPDATE, _DELETE = 1, 2, 3
_COMPACT_CHUNK = 2000  # revisions per compaction transaction
_VACUUM_PAGES = 1024  # pages freed per incremental_vacuum step
_MAX_BATCH = 4096  # writes per transaction
_READ_THREADS = 3
_SAMPLE_EVERY = 1.0  # seconds between revision-age samples
_LATEST_BYTES = 32 << 20  # value bytes of the newest rows the writer remembers


# (kind, key, value, expected revision, future): a plain tuple, cheap to make on the loop
_Write = tuple[int, str, bytes, int, asyncio.Future[KeyValue]]


@dataclass(slots=True)
class _Compact:
    target: int
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Stop:
    future: asyncio.Future[None]


_Item = list[_Write] | _Compact | _Stop  # writes arrive in the groups the loop hands over
_Result = tuple[asyncio.Future[Any], Any]  # (future, value or exception)


@dataclass(slots=True)
class _Compaction:
    """Compaction work the writer thread is in the middle of."""

    target: int
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    phase: str = "delete"  # then "vacuum", then "checkpoint"
    freelist: int = -1


def _range_sql(template: str, column: str, high: str | None) -> str:
    return template.format(upper="" if high is None else f"AND {column} < :high")


class SqliteBackend:
    """See the module docstring. `compact_*` tune the automatic compaction: every
    `compact_interval` seconds, compact to the newest revision that is both at least
    `compact_keep_revisions` behind the current one and at least `compact_min_age` seconds old
    (ages are sampled in memory once a second as batches are delivered; revisions from before a
    restart count as written at `start`, so ages are never overestimated)."""

    def __init__(
        self,
        path: str,
        *,
        compact_interval: float = 60.0,
        compact_keep_revisions: int = 1000,
        compact_min_age: float = 300.0,
    ) -> None:
        self._path = path
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep_revisions
        self._compact_min_age = compact_min_age
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # writes made on the loop since the last hand-over to the writer thread: handed over
        # together once the loop has run what is ready (one queue put and one wake of the
        # writer per loop iteration, not one per write)
        self._pending: list[_Write] = []
        self._writer: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._rconns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_rconns: list[sqlite3.Connection] = []
        self._subscribers: list[WatchCallback] = []
        self._revision = 0  # delivered on the loop (read by the loop only)
        self._w_revision = 0  # committed by the writer (writer thread only)
        self._compact_rev = 0  # written by the writer thread after each chunk commits
        # writer thread only: every key that exists, and (mod_revision, create_revision, value)
        # of the newest row of recently written ones, least recently written first: a write
        # needs no query for the row it replaces (`_LATEST_BYTES` of values at most), a
        # create of a new key none at all
        self._live: set[str] = set()
        self._latest: collections.OrderedDict[str, tuple[int, int, bytes]] = (
            collections.OrderedDict()
        )
        self._latest_bytes = 0
        self._incremental_vacuum = False
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._unsampled = 0
        self._auto_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._close_future: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open)
        self._revision = self._w_revision
        self._samples.append((time.monotonic(), self._revision))
        self._readers = concurrent.futures.ThreadPoolExecutor(
            _READ_THREADS, thread_name_prefix="kybern-sqlite-read"
        )
        self._writer = threading.Thread(
            target=self._writer_main, name="kybern-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._started = True
        if self._compact_interval > 0:
            self._auto_task = asyncio.create_task(self._auto_compact())

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
        conn.execute("PRAGMA mmap_size = 268435456")  # 256 MiB
        return conn

    def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(directory, exist_ok=True)
        conn = self._connect()
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA journal_size_limit = 67108864")  # 64 MiB
            conn.execute("PRAGMA wal_autocheckpoint = 1000")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            self._incremental_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            max_id = conn.execute("SELECT max(id) FROM kv").fetchone()[0] or 0
            self._compact_rev = conn.execute(_SQL_COMPACT_REV).fetchone()[0]
            self._w_revision = max(max_id, self._compact_rev)
            self._live = {name for (name,) in conn.execute(_SQL_LIVE_KEYS)}
            conn.execute("PRAGMA busy_timeout = 100")  # only checkpoints ever wait
        except BaseException:
            conn.close()
            raise
        self._wconn = conn
        for _ in range(_READ_THREADS):
            rconn = self._connect()
            rconn.execute("PRAGMA query_only = 1")
            self._all_rconns.append(rconn)
            self._rconns.put(rconn)

    async def close(self) -> None:
        if self._close_future is not None:
            await asyncio.shield(self._close_future)
            return
        loop = asyncio.get_running_loop()
        self._close_future = loop.create_future()
        self._closed = True
        try:
            if self._auto_task is not None:
                self._auto_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._auto_task
            if self._writer is not None:
                stopped: asyncio.Future[None] = loop.create_future()
                self._flush()
                self._queue.put(_Stop(stopped))
                await stopped
                await asyncio.to_thread(self._writer.join)
            if self._readers is not None:
                await asyncio.to_thread(self._readers.shutdown, True)
            for conn in self._all_rconns:
                conn.close()
            self._all_rconns.clear()
        finally:
            self._close_future.set_result(None)

    def current_revision(self) -> int:
        return self._revision

    def compact_revision(self) -> int:
        return self._compact_rev

    async def latest_revision(self) -> int:
        """Writes reach the subscribers before they are answered: nothing to wait for."""
        self._check_open()
        return self.current_revision()

    def subscribe(self, callback: WatchCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _check_open(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise UnavailableError("store is closed")
        if not self._started or self._loop is None:
            raise UnavailableError("store is not started")
        return self._loop

    def _submit(self, kind: int, key: str, value: bytes, expected: int) -> asyncio.Future[KeyValue]:
        """Queue a write for the writer thread; the future is answered once it is committed."""
        loop = self._loop
        if self._closed or not self._started or loop is None:
            self._check_open()  # raises
        assert loop is not None
        future: asyncio.Future[KeyValue] = loop.create_future()
        pending = self._pending
        pending.append((kind, key, value, expected, future))
        if len(pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Hand the pending writes over to the writer thread (on the loop)."""
        pending = self._pending
        if pending:
            self._pending = []
            self._queue.put(pending)

    async def _write(self, kind: int, key: str, value: bytes, expected: int) -> KeyValue:
        return await self._submit(kind, key, value, expected)

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit(_CREATE, key, bytes(value), 0)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        return await self._submit(_UPDATE, key, bytes(value), expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        return await self._write(_DELETE, key, b"", expected_revision)

    async def compact(self, revision: int) -> None:
        """Compact to `revision`, clamped to the current revision (a future one compacts
        everything up to now); at or below the compact revision this does nothing."""
        loop = self._check_open()
        target = min(revision, self._revision)
        if target <= self._compact_rev:
            return
        future: asyncio.Future[None] = loop.create_future()
        self._flush()
        self._queue.put(_Compact(target, future))
        await future

    def _deliver(self, events: list[Event], results: list[_Result]) -> None:
        """On the loop: publish a committed batch, then answer its writers."""
        if events:
            self._revision = events[-1].kv.mod_revision
            now = time.monotonic()
            if now - self._samples[-1][0] >= _SAMPLE_EVERY:
                self._samples.append((now, self._revision))
                self._unsampled = 0
            else:
                self._unsampled = self._revision
            for callback in list(self._subscribers):
                try:
                    callback(events)
                except Exception:
                    log.exception("storage subscriber failed")
        for future, outcome in results:
            if future.done():
                continue
            if outcome.__class__ is KeyValue:
                future.set_result(outcome)
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _post(self, events: list[Event], results: list[_Result]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver, events, results)
        except RuntimeError:  # the loop is gone; nobody is waiting any more
            log.warning("event loop closed; dropping %d storage results", len(results))

    def _writer_main(self) -> None:
        compaction: _Compaction | None = None
        stop: _Stop | None = None
        while stop is None:
            items: list[_Item] = []
            if compaction is None:
                items.append(self._queue.get())
            with contextlib.suppress(queue.Empty):
                while len(items) < _MAX_BATCH:
                    items.append(self._queue.get_nowait())
            writes: list[_Write] = []
            for item in items:
                if isinstance(item, list):
                    writes += item
                elif isinstance(item, _Compact):
                    if compaction is None:
                        compaction = _Compaction(item.target)
                    compaction.target = max(compaction.target, item.target)
                    compaction.futures.append(item.future)
                else:
                    stop = item
            for start in range(0, len(writes), _MAX_BATCH):
                self._commit_batch(writes[start : start + _MAX_BATCH])
            if compaction is not None and stop is None:
                compaction = self._compaction_tick(compaction)
        if compaction is not None:
            closed = UnavailableError("store closed during compaction")
            self._post([], [(f, closed) for f in compaction.futures])
        if self._wconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._wconn.close()
            self._wconn = None
        self._post([], [(stop.future, None)])

    def _rollback(self) -> None:
        assert self._wconn is not None
        if self._wconn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.execute("ROLLBACK")

    def _commit_batch(self, writes: list[_Write]) -> None:
        """Apply `writes` in one transaction; each fails on its own (exists/not found/conflict)."""
        conn = self._wconn
        assert conn is not None
        rev = self._w_revision
        events: list[Event] = []
        results: list[_Result] = []
        rows: list[tuple[int, str, int, int, int, int, bytes]] = []
        # the newest row of each key this batch wrote: (mod, create, value), None once deleted
        written: dict[str, tuple[int, int, bytes] | None] = {}
        latest, live = self._latest, self._live
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, key, value, expected, future in writes:
                if key in written:
                    row = written[key]
                else:
                    row = latest.get(key)
                    if row is None and key in live:
                        found = conn.execute(_SQL_LATEST, (key,)).fetchone()
                        if found is not None and not found[1]:  # else: a deletion, or none
                            row = (found[0], found[2], found[3])
                if kind == _CREATE:
                    if row is not None:
                        results.append((future, KeyExistsError(key)))
                        continue
                    rev += 1
                    rows.append((rev, key, 1, 0, rev, 0, value))
                    written[key] = (rev, rev, value)
                    kv = KeyValue(key, value, rev, rev)
                    events.append(Event(EventType.PUT, kv, None))
                    results.append((future, kv))
                    continue
                if row is None:
                    results.append((future, NotFoundError(key)))
                    continue
                cur_rev, create_rev, cur_value = row
                current = KeyValue(key, cur_value, create_rev, cur_rev)
                if expected and expected != cur_rev:
                    results.append((future, ConflictError(key, current)))
                    continue
                rev += 1
                deleted = kind == _DELETE
                rows.append((rev, key, 0, int(deleted), create_rev, cur_rev, value))
                if deleted:
                    written[key] = None
                    kv = KeyValue(key, cur_value, create_rev, rev)
                    events.append(Event(EventType.DELETE, kv, current))
                else:
                    written[key] = (rev, create_rev, value)
                    kv = KeyValue(key, value, create_rev, rev)
                    events.append(Event(EventType.PUT, kv, current))
                results.append((future, kv))
            if rows:
                conn.executemany(_SQL_INSERT, rows)
            conn.execute("COMMIT" if events else "ROLLBACK")
        except Exception as exc:  # disk full, I/O error, ...: the whole batch fails
            log.error("storage write batch failed: %s", exc)
            self._rollback()
            error = UnavailableError(f"write failed: {exc}")
            self._post([], [(op[4], error) for op in writes])
            return
        self._w_revision = rev
        self._remember(written)
        self._post(events, results)

    def _remember(self, written: dict[str, tuple[int, int, bytes] | None]) -> None:
        """Record the newest rows of a committed batch in `_latest` and `_live` (writer
        thread)."""
        latest, live = self._latest, self._live
        size = self._latest_bytes
        for key, row in written.items():
            old = latest.pop(key, None)
            if old is not None:
                size -= len(old[2])
            if row is not None:
                latest[key] = row
                live.add(key)
                size += len(row[2])
            else:
                live.discard(key)
        while size > _LATEST_BYTES and latest:
            size -= len(latest.popitem(last=False)[1][2])
        self._latest_bytes = size

    def _compaction_tick(self, work: _Compaction) -> _Compaction | None:
        """Run one step of `work`; None once it is finished (its callers are then answered)."""
        try:
            if not self._compaction_step(work):
                return work
            outcome: Any = None
        except Exception as exc:
            log.error("compaction failed: %s", exc)
            self._rollback()
            outcome = UnavailableError(f"compaction failed: {exc}")
        self._post([], [(f, outcome) for f in work.futures])
        return None

    def _compaction_step(self, work: _Compaction) -> bool:
        """One bounded piece of compaction; True when all of it is done."""
        conn = self._wconn
        assert conn is not None
        if work.phase == "delete":
            low = self._compact_rev
            high = min(low + _COMPACT_CHUNK, work.target)
            if high > low:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SQL_COMPACT_SUPERSEDED, (low, high))
                conn.execute(_SQL_COMPACT_DELETIONS, (low, high))
                conn.execute(_SQL_SET_COMPACT_REV, (high,))
                conn.execute("COMMIT")
                self._compact_rev = high
            if high >= work.target:
                work.phase = "vacuum" if self._incremental_vacuum else "checkpoint"
            return False
        if work.phase == "vacuum":
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free == 0 or free == work.freelist:  # done, or no progress
                work.phase = "checkpoint"
            else:
                work.freelist = free
                conn.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})").fetchall()
            return False
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return True

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = self._check_open()
        assert self._readers is not None

        def run() -> T:
            conn = self._rconns.get()
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                self._rconns.put(conn)

        try:
            return await loop.run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise UnavailableError(f"read failed: {exc}") from exc
        except RuntimeError as exc:  # executor shut down by a concurrent close
            raise UnavailableError(str(exc)) from exc

    @staticmethod
    def _check_compacted(conn: sqlite3.Connection, revision: int) -> None:
        """Inside a read transaction: the compact revision of the same snapshot."""
        compacted = conn.execute(_SQL_COMPACT_REV).fetchone()[0]
        if revision < compacted:
            raise CompactedError(revision, compacted)

    async def get(self, key: str) -> KeyValue | None:
        bound = self._revision

        def read(conn: sqlite3.Connection) -> KeyValue | None:
            row = conn.execute(_SQL_GET, (key, bound)).fetchone()
            if row is None or row[1]:
                return None
            return KeyValue(key, row[3], row[2], row[0])

        return await self._read(read)

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """A revision of 0, or above the current one, is read at the current revision."""
        current = self._revision
        if revision <= 0 or revision > current:
            revision = current
        high = prefix_end(prefix)
        sql = _range_sql(_SQL_LIST, "name", high)
        params: dict[str, Any] = {
            "high": high,
            "low": max(prefix, start_key),
            "rev": revision,
            "limit": limit + 1 if limit > 0 else -1,
        }

        def read(conn: sqlite3.Connection) -> list[Any]:
            conn.execute("BEGIN")
            self._check_compacted(conn, revision)
            return conn.execute(sql, params).fetchall()

        rows = await self._read(read)
        more = 0 < limit < len(rows)
        if more:
            rows = rows[:limit]
        return ListResult([KeyValue(*row) for row in rows], revision, more)

    async def events_since(self, prefix: str, revision: int) -> builtins.list[Event]:
        """Events up to the current revision at the time of the call."""
        high = prefix_end(prefix)
        sql = _range_sql(_SQL_EVENTS, "k.name", high)
        params: dict[str, Any] = {
            "high": high,
            "after": revision,
            "rev": self._revision,
            "low": prefix,
        }

        def read(conn: sqlite3.Connection) -> list[Event]:
            conn.execute("BEGIN")
            self._check_compacted(conn, revision)
            events = []
            for rid, name, deleted, create_rev, value, pid, pcreate, pvalue in conn.execute(
                sql, params
            ):
                prev = None if pid is None else KeyValue(name, pvalue, pcreate, pid)
                if deleted:
                    kv = KeyValue(name, b"" if prev is None else prev.value, create_rev, rid)
                    events.append(Event(EventType.DELETE, kv, prev))
                else:
                    kv = KeyValue(name, value, create_rev, rid)
                    events.append(Event(EventType.PUT, kv, prev))
            return events

        return await self._read(read)

    def _auto_target(self) -> int:
        now = time.monotonic()
        if self._unsampled:
            self._samples.append((now, self._unsampled))
            self._unsampled = 0
        target = self._revision - self._compact_keep
        if self._compact_min_age > 0:
            cutoff = now - self._compact_min_age
            # keep the newest sample that is old enough, drop the ones before it
            while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
                self._samples.popleft()
            oldest_time, oldest_rev = self._samples[0]
            target = min(target, oldest_rev if oldest_time <= cutoff else 0)
        return target

    async def _auto_compact(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            target = self._auto_target()
            if target > self._compact_rev:
                try:
                    await self.compact(target)
                except StorageError as exc:
                    log.warning("automatic compaction to %d failed: %s", target, exc)
