"""`kybern store migrate --from URL --to URL`: copy a cluster's state between stores (SQLite to
etcd and back) while the API servers are stopped. Every key under `/registry/` is read from one
consistent snapshot of the source (at its revision R) and created in the empty destination, in
key order, with progress on stderr. resourceVersions are remapped, not preserved: etcd cannot
set revisions, so each object's resourceVersion becomes the destination's revision of its copy
(objects are stored without it, so nothing inside them changes). So that no old resourceVersion
is ever taken to mean something else, the destination's revisions are first moved past R (SQLite:
its log starts after R; etcd: filler writes to an internal key, bounded by `--max-padding`) and it
is compacted to its newest revision at the end: a client that resumes a watch or a paged list
with a resourceVersion from before the migration gets 410 Gone and re-lists, as after any store
restore."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
import time
from typing import Any
from urllib.parse import urlparse

from kybern import storage

log = logging.getLogger("kybern.store")
PREFIX = "/registry/"
INTERNAL = PREFIX + "-/"  # the etcd backend's own keys (fence, compaction): never copied
PAD_KEY = INTERNAL + "migration"
PAGE = 500
PARALLEL = 64


class MigrationError(Exception):
    """A migration that cannot go on; the message says why and what to do."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "store", help="operate on a datastore (migrate between SQLite and etcd)"
    )
    sub = p.add_subparsers(dest="store_command", required=True)
    m = sub.add_parser(
        "migrate", help="copy every object to another, empty store", description=__doc__
    )
    m.add_argument("--from", dest="source", required=True, help="sqlite:///PATH or etcd://...")
    m.add_argument("--to", dest="dest", required=True, help="sqlite:///PATH or etcd://...")
    m.add_argument("--etcd-cafile", default="", help="CA bundle for etcds:// endpoints")
    m.add_argument("--etcd-certfile", default="", help="client certificate for etcds://")
    m.add_argument("--etcd-keyfile", default="", help="client key for etcds://")
    m.add_argument(
        "--max-padding",
        type=int,
        default=2_000_000,
        help="most filler writes to move an etcd destination's revision past the source's",
    )
    m.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _open(url: str, args: argparse.Namespace) -> storage.Backend:
    return storage.open_backend(
        url,
        etcd_cafile=args.etcd_cafile,
        etcd_certfile=args.etcd_certfile,
        etcd_keyfile=args.etcd_keyfile,
    )


def _sqlite_path(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        return None
    return parsed.netloc + parsed.path


def _start_sqlite_log_after(path: str, revision: int) -> None:
    """A new SQLite store whose log starts after `revision` (older revisions read as compacted;
    the file format is the backend's: `meta.compact_revision` bounds the next revision)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,))
        conn.commit()
    finally:
        conn.close()


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0

    def say(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self.last < 0.5):
            return
        self.last = now
        print(f"kybern store migrate: {text}", file=sys.stderr, flush=True)


async def _live_keys(store: storage.Backend) -> int:
    """How many objects (at most 1) the store holds; the internal keys sort first."""
    page = await store.list(PREFIX, start_key=INTERNAL[:-1] + "0", limit=1)
    return len(page.items)


async def _pad(dest: storage.Backend, past: int, limit: int, progress: Progress) -> None:
    """Filler writes (PARALLEL keys at a time) until the destination's revision is past
    `past`; the keys are deleted again."""
    need = past - dest.current_revision()
    if need <= 0:
        return
    if need > limit:
        raise MigrationError(
            f"the destination's revision is {need} behind the source's; moving it past would "
            f"take {need} writes (more than --max-padding={limit}): raise --max-padding"
        )
    progress.say(f"moving the destination's revision past {past} ({need} writes)", force=True)

    async def filler(i: int) -> None:
        key = f"{PAD_KEY}/{i}"
        kv = await dest.create(key, b"0")
        while dest.current_revision() < past:
            kv = await dest.update(key, b"0", kv.mod_revision)
            progress.say(f"revision {dest.current_revision()} of {past + 1}")
        await dest.delete(key)

    await asyncio.gather(*(filler(i) for i in range(min(PARALLEL, need))))


async def migrate(args: argparse.Namespace) -> int:
    progress = Progress(args.quiet)
    if args.source == args.dest:
        raise MigrationError("--from and --to name the same store")
    src_path = _sqlite_path(args.source)
    if src_path is not None and not await asyncio.to_thread(os.path.exists, src_path):
        raise MigrationError(f"the source {src_path} does not exist")
    source = _open(args.source, args)
    dest_path = _sqlite_path(args.dest)
    fresh_sqlite = dest_path is not None and not await asyncio.to_thread(os.path.exists, dest_path)
    dest = _open(args.dest, args)
    await source.start()
    try:
        snapshot = (await source.list(PREFIX, limit=1)).revision
        if fresh_sqlite:
            assert dest_path is not None
            await dest.start()  # creates the schema
            await dest.close()
            await asyncio.to_thread(_start_sqlite_log_after, dest_path, snapshot + 1)
            dest = _open(args.dest, args)
        await dest.start()
        try:
            if await _live_keys(dest):
                raise MigrationError(
                    f"{args.dest} already holds objects under {PREFIX}: migrate into an empty store"
                )
            await _pad(dest, snapshot, args.max_padding, progress)
            first = dest.current_revision() + 1
            copied = await _copy(source, dest, snapshot, progress)
            last = dest.current_revision()
            await dest.compact(last)
            count = 0
            start = ""
            while True:  # check: the destination now holds exactly what was copied
                page = await dest.list(PREFIX, start_key=start, limit=PAGE)
                count += sum(1 for kv in page.items if not kv.key.startswith(INTERNAL))
                if not page.more:
                    break
                start = page.items[-1].key + "\0"
            if count != copied:
                raise MigrationError(f"copied {copied} keys but the destination holds {count}")
        finally:
            await dest.close()
    finally:
        await source.close()
    progress.say(
        f"done: {copied} objects from revision {snapshot} of {args.source} to revisions "
        f"{first}..{last} of {args.dest}; resourceVersions were remapped and older ones now "
        "get 410 Gone (clients re-list)",
        force=True,
    )
    return 0


async def _copy(
    source: storage.Backend, dest: storage.Backend, revision: int, progress: Progress
) -> int:
    copied = 0
    start = ""
    while True:
        page = await source.list(PREFIX, revision=revision, start_key=start, limit=PAGE)
        items = [kv for kv in page.items if not kv.key.startswith(INTERNAL)]
        for i in range(0, len(items), PARALLEL):
            chunk = items[i : i + PARALLEL]
            results = await asyncio.gather(
                *(dest.create(kv.key, kv.value) for kv in chunk), return_exceptions=True
            )
            for kv, result in zip(chunk, results, strict=True):
                if isinstance(result, storage.KeyExistsError):
                    raise MigrationError(f"{kv.key} exists in the destination")
                if isinstance(result, BaseException):
                    raise result
            copied += len(chunk)
            last = not page.more and i + PARALLEL >= len(items)
            progress.say(f"copied {copied} objects", force=last)
        if not page.more:
            return copied
        start = page.items[-1].key + "\0"


async def run(args: argparse.Namespace) -> int:
    if args.store_command != "migrate":
        return 2
    try:
        return await migrate(args)
    except MigrationError as e:
        print(f"kybern store migrate: {e}", file=sys.stderr)
        return 1
    except (storage.StorageError, ValueError, OSError) as e:
        print(f"kybern store migrate: failed: {e}", file=sys.stderr)
        return 1
