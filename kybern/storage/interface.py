"""Types and the `Backend` protocol every store implements (memory, SQLite, etcd).

Semantics follow etcd v3: one global, strictly increasing revision; each key remembers the
revision that created it (`create_revision`) and the one that last changed it (`mod_revision`).
Writes are compare-on-revision. Committed writes are pushed, in revision order, to the
subscribers registered with `subscribe` *before* the writing call returns, so an in-memory
cache fed by that callback is never behind an acknowledged write of the same process. Writes
made elsewhere (another API server on one etcd) reach the subscribers later; `latest_revision`
tells how far they must have got for a read to be consistent."""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """Base class of storage errors."""


class KeyExistsError(StorageError):
    """Create of a key that already exists."""


class NotFoundError(StorageError):
    """Update/delete/get of a key that does not exist."""


class ConflictError(StorageError):
    """The key's current mod_revision differs from the expected one."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision conflict on {key}")
        self.current = current


class CompactedError(StorageError):
    """The requested revision has been compacted away (HTTP 410 Gone)."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (oldest kept: {compact_revision})"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class UnavailableError(StorageError):
    """The store cannot serve the request now (closed, no quorum, disk error)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change. For DELETE, `kv.value` is the last value and `kv.mod_revision` the
    revision of the deletion. `prev` is the value before this change (None for a create)."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None

    @property
    def is_create(self) -> bool:
        return self.type is EventType.PUT and self.prev is None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the snapshot revision the list was read at
    more: bool  # true when `limit` cut the result


WatchCallback = Callable[[Sequence[Event]], None]


class Backend(Protocol):
    """The storage contract. Keys are strings such as `/registry/pods/default/web-1`."""

    async def start(self) -> None:
        """Open the store; after this, `current_revision` is valid."""

    async def close(self) -> None:
        """Flush, stop background work, release files. Idempotent."""

    def current_revision(self) -> int:
        """The newest revision known here: every write up to it has been delivered to the
        subscribers (0 for an empty store). Cheap; never waits."""

    async def latest_revision(self) -> int:
        """For a consistent (linearizable) read: a revision such that once the subscribers have
        seen it, they have seen every write committed before this call, whoever made it. For
        embedded stores this is `current_revision()`; for etcd it costs a quorum read and waits
        until the backend's watch has caught up. Raises UnavailableError when the store cannot
        tell (no quorum, unreachable) — also the store's health check."""

    def compact_revision(self) -> int:
        """Revisions at or below this one may be gone; reads/watches there raise Compacted."""

    async def get(self, key: str) -> KeyValue | None:
        """The current value of `key`, or None."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create `key`; raises KeyExistsError. Returns the stored KeyValue."""

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Replace `key` if its mod_revision is `expected_revision` (0: unconditionally).
        Raises NotFoundError or ConflictError (carrying the current value)."""

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete `key` (conditionally when expected_revision != 0). Returns the deleted
        KeyValue with mod_revision = the deletion's revision. Raises NotFound/Conflict."""

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """Keys under `prefix` (>= start_key, sorted by key) as of `revision` (0: now), at most
        `limit` (0: all). Raises CompactedError for a compacted revision."""

    async def events_since(self, prefix: str, revision: int) -> builtins.list[Event]:
        """Every committed event under `prefix` with mod_revision > `revision`, in order.
        Raises CompactedError when `revision` < compact_revision."""

    def subscribe(self, callback: WatchCallback) -> Callable[[], None]:
        """Call `callback` (on the event loop) with each batch of committed events, in order.
        Returns a function that unsubscribes."""

    async def compact(self, revision: int) -> None:
        """Drop history superseded at or before `revision`."""
