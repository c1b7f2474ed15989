"""An in-memory `Backend` for unit tests. It keeps the same log the SQLite backend keeps — one
row per write, with `create_revision`, `prev_revision` and a deletion flag; the current state is
the newest row per key — so history stays until `compact`, a list can be read at a past revision,
`events_since` replays the log, and compacted revisions raise `CompactedError`. Writes are
atomic (no awaits inside) and call every subscriber synchronously before they return."""

from __future__ import annotations

import bisect
import builtins
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kybern.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    KeyValue,
    ListResult,
    NotFoundError,
    UnavailableError,
    WatchCallback,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Row:
    revision: int
    key: str
    deleted: bool
    create_revision: int
    prev_revision: int  # 0 for a create
    value: bytes  # for a deletion: the last value


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            return "".join(chars) + chr(last + 1)
    return None


def key_in_range(key: str, low: str, high: str | None) -> bool:
    return key >= low and (high is None or key < high)


class MemoryBackend:
    """See the module docstring. Not thread-safe; use from one event loop."""

    def __init__(self) -> None:
        self._rows: list[_Row] = []  # the log, in revision order
        self._revs: list[int] = []  # revisions of `_rows`, for bisect
        self._by_rev: dict[int, _Row] = {}
        self._latest: dict[str, _Row] = {}  # newest row per key (may be a deletion)
        self._revision = 0
        self._compact_revision = 0
        self._subscribers: list[WatchCallback] = []
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def current_revision(self) -> int:
        return self._revision

    def compact_revision(self) -> int:
        return self._compact_revision

    async def latest_revision(self) -> int:
        """Writes reach the subscribers before they are answered: nothing to wait for."""
        self._check_open()
        return self.current_revision()

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("store is closed")

    def _live(self, key: str) -> _Row | None:
        row = self._latest.get(key)
        return None if row is None or row.deleted else row

    @staticmethod
    def _kv(row: _Row) -> KeyValue:
        return KeyValue(row.key, row.value, row.create_revision, row.revision)

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        row = self._live(key)
        return None if row is None else self._kv(row)

    def _append(self, row: _Row, prev: _Row | None) -> None:
        self._rows.append(row)
        self._revs.append(row.revision)
        self._by_rev[row.revision] = row
        self._latest[row.key] = row
        self._revision = row.revision
        self._notify([self._event(row, prev)])

    def _event(self, row: _Row, prev: _Row | None) -> Event:
        prev_kv = None if prev is None else self._kv(prev)
        etype = EventType.DELETE if row.deleted else EventType.PUT
        return Event(etype, self._kv(row), prev_kv)

    def _notify(self, events: list[Event]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(events)
            except Exception:
                log.exception("storage subscriber failed")

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        if self._live(key) is not None:
            raise KeyExistsError(key)
        rev = self._revision + 1
        row = _Row(rev, key, False, rev, 0, bytes(value))
        self._append(row, None)
        return self._kv(row)

    def _checked(self, key: str, expected_revision: int) -> _Row:
        current = self._live(key)
        if current is None:
            raise NotFoundError(key)
        if expected_revision and expected_revision != current.revision:
            raise ConflictError(key, self._kv(current))
        return current

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        self._check_open()
        current = self._checked(key, expected_revision)
        rev = self._revision + 1
        row = _Row(rev, key, False, current.create_revision, current.revision, bytes(value))
        self._append(row, current)
        return self._kv(row)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        self._check_open()
        current = self._checked(key, expected_revision)
        rev = self._revision + 1
        row = _Row(rev, key, True, current.create_revision, current.revision, current.value)
        self._append(row, current)
        return self._kv(row)

    def _check_compacted(self, revision: int) -> None:
        if revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        self._check_open()
        if revision <= 0 or revision > self._revision:
            revision = self._revision  # a future revision is read at the current one
        self._check_compacted(revision)
        low, high = max(prefix, start_key), prefix_end(prefix)
        rows: Iterable[_Row]
        if revision == self._revision:
            rows = self._latest.values()
        else:
            newest: dict[str, _Row] = {}
            for row in self._rows[: bisect.bisect_right(self._revs, revision)]:
                newest[row.key] = row
            rows = newest.values()
        live = sorted(
            (r for r in rows if not r.deleted and key_in_range(r.key, low, high)),
            key=lambda r: r.key,
        )
        more = bool(limit) and len(live) > limit
        if more:
            live = live[:limit]
        return ListResult([self._kv(r) for r in live], revision, more)

    async def events_since(self, prefix: str, revision: int) -> builtins.list[Event]:
        self._check_open()
        self._check_compacted(revision)
        high = prefix_end(prefix)
        events = []
        for row in self._rows[bisect.bisect_right(self._revs, revision) :]:
            if key_in_range(row.key, prefix, high):
                prev = self._by_rev.get(row.prev_revision) if row.prev_revision else None
                events.append(self._event(row, prev))
        return events

    def subscribe(self, callback: WatchCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def compact(self, revision: int) -> None:
        """Drop rows superseded by a row at or below `revision`, and deletions at or below it.
        A revision above the current one compacts to the current one."""
        self._check_open()
        revision = min(revision, self._revision)
        if revision <= self._compact_revision:
            return
        low = bisect.bisect_right(self._revs, self._compact_revision)
        window = self._rows[low : bisect.bisect_right(self._revs, revision)]
        dead = {r.prev_revision for r in window if r.prev_revision}
        dead.update(r.revision for r in window if r.deleted)
        self._rows = [r for r in self._rows if r.revision not in dead]
        self._revs = [r.revision for r in self._rows]
        for rev in dead:
            row = self._by_rev.pop(rev, None)
            if row is not None and self._latest.get(row.key) is row:
                del self._latest[row.key]
        self._compact_revision = revision
