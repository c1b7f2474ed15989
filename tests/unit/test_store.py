"""White-box tests of the generic store and the watch cache over the memory backend."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kybern import storage
from kybern.api import errors, registry
from kybern.apiserver import cache, strategy
from kybern.apiserver import store as storemod

REG = registry.Registry()
NS = REG.lookup("", "v1", "namespaces")
CM = REG.lookup("", "v1", "configmaps")
POD = REG.lookup("", "v1", "pods")
DEPLOY = REG.lookup("apps", "v1", "deployments")
assert NS and CM and POD and DEPLOY


@pytest.fixture
async def st() -> AsyncIterator[storemod.Store]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    await s.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    yield s
    cacher.stop()
    await backend.close()


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def test_create_fills_metadata_and_rejects_duplicates(st: storemod.Store) -> None:
    out = await st.create(CM, "d", cm("a"))
    meta = out["metadata"]
    assert meta["namespace"] == "d" and meta["uid"] and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > 0 and "generation" not in meta
    with pytest.raises(errors.StatusError) as e:
        await st.create(CM, "d", cm("a"))
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"


async def test_missing_namespace_is_not_found(st: storemod.Store) -> None:
    with pytest.raises(errors.StatusError) as e:
        await st.create(CM, "nope", cm("a"))
    assert e.value.code == 404 and 'namespaces "nope" not found' in e.value.message


async def test_generation_tracks_spec_only(st: storemod.Store) -> None:
    d = await st.create(DEPLOY, "d", deployment("web"))
    assert d["metadata"]["generation"] == 1

    def relabel(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"]["labels"] = {"x": "y"}
        return o

    d = await st.guaranteed_update(DEPLOY, "d", "web", relabel)
    assert d["metadata"]["generation"] == 1

    def scale(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["replicas"] = 5
        return o

    d = await st.guaranteed_update(DEPLOY, "d", "web", scale)
    assert d["metadata"]["generation"] == 2


async def test_stale_update_conflicts(st: storemod.Store) -> None:
    first = await st.create(CM, "d", cm("a"))
    stale = copy.deepcopy(first) | {"data": {"k": "1"}}
    await st.update(CM, "d", "a", copy.deepcopy(first) | {"data": {"k": "2"}})
    with pytest.raises(errors.StatusError) as e:
        await st.update(CM, "d", "a", stale)
    assert e.value.code == 409 and e.value.reason == "Conflict"


async def test_status_and_spec_are_split(st: storemod.Store) -> None:
    await st.create(DEPLOY, "d", deployment("web"))

    def both(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["replicas"] = 7
        o["status"] = {"replicas": 3}
        return o

    main = await st.guaranteed_update(DEPLOY, "d", "web", both)
    assert main["spec"]["replicas"] == 7 and "status" not in main
    status = await st.guaranteed_update(
        DEPLOY,
        "d",
        "web",
        lambda o: both(o) and {**o, "spec": {**o["spec"], "replicas": 9}},
        subresource="status",
    )
    assert status["status"] == {"replicas": 3} and status["spec"]["replicas"] == 7


async def test_finalizers_hold_deletion(st: storemod.Store) -> None:
    obj = cm("f")
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    await st.create(CM, "d", obj)
    marked, gone = await st.delete(CM, "d", "f", storemod.DeleteOptions())
    assert not gone and marked["metadata"]["deletionTimestamp"]

    def release(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"]["finalizers"] = []
        return o

    await st.guaranteed_update(CM, "d", "f", release)
    assert st.peek(CM, "d", "f") is None


async def test_bound_pod_deletion_is_graceful(st: storemod.Store) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    }
    await st.create(POD, "d", pod)
    marked, gone = await st.delete(POD, "d", "p", storemod.DeleteOptions())
    assert not gone and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    _, gone = await st.delete(POD, "d", "p", storemod.DeleteOptions(grace_period=0))
    assert gone and st.peek(POD, "d", "p") is None


async def test_paginated_list_is_a_snapshot(st: storemod.Store) -> None:
    for i in range(5):
        await st.create(CM, "d", cm(f"c{i}", app="x"))
    page = await st.list(CM, "d", storemod.ListOptions(limit=2))
    names = [o.obj["metadata"]["name"] for o in page.items]
    assert page.continue_token and page.remaining == 3
    await st.create(CM, "d", cm("c9", app="x"))  # not in the snapshot
    await st.delete(CM, "d", "c4", storemod.DeleteOptions())  # still in the snapshot
    token = page.continue_token
    while token:
        page = await st.list(CM, "d", storemod.ListOptions(limit=2, continue_token=token))
        names += [o.obj["metadata"]["name"] for o in page.items]
        token = page.continue_token
    assert names == [f"c{i}" for i in range(5)]


async def test_label_selector_list(st: storemod.Store) -> None:
    await st.create(CM, "d", cm("a", tier="web"))
    await st.create(CM, "d", cm("b", tier="db"))
    res = await st.list(CM, "d", storemod.ListOptions(label_selector="tier in (web)"))
    assert [o.obj["metadata"]["name"] for o in res.items] == ["a"]


async def test_filtered_watcher_sees_objects_leave_and_enter(st: storemod.Store) -> None:
    flt = st.make_filter(CM, "tier=web", "")
    w = cache.Watcher("d", flt)
    st.cacher.get(CM.key_prefix).watchers.add(w)
    await st.create(CM, "d", cm("a", tier="db"))

    def to(tier: str) -> Any:
        def mutate(o: dict[str, Any]) -> dict[str, Any]:
            o["metadata"]["labels"] = {"tier": tier}
            return o

        return mutate

    await st.guaranteed_update(CM, "d", "a", to("web"))
    await st.guaranteed_update(CM, "d", "a", to("db"))
    types = []
    while not w.queue.empty():
        ev = w.queue.get_nowait()
        assert ev is not None
        types.append(ev.type)
    assert types == ["ADDED", "DELETED"]


@pytest.mark.parametrize(
    ("policy", "finalizer"), [("Foreground", "foregroundDeletion"), ("Orphan", "orphan")]
)
async def test_propagation_policy_adds_gc_finalizer(
    st: storemod.Store, policy: str, finalizer: str
) -> None:
    await st.create(DEPLOY, "d", deployment("web"))
    marked, gone = await st.delete(DEPLOY, "d", "web", storemod.DeleteOptions(propagation=policy))
    assert not gone
    assert marked["metadata"]["finalizers"] == [finalizer]
    assert marked["metadata"]["deletionTimestamp"]


async def test_background_deletes_at_once(st: storemod.Store) -> None:
    await st.create(DEPLOY, "d", deployment("web"))
    _, gone = await st.delete(DEPLOY, "d", "web", storemod.DeleteOptions(propagation="Background"))
    assert gone and st.peek(DEPLOY, "d", "web") is None
