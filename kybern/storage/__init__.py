"""The storage contract: a revisioned key-value store with etcd semantics (as kine carries them
over SQL). Every write gets the next global revision; reads and watches are by revision. The API
server is the only user; backends are picked by URL scheme through `open_backend`."""

from kybern.storage.factory import open_backend
from kybern.storage.interface import (
    Backend,
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

__all__ = [
    "Backend",
    "CompactedError",
    "ConflictError",
    "Event",
    "EventType",
    "KeyExistsError",
    "KeyValue",
    "ListResult",
    "NotFoundError",
    "StorageError",
    "UnavailableError",
    "WatchCallback",
    "open_backend",
]
