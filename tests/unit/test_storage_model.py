"""Model-based test of the storage backends: hypothesis drives random sequences of create,
update, delete (right, wrong and unconditional expected revisions), compaction, lists at past
revisions with pages, and `events_since` against the backends, and compares every answer with a
trivial model (a dict of live keys plus the full event log). Revisions are relative to the
store's revision at the start (tests/integration/test_storage_etcd.py runs the same machine on
a shared etcd through `make_store`)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kybern.storage import (
    Backend,
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    KeyValue,
    NotFoundError,
)
from kybern.storage.memory import MemoryBackend
from kybern.storage.sqlite import SqliteBackend

T = TypeVar("T")

KEYS = st.sampled_from(["/a/1", "/a/2", "/a/3", "/ab", "/b/1", "/b/2"])
PREFIXES = st.sampled_from(["", "/a/", "/b/", "/a"])
VALUES = st.binary(max_size=6)
EXPECT = st.sampled_from(["right", "wrong", "any"])


class Model:
    """The truth: live keys and every event ever committed."""

    def __init__(self, base: int = 0, compacted: int = 0) -> None:
        self.base = base
        self.revision = base
        self.compacted = compacted
        self.live: dict[str, KeyValue] = {}
        self.log: list[Event] = []

    def commit(self, etype: EventType, kv: KeyValue, prev: KeyValue | None) -> None:
        self.revision = kv.mod_revision
        self.log.append(Event(etype, kv, prev))
        if etype is EventType.DELETE:
            del self.live[kv.key]
        else:
            self.live[kv.key] = kv

    def snapshot(self, prefix: str, revision: int) -> list[KeyValue]:
        state: dict[str, KeyValue] = {}
        for event in self.log:
            if event.kv.mod_revision > revision:
                break
            if event.type is EventType.DELETE:
                state.pop(event.kv.key, None)
            else:
                state[event.kv.key] = event.kv
        return [state[k] for k in sorted(state) if k.startswith(prefix)]


class StoreMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp: str | None = None
        self.store = self.make_store()
        self.run(self.store.start())
        self.model = Model(self.store.current_revision(), self.store.compact_revision())
        self.published: list[Event] = []
        self.store.subscribe(self.on_events)

    def make_store(self) -> Backend:
        if self.kind == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="kybern-model-")
            return SqliteBackend(f"{self.tmp}/state.db", compact_interval=0)
        return MemoryBackend()

    def draw_revision(self, data: st.DataObject) -> int:
        """A revision since the start, or 0 (now)."""
        offset = data.draw(st.integers(-1, self.model.revision - self.model.base))
        return 0 if offset < 0 else self.model.base + offset

    def on_events(self, events: Sequence[Event]) -> None:
        self.published.extend(events)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def expected_revision(self, key: str, how: str) -> int:
        current = self.model.live.get(key)
        if how == "any" or current is None:
            return 0 if how == "any" else 999_999
        return current.mod_revision if how == "right" else current.mod_revision + 1000

    @rule(key=KEYS, value=VALUES)
    def create(self, key: str, value: bytes) -> None:
        if key in self.model.live:
            with pytest.raises(KeyExistsError):
                self.run(self.store.create(key, value))
            return
        kv = self.run(self.store.create(key, value))
        rev = self.model.revision + 1
        assert kv == KeyValue(key, value, rev, rev)
        self.model.commit(EventType.PUT, kv, None)

    @rule(key=KEYS, value=VALUES, how=EXPECT)
    def update(self, key: str, value: bytes, how: str) -> None:
        current = self.model.live.get(key)
        expected = self.expected_revision(key, how)
        if current is None:
            with pytest.raises(NotFoundError):
                self.run(self.store.update(key, value, expected))
            return
        if how == "wrong":
            with pytest.raises(ConflictError) as conflict:
                self.run(self.store.update(key, value, expected))
            assert conflict.value.current == current
            return
        kv = self.run(self.store.update(key, value, expected))
        assert kv == KeyValue(key, value, current.create_revision, self.model.revision + 1)
        self.model.commit(EventType.PUT, kv, current)

    @rule(key=KEYS, how=EXPECT)
    def delete(self, key: str, how: str) -> None:
        current = self.model.live.get(key)
        expected = self.expected_revision(key, how)
        if current is None:
            with pytest.raises(NotFoundError):
                self.run(self.store.delete(key, expected))
            return
        if how == "wrong":
            with pytest.raises(ConflictError) as conflict:
                self.run(self.store.delete(key, expected))
            assert conflict.value.current == current
            return
        kv = self.run(self.store.delete(key, expected))
        rev = self.model.revision + 1
        assert kv == KeyValue(key, current.value, current.create_revision, rev)
        self.model.commit(EventType.DELETE, kv, current)

    @precondition(lambda self: self.model.revision > max(self.model.compacted, self.model.base))
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        low = max(self.model.compacted, self.model.base) + 1
        base = self.model.base  # draws are relative: a shared store does not start at 0
        target = base + data.draw(st.integers(low - base, self.model.revision - base))
        self.run(self.store.compact(target))
        self.model.compacted = target
        assert self.store.compact_revision() == target

    @rule(prefix=PREFIXES, limit=st.integers(0, 3), data=st.data())
    def list_pages(self, prefix: str, limit: int, data: st.DataObject) -> None:
        revision = self.draw_revision(data)
        if 0 < revision < self.model.compacted:
            with pytest.raises(CompactedError):
                self.run(self.store.list(prefix, revision=revision))
            return
        expected = self.model.snapshot(prefix, revision or self.model.revision)
        got: list[KeyValue] = []
        start = ""
        while True:
            page = self.run(self.store.list(prefix, revision, start, limit))
            assert page.revision == (revision or self.model.revision)
            got.extend(page.items)
            if not page.more:
                break
            assert len(page.items) == limit
            revision, start = page.revision, page.items[-1].key + "\0"
        assert got == expected

    @rule(prefix=PREFIXES, data=st.data())
    def events_since(self, prefix: str, data: st.DataObject) -> None:
        revision = self.model.base + data.draw(
            st.integers(0, self.model.revision - self.model.base)
        )
        if revision < self.model.compacted:
            with pytest.raises(CompactedError):
                self.run(self.store.events_since(prefix, revision))
            return
        expected = [
            e
            for e in self.model.log
            if e.kv.mod_revision > revision and e.kv.key.startswith(prefix)
        ]
        assert self.run(self.store.events_since(prefix, revision)) == expected

    @invariant()
    def matches_model(self) -> None:
        assert self.store.current_revision() == self.model.revision
        assert self.published == self.model.log
        for key in ["/a/1", "/a/2", "/a/3", "/ab", "/b/1", "/b/2"]:
            assert self.run(self.store.get(key)) == self.model.live.get(key)


class SqliteStoreMachine(StoreMachine):
    kind = "sqlite"


TestMemoryBackendModel = StoreMachine.TestCase
TestMemoryBackendModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestSqliteBackendModel = SqliteStoreMachine.TestCase
TestSqliteBackendModel.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
