"""The storage conformance suite on a real etcd (a 1-member cluster for the module): every test
function of tests/unit/test_storage_contract.py runs here with an `EtcdBackend` that has a key
prefix of its own per test; then etcd-only behaviour: two backends on one etcd (one's writes
reach the other's subscribers; `latest_revision` makes reads after them consistent), a watch
that resumes where it stopped after the member restarts, keys written by another program, and
the URL factory."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from test_etcd_support import EtcdCluster, etcd_cluster

from kybern.storage import Backend, Event, UnavailableError, open_backend
from kybern.storage.etcd import EtcdBackend
from kybern.storage.etcd_client import EtcdClient


def _load(name: str) -> dict[str, Any]:
    path = Path(__file__).resolve().parents[1] / "unit" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kybern_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return vars(module)


_CONTRACT = _load("test_storage_contract")
StoreMachine = _load("test_storage_model")["StoreMachine"]
# the shared tests, collected here again with this module's `backend` fixture
globals().update({n: f for n, f in _CONTRACT.items() if n.startswith("test_") and callable(f)})


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as c:
        yield c


def make(cluster: EtcdCluster, prefix: str, **kw: object) -> EtcdBackend:
    return EtcdBackend(
        [m.endpoint for m in cluster.members],
        key_prefix=prefix,
        watch_prefix="",
        compact_interval=0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def backend(cluster: EtcdCluster) -> AsyncIterator[Backend]:
    store = make(cluster, f"/test-{uuid.uuid4().hex[:8]}")
    await store.start()
    yield store
    await store.close()


def test_model_on_etcd(cluster: EtcdCluster) -> None:
    """The hypothesis model of tests/unit/test_storage_model.py, on etcd."""

    class EtcdMachine(StoreMachine):  # type: ignore[misc,valid-type]
        def make_store(self) -> Backend:
            return make(cluster, f"/model-{uuid.uuid4().hex[:8]}")

    run_state_machine_as_test(
        EtcdMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def test_two_backends_share_one_etcd(cluster: EtcdCluster) -> None:
    prefix = f"/two-{uuid.uuid4().hex[:8]}"
    a, b = make(cluster, prefix), make(cluster, prefix)
    await a.start()
    await b.start()
    try:
        seen: list[Event] = []
        b.subscribe(lambda evs: seen.extend(evs))
        kv = await a.create("/r/x", b"1")
        kv = await a.update("/r/x", b"2", kv.mod_revision)
        # a consistent read on b: once its subscribers reach this revision they have the write
        latest = await b.latest_revision()
        assert latest >= kv.mod_revision
        assert [e.kv for e in seen if e.kv.mod_revision <= latest][-1] == kv
        assert b.current_revision() >= kv.mod_revision
        assert await b.get("/r/x") == kv
        assert (await b.list("/r/")).items == [kv]
        events = await b.events_since("/r/", kv.create_revision - 1)
        assert [e.kv.value for e in events] == [b"1", b"2"]
    finally:
        await a.close()
        await b.close()


async def test_history_before_start_needs_a_fence(cluster: EtcdCluster) -> None:
    """A backend started after the writes has delivered no event yet: `events_since` still
    finds its end (by writing the fence key inside the watched range)."""
    prefix = f"/late-{uuid.uuid4().hex[:8]}"
    early = make(cluster, prefix)
    await early.start()
    first = await early.create("/r/a", b"1")
    await early.delete("/r/a")
    await early.close()
    late = make(cluster, prefix)
    await late.start()
    try:
        events = await late.events_since("/r/", first.mod_revision - 1)
        assert [(e.type.value, e.kv.mod_revision) for e in events] == [
            ("PUT", first.mod_revision),
            ("DELETE", first.mod_revision + 1),
        ]
    finally:
        await late.close()


async def test_foreign_writes_outside_the_watched_range(cluster: EtcdCluster) -> None:
    """Another program writes outside the watched prefix: etcd's revision moves on without an
    event for us, and `latest_revision` must still come back (through the fence)."""
    prefix = f"/foreign-{uuid.uuid4().hex[:8]}"
    store = EtcdBackend(
        [m.endpoint for m in cluster.members],
        key_prefix=prefix,
        watch_prefix="/registry/",
        compact_interval=0,
        fence_after=0.05,
    )
    await store.start()
    other = EtcdClient([m.endpoint for m in cluster.members])
    await other.start()
    try:
        kv = await store.create("/registry/pods/a", b"x")
        await other.put(f"{prefix}/elsewhere".encode(), b"y")
        latest = await store.latest_revision()
        assert latest >= kv.mod_revision
        assert store.current_revision() > kv.mod_revision + 1  # the fence's event arrived
    finally:
        await other.close()
        await store.close()


async def test_watch_resumes_after_member_restart() -> None:
    with etcd_cluster(1) as c:
        store = make(c, "/resume")
        await store.start()
        try:
            seen: list[Event] = []
            store.subscribe(lambda evs: seen.extend(evs))
            before = await store.create("/r/a", b"1")
            c.kill(0)
            with pytest.raises(UnavailableError):
                await store.create("/r/b", b"2")
            c.restart(0)
            await asyncio.to_thread(c.wait_healthy)
            after = await store.create("/r/c", b"3")
            assert [e.kv.key for e in seen] == ["/r/a", "/r/c"]
            assert after.mod_revision == before.mod_revision + 1
            assert store.watch_error == ""
        finally:
            await store.close()


async def test_tls_with_client_certificates() -> None:
    """`etcds://` with the CA and a client certificate: etcd requires the certificate."""
    with etcd_cluster(1, tls=True) as c:
        assert c.pki is not None
        store = open_backend(
            c.url + "?prefix=/tls",
            etcd_cafile=str(c.pki.ca_cert),
            etcd_certfile=str(c.pki.admin_cert),
            etcd_keyfile=str(c.pki.admin_key),
        )
        await store.start()
        try:
            seen: list[Event] = []
            store.subscribe(lambda evs: seen.extend(evs))
            kv = await store.create("/registry/configmaps/default/a", b"x")
            assert await store.get(kv.key) == kv
            assert [e.kv for e in seen] == [kv]
            assert await store.latest_revision() == kv.mod_revision
        finally:
            await store.close()
