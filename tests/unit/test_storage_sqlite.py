"""SQLite-only parts of the storage contract: restarts keep data and revisions, `close` drains
queued writes, batches of random writes (with and without the writer's memory of the newest
rows, across compactions and a restart) answer as the memory backend does one by one, automatic
compaction (and its minimum age), and the URL factory."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from kybern.storage import CompactedError, Event, KeyValue, open_backend, sqlite
from kybern.storage.memory import MemoryBackend
from kybern.storage.sqlite import SqliteBackend


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


Op = tuple[str, str, bytes, int]  # (create|update|delete, key, value, expected revision)


def _call(backend: SqliteBackend | MemoryBackend, op: Op) -> Coroutine[Any, Any, KeyValue]:
    kind, key, value, expected = op
    if kind == "create":
        return backend.create(key, value)
    if kind == "update":
        return backend.update(key, value, expected)
    return backend.delete(key, expected)


def _outcome(result: KeyValue | BaseException) -> object:
    if isinstance(result, BaseException):
        return (type(result).__name__, getattr(result, "current", None))
    return result


@pytest.mark.parametrize("remember", [0, 40, 1 << 20])
async def test_sqlite_batches_answer_as_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remember: int
) -> None:
    """Random writes go in concurrently (so batches hold several writes of one key) and are
    checked against the memory backend applying them in the same order: results, conflicts
    with their current value, events and the final state; `remember` bounds the bytes of
    newest rows the writer keeps instead of querying (0: it queries every time)."""
    monkeypatch.setattr(sqlite, "_LATEST_BYTES", remember)
    rnd = random.Random(remember)
    store = SqliteBackend(str(tmp_path / "state.db"), compact_interval=0)
    model = MemoryBackend()
    await store.start()
    await model.start()
    got: list[Event] = []
    want: list[Event] = []
    store.subscribe(got.extend)
    model.subscribe(want.extend)
    keys = [f"/r/{i}" for i in range(6)]
    try:
        for round_ in range(60):
            ops: list[Op] = []
            for _ in range(rnd.randint(1, 12)):
                key, value = rnd.choice(keys), rnd.randbytes(rnd.randint(0, 12))
                current = await model.get(key)
                rev = current.mod_revision if current is not None else 0
                expected = rnd.choice([0, rev, rev + 1, max(rev - 1, 0)])
                ops.append((rnd.choice(["create", "update", "delete"]), key, value, expected))
            results = await asyncio.gather(
                *(_call(store, op) for op in ops), return_exceptions=True
            )
            expect: list[KeyValue | BaseException] = []
            for op in ops:
                try:
                    expect.append(await _call(model, op))
                except Exception as e:
                    expect.append(e)
            assert [_outcome(r) for r in results] == [_outcome(r) for r in expect]
            if round_ % 20 == 19:  # compaction leaves the newest rows alone
                await store.compact(store.current_revision())
                await model.compact(model.current_revision())
            if round_ == 29:  # a restart finds the keys that exist
                store = await reopen(store, tmp_path / "state.db")
                store.subscribe(got.extend)
        assert got == want
        assert (await store.list("/r/")).items == (await model.list("/r/")).items
        for key in keys:
            assert await store.get(key) == await model.get(key)
    finally:
        await store.close()
        await model.close()


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
