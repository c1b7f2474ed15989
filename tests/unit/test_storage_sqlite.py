"""SQLite-only parts of the storage contract: restarts keep data and revisions, `close` drains
queued writes, automatic compaction (and its minimum age), and the URL factory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kybern.storage import CompactedError, open_backend
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
