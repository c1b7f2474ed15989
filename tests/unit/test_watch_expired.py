"""A watch from a revision that is neither in the watch cache's window nor in the store's
history gets Kubernetes' `ERROR` event with a `410 Expired` Status; one still in history is
replayed from the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kybern import storage
from kybern.api import registry
from kybern.apiserver import cache, handlers, strategy
from kybern.apiserver import store as storemod

REG = registry.Registry()


def _resource(plural: str) -> registry.Resource:
    res = REG.lookup("", "v1", plural)
    assert res is not None
    return res


NS = _resource("namespaces")
CM = _resource("configmaps")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TestClient[Any, Any], storemod.Store]]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    st = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    await st.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handlers.ApiHandler(st, REG).handle)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, st
    await client.close()
    cacher.stop()
    await backend.close()


async def _churn(st: storemod.Store, n: int) -> int:
    """`n` updates of one ConfigMap; returns the revision before them."""
    obj = await st.create(
        CM,
        "d",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"i": "0"}},
    )
    start = int(obj["metadata"]["resourceVersion"])
    for i in range(n):

        def bump(o: dict[str, Any], i: int = i) -> dict[str, Any]:
            o["data"] = {"i": str(i + 1)}
            return o

        await st.guaranteed_update(CM, "d", "c", bump)
    return start


async def _first_event(client: TestClient[Any, Any], rv: int) -> dict[str, Any]:
    resp = await client.get(
        f"/api/v1/namespaces/d/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=5"
    )
    assert resp.status == 200
    line = await resp.content.readline()
    resp.close()
    event: dict[str, Any] = orjson.loads(line)
    return event


async def test_compacted_revision_is_expired(
    setup: tuple[TestClient[Any, Any], storemod.Store],
) -> None:
    client, st = setup
    start = await _churn(st, cache.EVENT_WINDOW + 50)  # push `start` out of the cache window
    await st.backend.compact(st.backend.current_revision() - 10)
    ev = await _first_event(client, start)
    assert ev["type"] == "ERROR"
    assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert "too old resource version" in ev["object"]["message"]


async def test_old_revision_still_in_history_is_replayed(
    setup: tuple[TestClient[Any, Any], storemod.Store],
) -> None:
    client, st = setup
    start = await _churn(st, cache.EVENT_WINDOW + 50)  # out of the window, not compacted
    ev = await _first_event(client, start)
    assert ev["type"] == "MODIFIED"
    assert ev["object"]["data"] == {"i": "1"}
    assert int(ev["object"]["metadata"]["resourceVersion"]) == start + 1
