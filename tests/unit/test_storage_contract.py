"""Conformance suite for the storage `Backend` contract, run against every backend (memory and
SQLite on a temp file): CRUD and its errors, revisions, lists by prefix/page/past revision,
`events_since`, subscriber ordering, compaction, and (SQLite) restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from kybern.storage import (
    Backend,
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    NotFoundError,
    UnavailableError,
    open_backend,
)
from kybern.storage.memory import MemoryBackend
from kybern.storage.sqlite import SqliteBackend

KINDS = ["memory", "sqlite"]


def make(kind: str, tmp_path: Path) -> Backend:
    if kind == "memory":
        return MemoryBackend()
    return SqliteBackend(str(tmp_path / "state.db"), compact_interval=0)


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    store = make(request.param, tmp_path)
    await store.start()
    yield store
    await store.close()


class Recorder:
    """A subscriber that keeps every event and every batch it was called with."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0

    def __call__(self, events: Sequence[Event]) -> None:
        self.batches += 1
        self.events.extend(events)

    def revisions(self) -> list[int]:
        return [e.kv.mod_revision for e in self.events]


async def test_create_get_update_delete(backend: Backend) -> None:
    assert backend.current_revision() == 0
    assert await backend.get("/r/a") is None
    created = await backend.create("/r/a", b"one")
    assert created.key == "/r/a" and created.value == b"one"
    assert created.create_revision == created.mod_revision == backend.current_revision()
    assert await backend.get("/r/a") == created

    updated = await backend.update("/r/a", b"two", created.mod_revision)
    assert updated.value == b"two"
    assert updated.create_revision == created.create_revision
    assert updated.mod_revision > created.mod_revision
    assert await backend.get("/r/a") == updated

    again = await backend.update("/r/a", b"three", 0)  # unconditional
    assert again.mod_revision > updated.mod_revision

    deleted = await backend.delete("/r/a", again.mod_revision)
    assert deleted.value == b"three"  # the last value
    assert deleted.create_revision == created.create_revision
    assert deleted.mod_revision == backend.current_revision() > again.mod_revision
    assert await backend.get("/r/a") is None

    recreated = await backend.create("/r/a", b"new")
    assert recreated.create_revision == recreated.mod_revision > deleted.mod_revision


async def test_errors(backend: Backend) -> None:
    kv = await backend.create("/r/a", b"x")
    with pytest.raises(KeyExistsError):
        await backend.create("/r/a", b"y")
    with pytest.raises(NotFoundError):
        await backend.update("/r/missing", b"y", 0)
    with pytest.raises(NotFoundError):
        await backend.delete("/r/missing")
    with pytest.raises(ConflictError) as conflict:
        await backend.update("/r/a", b"y", kv.mod_revision + 100)
    assert conflict.value.current == kv
    with pytest.raises(ConflictError) as conflict:
        await backend.delete("/r/a", kv.mod_revision + 100)
    assert conflict.value.current == kv
    # failed writes do not use up revisions and change nothing
    assert backend.current_revision() == kv.mod_revision
    assert await backend.get("/r/a") == kv
    await backend.delete("/r/a")
    with pytest.raises(NotFoundError):
        await backend.update("/r/a", b"z", 0)


async def test_revisions_strictly_increase(backend: Backend) -> None:
    revisions = []
    for i in range(20):
        kv = await backend.create(f"/r/{i}", b"v")
        revisions.append(kv.mod_revision)
        revisions.append((await backend.update(f"/r/{i}", b"w", kv.mod_revision)).mod_revision)
    assert revisions == list(range(1, 41))
    assert backend.current_revision() == 40


async def test_concurrent_writes_are_checked_one_by_one(backend: Backend) -> None:
    results = await asyncio.gather(
        *(backend.create("/r/same", str(i).encode()) for i in range(10)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, KeyExistsError) for r in results if r is not winners[0])
    base = winners[0].mod_revision
    updates = await asyncio.gather(
        *(backend.update("/r/same", b"u", base) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in updates) == 1
    assert sum(isinstance(r, ConflictError) for r in updates) == 9
    many = await asyncio.gather(*(backend.create(f"/r/k{i:03d}", b"v") for i in range(100)))
    revs = sorted(kv.mod_revision for kv in many)
    assert revs == list(range(revs[0], revs[0] + 100))


async def test_list_prefix_limit_start_key(backend: Backend) -> None:
    for name in ["b", "a", "d", "c", "e"]:
        await backend.create(f"/registry/pods/ns/{name}", name.encode())
    await backend.create("/registry/pods0", b"outside")  # right after the prefix range
    await backend.create("/registry/podsx/ns/a", b"outside")
    await backend.create("/registry/pod", b"outside")
    gone = await backend.create("/registry/pods/ns/zz", b"gone")
    await backend.delete(gone.key)

    full = await backend.list("/registry/pods/")
    assert [kv.key.rsplit("/", 1)[1] for kv in full.items] == ["a", "b", "c", "d", "e"]
    assert full.revision == backend.current_revision() and not full.more

    page1 = await backend.list("/registry/pods/", limit=2)
    assert [kv.value for kv in page1.items] == [b"a", b"b"] and page1.more
    page2 = await backend.list(
        "/registry/pods/", revision=page1.revision, start_key=page1.items[-1].key + "\0", limit=2
    )
    assert [kv.value for kv in page2.items] == [b"c", b"d"] and page2.more
    page3 = await backend.list("/registry/pods/", start_key="/registry/pods/ns/e", limit=2)
    assert [kv.value for kv in page3.items] == [b"e"] and not page3.more
    exact = await backend.list("/registry/pods/", limit=5)
    assert len(exact.items) == 5 and not exact.more
    assert (await backend.list("/registry/pods/", start_key="/a")).items == full.items
    assert (await backend.list("/nothing/")).items == []
    everything = await backend.list("")
    assert [kv.key for kv in everything.items] == sorted(kv.key for kv in everything.items)
    assert len(everything.items) == 8


async def test_list_at_past_revision(backend: Backend) -> None:
    a1 = await backend.create("/r/a", b"a1")
    b1 = await backend.create("/r/b", b"b1")
    snapshot = backend.current_revision()
    await backend.update("/r/a", b"a2", a1.mod_revision)
    await backend.delete("/r/b", b1.mod_revision)
    await backend.create("/r/c", b"c1")
    old = await backend.list("/r/", revision=snapshot)
    assert old.revision == snapshot
    assert old.items == [a1, b1]
    first = await backend.list("/r/", revision=a1.mod_revision)
    assert first.items == [a1]
    now = await backend.list("/r/")
    assert [kv.value for kv in now.items] == [b"a2", b"c1"]
    # a revision in the future is read at the current one
    future = await backend.list("/r/", revision=backend.current_revision() + 50)
    assert future.revision == backend.current_revision() and future.items == now.items


async def test_list_snapshot_is_consistent_while_writing(backend: Backend) -> None:
    for i in range(50):
        await backend.create(f"/r/{i:02d}", b"0")
    expected = await backend.list("/r/")
    stop = asyncio.Event()

    async def writer(offset: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"/r/{(n * 7 + offset) % 50:02d}"
            await backend.update(key, str(n).encode(), 0)
            if n % 5 == 0:
                await backend.create(f"/r/new-{offset}-{n}", b"x")
            n += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer(k)) for k in range(4)]
    try:
        for _ in range(20):
            again = await backend.list("/r/", revision=expected.revision)
            assert again == expected
            now = await backend.list("/r/")
            assert all(kv.mod_revision <= now.revision for kv in now.items)
            await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert backend.current_revision() > expected.revision


async def test_events_since(backend: Backend) -> None:
    a = await backend.create("/r/a", b"a1")
    await backend.create("/other/x", b"x")
    a2 = await backend.update("/r/a", b"a2", a.mod_revision)
    b = await backend.create("/r/b", b"b1")
    gone = await backend.delete("/r/a")
    events = await backend.events_since("/r/", 0)
    assert [e.kv.mod_revision for e in events] == [1, 3, 4, 5]
    assert [e.type for e in events] == [EventType.PUT] * 3 + [EventType.DELETE]
    assert events[0].kv == a and events[0].prev is None and events[0].is_create
    assert events[1].kv == a2 and events[1].prev == a and not events[1].is_create
    assert events[2].kv == b and events[2].prev is None
    assert events[3].kv == gone and events[3].kv.value == b"a2" and events[3].prev == a2
    assert await backend.events_since("/r/", 3) == events[2:]
    assert await backend.events_since("/r/", backend.current_revision()) == []
    assert len(await backend.events_since("", 0)) == 5


async def test_subscribers_see_writes_before_they_return(backend: Backend) -> None:
    recorder = Recorder()
    unsubscribe = backend.subscribe(recorder)

    async def write(i: int) -> None:
        kv = await backend.create(f"/r/{i}", b"v")
        assert kv.mod_revision in recorder.revisions()
        kv = await backend.update(kv.key, b"w", kv.mod_revision)
        assert recorder.events[-1].kv.mod_revision >= kv.mod_revision
        assert kv.mod_revision in recorder.revisions()

    await asyncio.gather(*(write(i) for i in range(40)))
    assert recorder.revisions() == list(range(1, 81))  # every write, in revision order
    assert backend.current_revision() == 80
    with pytest.raises(KeyExistsError):
        await backend.create("/r/0", b"again")
    assert len(recorder.events) == 80  # failed writes publish nothing
    deleted = await backend.delete("/r/0")
    assert recorder.events[-1].type is EventType.DELETE
    assert recorder.events[-1].kv == deleted and recorder.events[-1].prev is not None
    unsubscribe()
    await backend.create("/r/after", b"v")
    assert len(recorder.events) == 81


async def test_compaction(backend: Backend) -> None:
    a = await backend.create("/r/a", b"a1")
    b = await backend.create("/r/b", b"b1")
    for i in range(5):
        a = await backend.update("/r/a", f"a{i + 2}".encode(), a.mod_revision)
    doomed = await backend.create("/r/c", b"c")
    await backend.delete(doomed.key)
    target = backend.current_revision()
    kept = await backend.list("/r/", revision=target)
    late = await backend.update("/r/b", b"b2", b.mod_revision)

    await backend.compact(target)
    assert backend.compact_revision() == target
    with pytest.raises(CompactedError) as gone:
        await backend.list("/r/", revision=target - 1)
    assert gone.value.compact_revision == target
    with pytest.raises(CompactedError):
        await backend.events_since("/r/", 1)
    assert await backend.list("/r/", revision=target) == kept  # the compact revision survives
    assert [kv.value for kv in (await backend.list("/r/")).items] == [a.value, b"b2"]
    events = await backend.events_since("/r/", target)
    assert [e.kv for e in events] == [late] and events[0].prev == b
    assert await backend.get("/r/a") == a
    await backend.compact(target - 3)  # older than the compact revision: nothing to do
    assert backend.compact_revision() == target
    await backend.compact(backend.current_revision() + 10)  # clamped to the current revision
    assert backend.compact_revision() == backend.current_revision()
    assert (await backend.list("/r/")).items == [a, late]


async def test_failing_subscriber_does_not_break_writes(backend: Backend) -> None:
    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("subscriber bug")

    recorder = Recorder()
    backend.subscribe(broken)
    backend.subscribe(recorder)
    kv = await backend.create("/r/a", b"x")
    assert recorder.revisions() == [kv.mod_revision]
    assert await backend.get("/r/a") == kv


async def test_close_is_idempotent_and_final(backend: Backend) -> None:
    await backend.create("/r/a", b"x")
    await backend.close()
    await backend.close()
    for call in (
        lambda: backend.create("/r/b", b"x"),
        lambda: backend.get("/r/a"),
        lambda: backend.list("/r/"),
        lambda: backend.events_since("/r/", 0),
    ):
        with pytest.raises(UnavailableError):
            await call()


async def reopen(store: SqliteBackend, path: Path) -> SqliteBackend:
    await store.close()
    fresh = SqliteBackend(str(path), compact_interval=0)
    await fresh.start()
    return fresh


async def test_sqlite_restart_keeps_data_and_revisions(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    try:
        a = await store.create("/r/a", b"a")
        await store.create("/r/b", b"b")
        await store.delete("/r/b")
        store = await reopen(store, path)
        assert store.current_revision() == 3
        assert await store.get("/r/a") == a
        assert await store.get("/r/b") is None
        assert [e.kv.mod_revision for e in await store.events_since("/r/", 0)] == [1, 2, 3]

        # compaction removes the newest row (a deletion): revisions still never go down
        await store.compact(store.current_revision())
        store = await reopen(store, path)
        assert store.current_revision() == 3 and store.compact_revision() == 3
        c = await store.create("/r/c", b"c")
        assert c.mod_revision == 4
        with pytest.raises(CompactedError):
            await store.list("/r/", revision=2)
        assert [kv.key for kv in (await store.list("/r/")).items] == ["/r/a", "/r/c"]
    finally:
        await store.close()


async def test_sqlite_close_drains_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    tasks = [asyncio.create_task(store.create(f"/r/{i:03d}", b"v")) for i in range(200)]
    await asyncio.sleep(0)  # one loop pass: every task has queued its write
    await store.close()
    written = await asyncio.gather(*tasks)  # all were answered by close
    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    try:
        assert (await store.list("/r/")).items == sorted(written, key=lambda kv: kv.key)
        assert store.current_revision() == 200
    finally:
        await store.close()


async def test_sqlite_automatic_compaction(tmp_path: Path) -> None:
    store = SqliteBackend(
        str(tmp_path / "state.db"),
        compact_interval=0.02,
        compact_keep_revisions=5,
        compact_min_age=0,
    )
    await store.start()
    try:
        kv = await store.create("/r/a", b"0")
        for i in range(30):
            kv = await store.update("/r/a", str(i).encode(), kv.mod_revision)
        deadline = time.monotonic() + 10
        while store.compact_revision() < store.current_revision() - 5:
            assert time.monotonic() < deadline, "automatic compaction did not run"
            await asyncio.sleep(0.01)
        assert store.compact_revision() == store.current_revision() - 5
        with pytest.raises(CompactedError):
            await store.events_since("/r/", 1)
        assert await store.get("/r/a") == kv
    finally:
        await store.close()


async def test_sqlite_min_age_holds_back_compaction(tmp_path: Path) -> None:
    store = SqliteBackend(
        str(tmp_path / "state.db"),
        compact_interval=0.01,
        compact_keep_revisions=0,
        compact_min_age=3600,
    )
    await store.start()
    try:
        for i in range(20):
            await store.create(f"/r/{i}", b"v")
        await asyncio.sleep(0.1)  # ten compaction intervals pass; nothing is old enough
        assert store.compact_revision() == 0 and store.current_revision() == 20
    finally:
        await store.close()


def test_open_backend_by_url(tmp_path: Path) -> None:
    assert isinstance(open_backend("memory://"), MemoryBackend)
    assert isinstance(open_backend(f"sqlite://{tmp_path}/x.db"), SqliteBackend)
    with pytest.raises(ValueError):
        open_backend("bogus://x")
