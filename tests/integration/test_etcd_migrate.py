"""`kybern store migrate`: SQLite → etcd → SQLite on a real etcd. Every object arrives with its
value; resourceVersions are remapped past the source's revision and the destination is
compacted, so an old resourceVersion reads as compacted (410) instead of meaning something
else; a `kybern server` on the migrated etcd serves the objects; a non-empty destination and
a missing source are refused with a clear message."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from test_etcd_apiservers import etcd_servers
from test_etcd_support import EtcdCluster, etcd_cluster

from kybern.storage import CompactedError, KeyValue
from kybern.storage.etcd import EtcdBackend
from kybern.storage.sqlite import SqliteBackend


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as c:
        yield c


def migrate(source: str, dest: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kybern", "store", "migrate", "--from", source, "--to", dest],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def configmap(name: str, n: int) -> bytes:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": {"n": str(n)},
    }
    return json.dumps(obj).encode()


async def seed(path: Path) -> tuple[list[KeyValue], int]:
    store = SqliteBackend(str(path), compact_interval=0)
    await store.start()
    try:
        for i in range(120):
            kv = await store.create(f"/registry/configmaps/default/cm-{i:03d}", configmap("x", 0))
            await store.update(kv.key, configmap(f"cm-{i:03d}", i), kv.mod_revision)
        for i in range(0, 120, 10):
            await store.delete(f"/registry/configmaps/default/cm-{i:03d}")
        items = (await store.list("/registry/")).items
        return items, store.current_revision()
    finally:
        await store.close()


async def read_etcd(cluster: EtcdCluster, prefix: str) -> tuple[list[KeyValue], EtcdBackend]:
    store = EtcdBackend([m.endpoint for m in cluster.members], key_prefix=prefix)
    await store.start()
    return (await store.list("/registry/")).items, store


def test_sqlite_to_etcd_and_back(cluster: EtcdCluster) -> None:
    base = Path(tempfile.mkdtemp(prefix="kybern-migrate-"))
    source = base / "state.db"
    items, source_rev = asyncio.run(seed(source))
    assert len(items) == 108
    target = f"{cluster.url}?prefix=/mig"
    done = migrate(f"sqlite://{source}", target)
    assert done.returncode == 0, done.stderr
    assert "done: 108 objects" in done.stderr and "copied" in done.stderr

    async def check_etcd() -> int:
        got, store = await read_etcd(cluster, "/mig")
        try:
            assert [(kv.key, kv.value) for kv in got] == [(kv.key, kv.value) for kv in items]
            assert min(kv.mod_revision for kv in got) > source_rev  # remapped past the source
            assert store.compact_revision() == store.current_revision()
            with pytest.raises(CompactedError):
                await store.list("/registry/", revision=source_rev)
            return store.current_revision()
        finally:
            await store.close()

    etcd_rev = asyncio.run(check_etcd())
    # a server on the migrated etcd serves the objects
    with etcd_servers(target, 1) as (srv,):
        got = srv.kubectl_json("get", "configmap", "cm-001")
        assert got["data"] == {"n": "1"}
        assert int(got["metadata"]["resourceVersion"]) > source_rev

    back = base / "back.db"
    done = migrate(target, f"sqlite://{back}")
    assert done.returncode == 0, done.stderr

    async def check_sqlite() -> None:
        store = SqliteBackend(str(back), compact_interval=0)
        await store.start()
        try:
            got = [kv for kv in (await store.list("/registry/")).items if "/-/" not in kv.key]
            by_key = {kv.key: kv.value for kv in got}
            for kv in items:
                assert by_key[kv.key] == kv.value
            assert len(got) >= len(items)  # plus what the server above wrote (namespaces...)
            assert min(kv.mod_revision for kv in got) > etcd_rev
            with pytest.raises(CompactedError):
                await store.list("/registry/", revision=etcd_rev)
        finally:
            await store.close()

    asyncio.run(check_sqlite())
    refused = migrate(f"sqlite://{source}", target)
    assert refused.returncode == 1 and "already holds objects" in refused.stderr
    missing = migrate(f"sqlite://{base}/nope.db", f"{cluster.url}?prefix=/other")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
