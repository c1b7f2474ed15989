"""Picks a storage backend by URL scheme: `sqlite:///abs/path.db` (the default, embedded) and
`memory://` (unit tests only). Later schemes (etcd://) register here."""

from __future__ import annotations

from urllib.parse import urlparse

from kybern.storage.interface import Backend


def open_backend(url: str) -> Backend:
    """Return an unstarted backend for `url`; raises ValueError with a hint for bad URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from kybern.storage import sqlite

        path = parsed.path
        if parsed.netloc:  # sqlite://relative/path.db
            path = parsed.netloc + path
        if not path:
            raise ValueError(f"{url!r}: give a file, e.g. sqlite:///var/lib/kybern/state.db")
        return sqlite.SqliteBackend(path)
    if parsed.scheme == "memory":
        from kybern.storage import memory

        return memory.MemoryBackend()
    raise ValueError(
        f"unsupported datastore endpoint {url!r}: use sqlite:///PATH (or memory:// for tests)"
    )
