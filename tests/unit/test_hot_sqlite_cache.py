"""The write path's shortcuts give what the long way gives: the SQLite backend's writes made in
one loop iteration reach the writer thread together and are committed and answered as one by
one (in order, each on its own, more of them than one transaction holds, and ones still pending
when the store closes), and the watch cache finds a key's resource cache as splitting the key
does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kybern import storage
from kybern.apiserver import cache
from kybern.storage import sqlite
from kybern.storage.sqlite import SqliteBackend

PREFIXES = ["/registry/pods/", "/registry/apps/deployments/", "/a/b/", "/a/b/c/", "//x/", "/a//"]
SEGMENTS = st.sampled_from(["", "registry", "pods", "apps", "deployments", "a", "b", "c", "x"])


class _Backend:
    def subscribe(self, cb: Any) -> Any:
        return lambda: None


@settings(max_examples=500)
@given(
    segments=st.lists(SEGMENTS, max_size=6),
    lead=st.booleans(),
    trail=st.booleans(),
    prefixes=st.lists(st.sampled_from(PREFIXES), unique=True),
)
def test_cache_for_matches_splitting_the_key(
    segments: list[str], lead: bool, trail: bool, prefixes: list[str]
) -> None:
    cacher = cache.Cacher(_Backend())  # type: ignore[arg-type]
    for p in prefixes:
        cacher._caches[p] = cache.ResourceCache(p)
    key = ("/" if lead else "") + "/".join(segments) + ("/" if trail else "")
    assert cacher._cache_for(key) is cacher._cache_for_split(key)


async def test_writes_of_one_iteration_answer_as_one_by_one(tmp_path: Path) -> None:
    store = SqliteBackend(str(tmp_path / "s.db"), compact_interval=0)
    await store.start()
    seen: list[storage.Event] = []
    store.subscribe(seen.extend)
    try:
        a = await store.create("/r/a", b"0")
        # made in one iteration: one group for the writer, answered in order, each on its own
        results = await asyncio.gather(
            store.update("/r/a", b"1", a.mod_revision),
            store.update("/r/a", b"2", a.mod_revision),  # conflicts with the one before
            store.create("/r/a", b"x"),  # exists
            store.create("/r/b", b"b"),
            store.delete("/r/b"),
            store.update("/r/c", b"c", 0),  # not found
            return_exceptions=True,
        )
        assert results[0] == storage.KeyValue("/r/a", b"1", 1, 2)
        assert isinstance(results[1], storage.ConflictError)
        assert isinstance(results[2], storage.KeyExistsError)
        assert results[3] == storage.KeyValue("/r/b", b"b", 3, 3)
        assert results[4] == storage.KeyValue("/r/b", b"b", 3, 4)
        assert isinstance(results[5], storage.NotFoundError)
        assert [e.kv.mod_revision for e in seen] == [1, 2, 3, 4]
        # more writes in one iteration than one transaction holds
        n = sqlite._MAX_BATCH + 10
        kvs = await asyncio.gather(*(store.create(f"/m/{i:05d}", b"v") for i in range(n)))
        assert [kv.mod_revision for kv in kvs] == list(range(5, 5 + n))
        assert (await store.list("/m/")).items == kvs
    finally:
        await store.close()


async def test_close_commits_writes_still_pending(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    futures = [store._submit(1, f"/r/{i}", b"v", 0) for i in range(5)]  # not handed over yet
    assert len(store._pending) == 5
    await store.close()
    assert [f.result().mod_revision for f in futures] == [1, 2, 3, 4, 5]
    again = SqliteBackend(str(path), compact_interval=0)
    await again.start()
    try:
        assert again.current_revision() == 5
        assert len((await again.list("/r/")).items) == 5
    finally:
        await again.close()
