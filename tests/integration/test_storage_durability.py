"""Durability and boundedness of the SQLite store on a real file. A child process writes with
`SqliteBackend` and prints each write it got acknowledged; the test SIGKILLs it mid-stream and
checks that every acknowledged write is in the reopened database. A second test overwrites the
same keys many times with compaction in between and checks that rows, database file and WAL
stop growing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from kybern.storage.sqlite import SqliteBackend

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, itertools, sys
from kybern.storage.sqlite import SqliteBackend

async def main(path: str) -> None:
    store = SqliteBackend(path, compact_interval=0)
    await store.start()
    numbers = itertools.count()

    def ack(key: str, revision: int) -> None:
        sys.stdout.write(f"{key} {revision}\\n")
        sys.stdout.flush()

    async def worker() -> None:
        for i in numbers:
            kv = await store.create(f"/registry/acks/{i:08d}", b"v" * 200)
            ack(kv.key, kv.mod_revision)
            kv = await store.update(kv.key, b"w" * 200, kv.mod_revision)
            ack(kv.key, kv.mod_revision)

    await asyncio.gather(*(worker() for _ in range(16)))

asyncio.run(main(sys.argv[1]))
"""


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: dict[str, int] = {}

    def record(line: bytes) -> None:
        key, revision = line.decode().split()
        acked[key] = max(acked.get(key, 0), int(revision))

    lines = 0
    deadline = time.monotonic() + 60
    try:
        while lines < 3000:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {lines} acknowledgements before the deadline"
            line = await asyncio.wait_for(proc.stdout.readline(), remaining)
            if not line:
                err = await proc.stderr.read()
                raise AssertionError(f"writer exited early: {err.decode()}")
            record(line)
            lines += 1
    finally:
        proc.send_signal(signal.SIGKILL)
    # whatever the child printed before it died was acknowledged too
    # (a last line without its newline was cut short by the kill: not an acknowledgement)
    for line in (await proc.stdout.read()).split(b"\n")[:-1]:
        record(line)
    assert await proc.wait() == -signal.SIGKILL

    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    try:
        assert store.current_revision() >= max(acked.values())
        listed = {kv.key: kv for kv in (await store.list("/registry/acks/")).items}
        missing = [key for key in acked if key not in listed]
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"
        for key, revision in acked.items():
            assert listed[key].mod_revision >= revision
        # the store keeps working after the crash, and revisions continue upwards
        kv = await store.create("/registry/acks/after", b"x")
        assert kv.mod_revision == store.current_revision() > max(acked.values())
    finally:
        await store.close()


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def row_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count: int = conn.execute("SELECT count(*) FROM kv").fetchone()[0]
        return count
    finally:
        conn.close()


async def test_overwrites_with_compaction_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    wal = tmp_path / "state.db-wal"
    keys, rounds = 20, 150
    store = SqliteBackend(
        str(path), compact_interval=0, compact_keep_revisions=0, compact_min_age=0
    )
    await store.start()
    try:
        current = {
            f"/registry/cm/{i}": (await store.create(f"/registry/cm/{i}", b"x")).mod_revision
            for i in range(keys)
        }
        db_sizes: list[int] = []
        for _cycle in range(5):
            for r in range(rounds):
                value = os.urandom(64) * (8 + r % 8)  # 0.5-1 KiB, incompressible
                updated = await asyncio.gather(
                    *(store.update(key, value, rev) for key, rev in current.items())
                )
                current = {kv.key: kv.mod_revision for kv in updated}
            assert row_count(path) > keys * rounds  # the history is all there
            grown = file_size(path) + file_size(wal)
            await store.compact(store.current_revision())
            assert store.compact_revision() == store.current_revision()
            assert row_count(path) == keys  # one row per live key is left
            assert file_size(wal) == 0  # checkpointed and truncated
            assert file_size(path) < grown
            db_sizes.append(file_size(path))
        # free pages are returned (incremental vacuum): the file does not creep upwards
        # (a few pages of slack: how rows pack into pages varies with the random values)
        assert max(db_sizes) <= db_sizes[0] + 8 * 4096
        listed = await store.list("/registry/cm/")
        assert {kv.key: kv.mod_revision for kv in listed.items} == current
    finally:
        await store.close()
