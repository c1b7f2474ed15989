"""`componentstatuses` and the legacy `bindings` resource as kube-apiserver v1.32 serves them,
through the REST handler over the memory backend with mocked requests: the health of the
scheduler and controller manager from their leader Leases, of the store from the /readyz
check, kube's objects, list, Table, selectors, errors and deprecation warning; and
`POST namespaces/NS/bindings`, which binds the pod the Binding names as `pods/NAME/binding`
does, admitted as a create of `bindings`."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from kybern import storage
from kybern.api import registry
from kybern.apiserver import cache, componentstatuses, handlers, printers, reviews, strategy
from kybern.apiserver import store as storemod
from kybern.controllers import manager
from kybern.scheduler import scheduler

Obj = dict[str, Any]
WARNING = '299 - "v1 ComponentStatus is deprecated in v1.19+"'
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
NOW = 1_700_000_000.0
NS = registry.BUILTIN[0]


def _micro(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease(holder: str | None, renewed: float | None, duration: Any = 15) -> Obj:
    spec: Obj = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    if renewed is not None:
        spec["renewTime"] = _micro(renewed)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}


# ---- the health of one component -------------------------------------------------------------


def test_the_lease_names_are_the_components_own() -> None:
    assert componentstatuses.LEASES == {
        "scheduler": scheduler.LEASE_NAME,
        "controller-manager": manager.LEASE_NAME,
    }
    assert componentstatuses.LEASE_NAMESPACE == manager.LEASE_NAMESPACE == "kube-system"


def test_a_lease_renewed_within_its_duration_is_healthy() -> None:
    ok = {"type": "Healthy", "status": "True", "message": "ok"}
    assert componentstatuses.lease_condition("l", _lease("me", NOW - 14.9), NOW) == ok
    assert componentstatuses.lease_condition("l", _lease("me", NOW - 15), NOW) == ok
    assert componentstatuses.lease_condition("l", _lease("me", NOW - 1, 2.5), NOW) == ok


@pytest.mark.parametrize(
    ("lease", "message"),
    [
        (None, "no leader: lease kube-system/l not found"),
        (_lease(None, NOW), "no leader: lease kube-system/l is not held"),
        (_lease("", NOW), "no leader: lease kube-system/l is not held"),  # released
        (
            _lease("me", NOW - 16),
            "no leader: lease kube-system/l of me expired "
            f"(renewTime {_micro(NOW - 16)}, leaseDurationSeconds 15)",
        ),
        (
            _lease("me", None),
            "no leader: lease kube-system/l of me expired "
            "(renewTime <none>, leaseDurationSeconds 15)",
        ),
        (
            _lease("me", NOW - 1, None),
            "no leader: lease kube-system/l of me expired "
            f"(renewTime {_micro(NOW - 1)}, leaseDurationSeconds 0)",
        ),
    ],
)
def test_a_missing_free_or_lapsed_lease_is_unhealthy(lease: Obj | None, message: str) -> None:
    cond = componentstatuses.lease_condition("l", lease, NOW)
    assert cond == {"type": "Healthy", "status": "False", "message": message}


def test_the_store_condition_puts_the_problem_in_error() -> None:
    assert componentstatuses.store_condition("") == {
        "type": "Healthy",
        "status": "True",
        "message": "ok",
    }
    assert componentstatuses.store_condition("timed out") == {
        "type": "Healthy",
        "status": "False",
        "error": "timed out",
    }


class _Backend:
    def __init__(self, outcome: BaseException | None = None, hang: bool = False) -> None:
        self.outcome, self.hang = outcome, hang

    async def latest_revision(self) -> int:
        if self.hang:
            await asyncio.Event().wait()
        if self.outcome is not None:
            raise self.outcome
        return 7


async def test_the_store_check_is_the_readiness_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(b: _Backend) -> componentstatuses.StoreCheck:
        return componentstatuses.store_check(b)  # type: ignore[arg-type]

    assert await check(_Backend())() == ""
    assert await check(_Backend(storage.UnavailableError("no quorum")))() == "no quorum"
    assert await check(_Backend(storage.StorageError()))() == "StorageError"
    monkeypatch.setattr(componentstatuses, "STORE_TIMEOUT", 0.01)
    assert await check(_Backend(hang=True))() == "timed out"


@pytest.mark.parametrize(
    ("conditions", "cells"),
    [
        ([{"type": "Healthy", "status": "True", "message": "ok"}], ["Healthy", "ok", ""]),
        ([{"type": "Healthy", "status": "False", "error": "e"}], ["Unhealthy", "", "e"]),
        ([{"type": "Healthy", "status": "Unknown", "message": "m"}], ["Unhealthy", "m", ""]),
        ([{"type": "Other", "status": "True"}], ["Unknown", "", ""]),
        ([], ["Unknown", "", ""]),
    ],
)
def test_the_printer_is_kubes(conditions: list[Obj], cells: list[str]) -> None:
    p = printers.PRINTERS[("", "ComponentStatus")]
    assert [c["name"] for c in p.columns] == ["Name", "Status", "Message", "Error"]
    obj = {"metadata": {"name": "x"}, "conditions": conditions}
    assert p.row(obj, NOW) == ["x", *cells]


# ---- through the handler ---------------------------------------------------------------------


class Api:
    def __init__(self, st: storemod.Store, reg: registry.Registry) -> None:
        self.store = st
        self.handler = handlers.ApiHandler(st, reg)

    async def call(
        self, method: str, path: str, body: Any = None, accept: str = "application/json"
    ) -> tuple[int, Any, list[str]]:
        headers = CIMultiDict({"Accept": accept})
        payload: Any = None
        if body is not None:
            reader = streams.StreamReader(
                mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
            )
            data = orjson.dumps(body)
            reader.feed_data(data)
            reader.feed_eof()
            headers.update({"Content-Type": "application/json", "Content-Length": str(len(data))})
            payload = reader
        request = make_mocked_request(method, path, headers=headers, payload=payload)
        resp = await self.handler.handle(request)
        assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
        return resp.status, orjson.loads(resp.body), resp.headers.getall("Warning", [])


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    reg = registry.Registry((*registry.BUILTIN, *reviews.VIRTUAL))
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    st = storemod.Store(backend, cacher, reg, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    a = Api(st, reg)  # adds the computed kinds, which have no storage
    await cacher.start(sorted({r.key_prefix for r in reg.all() if not r.virtual}))
    for ns in ("kube-system", "d"):
        await st.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    yield a
    cacher.stop()
    await backend.close()


LEASES = next(r for r in registry.BUILTIN if r.kind == "Lease")
PODS = next(r for r in registry.BUILTIN if r.kind == "Pod")


def _status(name: str, condition: Obj) -> Obj:
    return {"metadata": {"name": name, "creationTimestamp": None}, "conditions": [condition]}


def _down(lease: str) -> Obj:
    return {
        "type": "Healthy",
        "status": "False",
        "message": f"no leader: lease kube-system/{lease} not found",
    }


OK = {"type": "Healthy", "status": "True", "message": "ok"}


async def test_list_and_get_with_the_deprecation_warning(api: Api) -> None:
    code, body, warnings = await api.call("GET", "/api/v1/componentstatuses")
    assert (code, warnings) == (200, [WARNING])
    assert body == {
        "kind": "ComponentStatusList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [
            _status("scheduler", _down("kybern-scheduler")),
            _status("controller-manager", _down("kybern-controller-manager")),
            _status("etcd-0", OK),
        ],
    }
    code, body, warnings = await api.call("GET", "/api/v1/componentstatuses/etcd-0")
    assert (code, warnings) == (200, [WARNING])
    assert body == {"kind": "ComponentStatus", "apiVersion": "v1", **_status("etcd-0", OK)}


async def test_a_held_lease_makes_its_component_healthy(api: Api) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kybern-scheduler", "namespace": "kube-system"},
        "spec": {"holderIdentity": "h_1", "leaseDurationSeconds": 15, "renewTime": now},
    }
    await api.store.create(LEASES, "kube-system", lease)
    code, body, _ = await api.call("GET", "/api/v1/componentstatuses/scheduler")
    assert (code, body["conditions"]) == (200, [OK])
    code, body, _ = await api.call("GET", "/api/v1/componentstatuses/controller-manager")
    assert body["conditions"] == [_down("kybern-controller-manager")]


async def test_the_table_is_kubes(api: Api) -> None:
    code, body, warnings = await api.call("GET", "/api/v1/componentstatuses", accept=TABLE)
    assert (code, warnings) == (200, [WARNING])
    assert body["kind"] == "Table" and body["metadata"] == {}
    assert [(c["name"], c["description"]) for c in body["columnDefinitions"][1:]] == [
        ("Status", "Status of the component conditions"),
        ("Message", "Message of the component conditions"),
        ("Error", "Error of the component conditions"),
    ]
    assert [r["cells"] for r in body["rows"]] == [
        ["scheduler", "Unhealthy", "no leader: lease kube-system/kybern-scheduler not found", ""],
        [
            "controller-manager",
            "Unhealthy",
            "no leader: lease kube-system/kybern-controller-manager not found",
            "",
        ],
        ["etcd-0", "Healthy", "ok", ""],
    ]
    assert body["rows"][2]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "etcd-0", "creationTimestamp": None},
    }
    path = "/api/v1/componentstatuses/etcd-0?includeObject=Object"
    code, body, _ = await api.call("GET", path, accept=TABLE)
    assert body["rows"] == [
        {
            "cells": ["etcd-0", "Healthy", "ok", ""],
            "object": {"kind": "ComponentStatus", "apiVersion": "v1", **_status("etcd-0", OK)},
        }
    ]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("fieldSelector=metadata.name%3Detcd-0", ["etcd-0"]),
        ("fieldSelector=metadata.name!%3Detcd-0", ["scheduler", "controller-manager"]),
        ("fieldSelector=metadata.namespace%3D", ["scheduler", "controller-manager", "etcd-0"]),
        ("fieldSelector=metadata.namespace%3Dx", []),
        ("labelSelector=a%3Db", []),
        ("labelSelector=!a", ["scheduler", "controller-manager", "etcd-0"]),
        ("limit=1&resourceVersion=0", ["scheduler", "controller-manager", "etcd-0"]),
    ],
)
async def test_list_selectors(api: Api, query: str, names: list[str]) -> None:
    code, body, _ = await api.call("GET", "/api/v1/componentstatuses?" + query)
    assert code == 200
    assert [i["metadata"]["name"] for i in body["items"]] == names


@pytest.mark.parametrize(
    ("method", "path", "code", "message", "warned"),
    [
        ("GET", "/api/v1/componentstatuses/nope", 500, "Component not found: nope", True),
        (
            "GET",
            "/api/v1/componentstatuses?fieldSelector=status%3Dx",
            400,
            '"status" is not a known field selector: only "metadata.name", "metadata.namespace"',
            True,
        ),
        (
            "GET",
            "/api/v1/componentstatuses?watch=true",
            405,
            'watch is not supported on resources of kind "componentstatuses"',
            True,
        ),
        (
            "DELETE",
            "/api/v1/componentstatuses/etcd-0",
            405,
            "the server does not allow this method on the requested resource",
            False,
        ),
        (
            "POST",
            "/api/v1/componentstatuses",
            405,
            "the server does not allow this method on the requested resource",
            False,
        ),
        (
            "GET",
            "/api/v1/watch/componentstatuses",
            404,
            "the server could not find the requested resource",
            False,
        ),
        (
            "GET",
            "/api/v1/componentstatuses/etcd-0/status",
            404,
            "the server could not find the requested resource",
            False,
        ),
        (
            "GET",
            "/api/v1/namespaces/d/componentstatuses",
            404,
            "the server could not find the requested resource",
            False,
        ),
    ],
)
async def test_errors(
    api: Api, method: str, path: str, code: int, message: str, warned: bool
) -> None:
    got, body, warnings = await api.call(method, path, {} if method == "POST" else None)
    assert (got, body["code"], body["message"]) == (code, code, message)
    assert warnings == ([WARNING] if warned else [])
    if code == 500:  # an untyped error in kube: reason Unknown, which is empty
        assert "reason" not in body and "details" not in body
    if "watch is" in message:
        assert body["details"] == {"kind": "componentstatuses"}


async def test_a_broken_store_is_an_unhealthy_etcd(api: Api) -> None:
    async def broken() -> str:
        return "etcdserver: request timed out"

    api.handler.store_health = broken
    _, body, _ = await api.call("GET", "/api/v1/componentstatuses/etcd-0")
    assert body["conditions"] == [
        {"type": "Healthy", "status": "False", "error": "etcdserver: request timed out"}
    ]


async def test_discovery_lists_the_computed_kinds(api: Api) -> None:
    _, body, _ = await api.call("GET", "/api/v1")
    names = ("bindings", "componentstatuses")
    found = {r["name"]: r for r in body["resources"] if r["name"] in names}
    assert found == {
        "bindings": {
            "name": "bindings",
            "singularName": "binding",
            "namespaced": True,
            "kind": "Binding",
            "verbs": ["create"],
        },
        "componentstatuses": {
            "name": "componentstatuses",
            "singularName": "componentstatus",
            "namespaced": False,
            "kind": "ComponentStatus",
            "verbs": ["get", "list"],
            "shortNames": ["cs"],
        },
    }


# ---- the legacy bindings -------------------------------------------------------------------


def _pod(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def _binding(name: Any, node: str = "n1", **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **meta},
        "target": {"kind": "Node", "name": node},
    }


async def test_legacy_bindings_bind_the_named_pod(api: Api) -> None:
    await api.store.create(PODS, "d", _pod("p"))
    code, body, warnings = await api.call(
        "POST", "/api/v1/namespaces/d/bindings", _binding("p", annotations={"a": "1"})
    )
    assert (code, warnings) == (201, [])
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    pod = await api.store.get(PODS, "d", "p")
    assert pod.obj["spec"]["nodeName"] == "n1"
    assert pod.obj["metadata"]["annotations"] == {"a": "1"}
    assert pod.obj["status"]["conditions"][0]["type"] == "PodScheduled"
    code, body, _ = await api.call("POST", "/api/v1/namespaces/d/bindings", _binding("p", "n2"))
    assert (code, body["message"]) == (
        409,
        'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "n1"',
    )


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (_binding("nope"), 404, 'pods "nope" not found'),
        (_binding(None), 400, "Name parameter required."),
        (_binding("a/b"), 400, "Name parameter invalid: \"a/b\": may not contain '/'"),
        (_binding(".."), 400, "Name parameter invalid: \"..\": may not be '..'"),
        (
            _binding("p", namespace="other"),
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
        ({**_binding("p"), "target": {}}, 500, "target.name: Required value"),
    ],
)
async def test_legacy_bindings_errors(api: Api, body: Obj, code: int, message: str) -> None:
    await api.store.create(PODS, "d", _pod("p"))
    got, st, _ = await api.call("POST", "/api/v1/namespaces/d/bindings", body)
    assert (got, st["code"], st["message"]) == (code, code, message)
    assert "nodeName" not in (await api.store.get(PODS, "d", "p")).obj["spec"]


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/api/v1/namespaces/d/bindings", 405),
        ("DELETE", "/api/v1/namespaces/d/bindings", 405),
        ("POST", "/api/v1/bindings", 404),
        ("POST", "/api/v1/namespaces/d/bindings/p", 404),
        ("GET", "/api/v1/watch/namespaces/d/bindings", 404),
    ],
)
async def test_legacy_bindings_other_routes(api: Api, method: str, path: str, code: int) -> None:
    got, _, _ = await api.call(method, path, _binding("p") if method == "POST" else None)
    assert got == code


class _Webhooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, str]] = []

    def enabled(self) -> bool:
        return True

    async def mutate(self, a: Any, obj: Obj, old: Obj | None, *_: Any) -> Obj:
        self.calls.append(("mutate", a.operation, a.res.plural, a.subresource, a.name))
        return {**obj, "metadata": {**obj["metadata"], "name": "q"}}  # binds another pod

    async def validate(self, a: Any, obj: Obj, old: Obj | None) -> None:
        self.calls.append(("validate", a.operation, a.res.plural, a.subresource, a.name))


async def test_legacy_bindings_are_admitted_as_creates_of_bindings(api: Api) -> None:
    await api.store.create(PODS, "d", _pod("p"))
    await api.store.create(PODS, "d", _pod("q"))
    hooks = _Webhooks()
    api.store.admission = hooks  # type: ignore[assignment]
    code, _, _ = await api.call("POST", "/api/v1/namespaces/d/bindings", _binding("p"))
    assert code == 201
    assert hooks.calls == [
        ("mutate", "CREATE", "bindings", "", "p"),
        ("validate", "CREATE", "bindings", "", "p"),
    ]
    assert (await api.store.get(PODS, "d", "q")).obj["spec"]["nodeName"] == "n1"
    assert "nodeName" not in (await api.store.get(PODS, "d", "p")).obj["spec"]
