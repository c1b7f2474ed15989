"""Conformance suite for the storage `Backend` contract: CRUD and its errors, revisions, lists by
prefix/page/past revision (pagination snapshots), `events_since`, subscriber ordering,
concurrency, compaction and 410-style `CompactedError`, `latest_revision`. The `backend` fixture
here runs it on memory and SQLite (a temp file); tests/integration/test_storage_etcd.py runs the
same test functions on a real etcd by importing them with its own `backend` fixture, so every
test is relative to the backend's revision at its start (a shared etcd is not at 0) and only
uses keys of its own (that fixture gives each test a key prefix of its own)."""

from __future__ import annotations

import asyncio
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
    base = backend.current_revision()
    assert await backend.latest_revision() == base
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
    assert recreated.mod_revision == base + 5
    assert await backend.latest_revision() == backend.current_revision() == base + 5


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
    base = backend.current_revision()
    revisions = []
    for i in range(20):
        kv = await backend.create(f"/r/{i}", b"v")
        revisions.append(kv.mod_revision)
        revisions.append((await backend.update(f"/r/{i}", b"w", kv.mod_revision)).mod_revision)
    assert revisions == list(range(base + 1, base + 41))
    assert backend.current_revision() == base + 40


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
    base = backend.current_revision()
    a = await backend.create("/r/a", b"a1")
    await backend.create("/other/x", b"x")
    a2 = await backend.update("/r/a", b"a2", a.mod_revision)
    b = await backend.create("/r/b", b"b1")
    gone = await backend.delete("/r/a")
    events = await backend.events_since("/r/", base)
    assert [e.kv.mod_revision - base for e in events] == [1, 3, 4, 5]
    assert [e.type for e in events] == [EventType.PUT] * 3 + [EventType.DELETE]
    assert events[0].kv == a and events[0].prev is None and events[0].is_create
    assert events[1].kv == a2 and events[1].prev == a and not events[1].is_create
    assert events[2].kv == b and events[2].prev is None
    assert events[3].kv == gone and events[3].kv.value == b"a2" and events[3].prev == a2
    assert await backend.events_since("/r/", base + 3) == events[2:]
    assert await backend.events_since("/r/", backend.current_revision()) == []
    assert len(await backend.events_since("", base)) == 5


async def test_subscribers_see_writes_before_they_return(backend: Backend) -> None:
    base = backend.current_revision()
    recorder = Recorder()
    unsubscribe = backend.subscribe(recorder)

    async def write(i: int) -> None:
        kv = await backend.create(f"/r/{i}", b"v")
        assert kv.mod_revision in recorder.revisions()
        kv = await backend.update(kv.key, b"w", kv.mod_revision)
        assert recorder.events[-1].kv.mod_revision >= kv.mod_revision
        assert kv.mod_revision in recorder.revisions()

    await asyncio.gather(*(write(i) for i in range(40)))
    # every write, in revision order
    assert recorder.revisions() == list(range(base + 1, base + 81))
    assert backend.current_revision() == base + 80
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
        await backend.events_since("/r/", a.create_revision)
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


async def test_latest_revision_is_current_when_idle(backend: Backend) -> None:
    kv = await backend.create("/r/a", b"x")
    assert await backend.latest_revision() == kv.mod_revision == backend.current_revision()
    await backend.delete("/r/a")
    assert await backend.latest_revision() == backend.current_revision() == kv.mod_revision + 1


async def test_pagination_reads_one_snapshot(backend: Backend) -> None:
    for i in range(10):
        await backend.create(f"/r/{i:02d}", b"0")
    first = await backend.list("/r/", limit=3)
    # the list changes under the pages: the pages still show the first page's snapshot
    await backend.delete("/r/04")
    await backend.create("/r/045", b"new")
    await backend.update("/r/07", b"1", 0)
    pages, start, revision = list(first.items), first.items[-1].key + "\0", first.revision
    while True:
        page = await backend.list("/r/", revision=revision, start_key=start, limit=3)
        assert page.revision == revision
        pages.extend(page.items)
        if not page.more:
            break
        start = page.items[-1].key + "\0"
    assert [kv.key for kv in pages] == [f"/r/{i:02d}" for i in range(10)]
    assert all(kv.value == b"0" for kv in pages)
    now = await backend.list("/r/")
    assert "/r/045" in [kv.key for kv in now.items] and "/r/04" not in [kv.key for kv in now.items]


async def test_compacted_pages_and_history_are_gone(backend: Backend) -> None:
    kv = await backend.create("/r/a", b"0")
    first = await backend.list("/r/", limit=1)
    for i in range(3):
        kv = await backend.update("/r/a", str(i).encode(), kv.mod_revision)
    await backend.compact(backend.current_revision())
    with pytest.raises(CompactedError) as gone:
        await backend.list("/r/", revision=first.revision, start_key="/r/a\0", limit=1)
    assert gone.value.requested == first.revision
    assert gone.value.compact_revision == backend.compact_revision() > first.revision
    with pytest.raises(CompactedError):
        await backend.events_since("/r/", first.revision)
    assert (await backend.list("/r/")).items == [kv]
