"""Pod binding (`POST pods/NAME/binding`) as kube-apiserver v1.32 answers it, over the memory
backend with mocked requests: the Binding's own checks (namespace, name, ValidatePodBinding's
500), mutating then validating CREATE webhooks and no pod UPDATE admission, the storage
preconditions and setPodHostAndAnnotations' conflicts, dry run, the watch event, and the stored
pod, which is what the general update path stores for the same change."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from kybern import storage
from kybern.api import errors, registry
from kybern.apiserver import cache, strategy
from kybern.apiserver import handlers_subresources as subs
from kybern.apiserver import store as storemod

Obj = dict[str, Any]
REG = registry.Registry()
_NS = REG.lookup("", "v1", "namespaces")
_POD = REG.lookup("", "v1", "pods")
assert _NS and _POD
NS: registry.Resource = _NS
POD: registry.Resource = _POD
NOW = "2026-01-02T03:04:05Z"


async def _store() -> storemod.Store:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    await s.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    return s


async def _close(s: storemod.Store) -> None:
    s.cacher.stop()
    await s.backend.close()


@pytest.fixture
async def s() -> AsyncIterator[storemod.Store]:
    store = await _store()
    yield store
    await _close(store)


def _pod(name: str, **extra: Any) -> Obj:
    p: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    for k, v in extra.items():
        p[k] = {**p.get(k, {}), **v}
    return p


def _binding(name: str, node: str | None = "n1", **meta: Any) -> Obj:
    target = {"kind": "Node", "name": node} if node is not None else {}
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **meta},
        "target": target,
    }


def _request(body: Any, query: str = "", name: str = "p") -> Any:
    protocol = mock.Mock(_reading_paused=False)
    reader = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    data = orjson.dumps(body)
    reader.feed_data(data)
    reader.feed_eof()
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": str(len(data))})
    path = f"/api/v1/namespaces/d/pods/{name}/binding{query}"
    return make_mocked_request("POST", path, headers=headers, payload=reader)


async def _bind(s: storemod.Store, body: Any, name: str = "p", query: str = "") -> web.Response:
    api: Any = SimpleNamespace(store=s)
    return await subs._bind(api, _request(body, query, name), POD, "d", name)


async def _error(s: storemod.Store, body: Any, name: str = "p") -> Obj:
    with pytest.raises(errors.StatusError) as e:
        await _bind(s, body, name)
    st: Obj = e.value.status()
    assert st["code"] == e.value.code
    return st


def _stored(s: storemod.Store, name: str = "p") -> Obj:
    c = s.peek(POD, "d", name)
    assert c is not None
    return orjson.loads(c.json)  # type: ignore[no-any-return]


async def test_binding_sets_node_annotations_and_condition(s: storemod.Store) -> None:
    created = await s.create(POD, "d", _pod("p", metadata={"annotations": {"a": "1", "b": "2"}}))
    resp = await _bind(s, _binding("p", annotations={"b": "3", "c": "4"}))
    assert resp.status == 201
    assert orjson.loads(resp.body) == {  # type: ignore[arg-type]
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    out = _stored(s)
    assert out["spec"]["nodeName"] == "n1"
    assert out["metadata"]["annotations"] == {"a": "1", "b": "3", "c": "4"}
    [cond] = out["status"]["conditions"]
    assert cond["type"] == "PodScheduled" and cond["status"] == "True"
    assert cond["lastProbeTime"] is None and cond["lastTransitionTime"]
    # no field tracking; the generation moves with the spec, as an update's
    assert out["metadata"]["managedFields"] == created["metadata"]["managedFields"]
    assert out["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert int(out["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_binding_dry_run_stores_nothing(s: storemod.Store) -> None:
    await s.create(POD, "d", _pod("p"))
    before = _stored(s)
    resp = await _bind(s, _binding("p"), query="?dryRun=All")
    assert resp.status == 201
    assert _stored(s) == before


async def test_binding_is_seen_by_a_bound_pods_watcher(s: storemod.Store) -> None:
    await s.create(POD, "d", _pod("p"))
    w = cache.Watcher("", s.make_filter(POD, "", "spec.nodeName!="))
    s.cacher.get(POD.key_prefix).watchers.add(w)
    await _bind(s, _binding("p"))
    ev = w.queue.get_nowait()
    assert ev is not None and ev.type == "ADDED"
    assert orjson.loads(ev.obj.json) == _stored(s)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (_binding("p", None), 500, "target.name: Required value"),
        (_binding("p", ""), 500, "target.name: Required value"),
        (
            {"kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Pod"}},
            500,
            '[target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>", '
            "target.name: Required value]",
        ),
        (_binding("q"), 400, "name in URL does not match name in Binding object"),
        ({"kind": "Binding"}, 400, "name in URL does not match name in Binding object"),
        (
            _binding("p", namespace="other"),
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
    ],
)
async def test_binding_checks_the_binding(
    s: storemod.Store, body: Obj, code: int, message: str
) -> None:
    await s.create(POD, "d", _pod("p"))
    st = await _error(s, body)
    assert (st["code"], st["message"]) == (code, message)
    if code == 500:  # kube: not a Status error, so reason Unknown (empty, left out)
        assert "reason" not in st and "details" not in st
    else:
        assert st["reason"] == "BadRequest"
    assert "nodeName" not in _stored(s)["spec"]


async def test_binding_target_kind_node_or_empty(s: storemod.Store) -> None:
    await s.create(POD, "d", _pod("p"))
    await s.create(POD, "d", _pod("q"))
    await _bind(s, {"kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "n1"}})
    await _bind(s, _binding("q"), name="q")
    assert _stored(s)["spec"]["nodeName"] == _stored(s, "q")["spec"]["nodeName"] == "n1"


def _conflict(kind: str, name: str, detail: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Operation cannot be fulfilled on {kind} "{name}": {detail}',
        "reason": "Conflict",
        "details": {"name": name, "kind": kind},
        "code": 409,
    }


async def test_binding_conflicts(s: storemod.Store) -> None:
    await s.create(POD, "d", _pod("p"))
    await _bind(s, _binding("p", "n1"))
    assert await _error(s, _binding("p", "n2")) == _conflict(
        "pods/binding", "p", 'pod p is already assigned to node "n1"'
    )
    await s.create(POD, "d", _pod("gone", metadata={"finalizers": ["x/y"]}))
    await s.delete(POD, "d", "gone", storemod.DeleteOptions())
    assert await _error(s, _binding("gone"), "gone") == _conflict(
        "pods/binding", "gone", "pod gone is being deleted, cannot be assigned to a host"
    )
    await s.create(POD, "d", _pod("gated", spec={"schedulingGates": [{"name": "g"}]}))
    assert await _error(s, _binding("gated"), "gated") == _conflict(
        "pods/binding", "gated", "pod gated has non-empty .spec.schedulingGates"
    )
    assert "nodeName" not in _stored(s, "gated")["spec"]


async def test_binding_preconditions(s: storemod.Store) -> None:
    created = await s.create(POD, "d", _pod("p"))
    uid, rv = created["metadata"]["uid"], created["metadata"]["resourceVersion"]
    key = POD.key("d", "p")
    storage_error = f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
    assert await _error(s, _binding("p", uid="other")) == _conflict(
        "pods",
        "p",
        storage_error + f"AdditionalErrorMsg: Precondition failed: UID in precondition: other, "
        f"UID in object meta: {uid}",
    )
    assert await _error(s, _binding("p", uid=uid, resourceVersion="1")) == _conflict(
        "pods",
        "p",
        storage_error + "AdditionalErrorMsg: Precondition failed: ResourceVersion in "
        f"precondition: 1, ResourceVersion in object meta: {rv}",
    )
    await _bind(s, _binding("p", uid=uid, resourceVersion=rv))
    assert _stored(s)["spec"]["nodeName"] == "n1"


async def test_binding_of_a_missing_pod_is_not_found(s: storemod.Store) -> None:
    st = await _error(s, _binding("nope"), "nope")
    assert (st["code"], st["reason"], st["message"]) == (404, "NotFound", 'pods "nope" not found')
    assert st["details"] == {"name": "nope", "kind": "pods"}


class _Webhooks:
    """What `Store.admitting` hands out, recording the calls; mutation adds an annotation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    def enabled(self) -> bool:
        return True

    async def mutate(self, a: Any, obj: Obj, old: Obj | None, *_: Any) -> Obj:
        self.calls.append(("mutate", a.operation, a.subresource, a.kind["kind"]))
        if a.kind["kind"] == "Binding":
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("annotations", {})["hooked"] = "yes"
        return obj

    async def validate(self, a: Any, obj: Obj, old: Obj | None) -> None:
        self.calls.append(("validate", a.operation, a.subresource, a.kind["kind"]))


async def test_binding_admission_is_create_of_the_binding_only(s: storemod.Store) -> None:
    await s.create(POD, "d", _pod("p"))
    hooks = _Webhooks()
    s.admission = hooks  # type: ignore[assignment]
    await _bind(s, _binding("p"))
    assert hooks.calls == [
        ("mutate", "CREATE", "binding", "Binding"),
        ("validate", "CREATE", "binding", "Binding"),
    ]
    assert _stored(s)["metadata"]["annotations"] == {"hooked": "yes"}
    hooks.calls.clear()  # a bad binding: mutated, refused before the validating webhooks
    await _error(s, _binding("p", None))
    assert hooks.calls == [("mutate", "CREATE", "binding", "Binding")]


def _conditions() -> st.SearchStrategy[list[Obj]]:
    cond = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["PodScheduled", "Ready", "Initialized"]),
            "status": st.sampled_from(["True", "False", "Unknown"]),
        },
        optional={
            "reason": st.sampled_from(["Unschedulable", "x"]),
            "message": st.text(max_size=5),
            "lastTransitionTime": st.sampled_from([NOW, "2020-01-01T00:00:00Z"]),
            "lastProbeTime": st.none(),
        },
    )
    return st.lists(cond, max_size=4)


def _the_long_way_condition(status: Obj, now: str) -> None:
    """kube's podutil.UpdatePodCondition(PodScheduled=True), written out."""
    conds = status.get("conditions") or []
    idx = next((i for i, c in enumerate(conds) if c.get("type") == "PodScheduled"), None)
    new = {"type": "PodScheduled", "status": "True", "lastProbeTime": None}
    if idx is None:
        status["conditions"] = [*conds, {**new, "lastTransitionTime": now}]
        return
    old = conds[idx]
    ltt = old.get("lastTransitionTime") if old.get("status") == "True" else now
    status["conditions"] = [*conds[:idx], {**new, "lastTransitionTime": ltt}, *conds[idx + 1 :]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conditions=_conditions(),
    pod_annotations=st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=3)),
    annotations=st.dictionaries(st.sampled_from(["b", "c"]), st.text(max_size=3)),
    labels=st.dictionaries(st.sampled_from(["app", "x"]), st.sampled_from(["v", "w"])),
)
def test_binding_stores_what_the_general_path_stores(
    conditions: list[Obj], pod_annotations: Obj, annotations: Obj, labels: Obj
) -> None:
    """The direct write stores what the general update path (strategy, validation, managed
    fields, hooks, generation) stores for the same change, and what kube's
    setPodHostAndAnnotations makes of the pod (with kybern's generation bump)."""

    async def run() -> None:
        s = await _store()
        try:
            meta: Obj = {"labels": labels}
            if pod_annotations:
                meta["annotations"] = pod_annotations
            for name in ("fast", "slow"):
                await s.create(POD, "d", _pod(name, metadata=meta))
                if conditions:  # as a scheduler's Unschedulable status update leaves them

                    def set_status(o: Obj) -> Obj:
                        o["status"]["conditions"] = copy.deepcopy(conditions)
                        return o

                    await s.guaranteed_update(POD, "d", name, set_status, subresource="status")
            want = _stored(s, "fast")
            with mock.patch.object(subs.objects, "now_rfc3339", return_value=NOW):
                await _bind(s, _binding("fast", annotations=annotations), "fast")
            fast = _stored(s, "fast")

            def bind(o: Obj) -> Obj:  # the binding's change, through the general path
                o["spec"]["nodeName"] = "n1"
                if annotations:
                    o["metadata"]["annotations"] = {
                        **(o["metadata"].get("annotations") or {}),
                        **annotations,
                    }
                _the_long_way_condition(o["status"], NOW)
                return o

            await s.guaranteed_update(
                POD, "d", "slow", bind, subresource="binding", field_manager=None
            )
            slow = _stored(s, "slow")
            # what kube's setPodHostAndAnnotations makes of the stored pod
            want["spec"]["nodeName"] = "n1"
            if annotations:
                want["metadata"]["annotations"] = {**pod_annotations, **annotations}
            _the_long_way_condition(want["status"], NOW)
            want["metadata"]["generation"] += 1
            for o in (fast, slow, want):
                o["metadata"].pop("resourceVersion")
            assert fast == want
            for o in (fast, slow):
                o["metadata"].pop("name")
                o["metadata"].pop("uid")
                o["metadata"].pop("creationTimestamp")
            assert fast == slow
        finally:
            await _close(s)

    asyncio.run(run())


async def test_direct_write_of_an_unchanged_object_writes_nothing(s: storemod.Store) -> None:
    created = await s.create(POD, "d", _pod("p"))
    out = await s.guaranteed_update(POD, "d", "p", lambda o: o, direct=True)
    assert out["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    c = s.peek(POD, "d", "p")
    assert c is not None and c.revision == int(created["metadata"]["resourceVersion"])
    # the same when the stored bytes cannot be handed to the cache (the marker in the data)
    marked = cache._RV_MARK

    def mark(o: Obj) -> Obj:
        o["metadata"]["annotations"] = {"m": marked}
        return o

    rv = (await s.guaranteed_update(POD, "d", "p", mark, direct=True))["metadata"]
    out = await s.guaranteed_update(POD, "d", "p", lambda o: o, direct=True)
    assert out["metadata"]["resourceVersion"] == rv["resourceVersion"]
