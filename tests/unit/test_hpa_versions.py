"""HorizontalPodAutoscaler served in autoscaling/v1 and autoscaling/v2 by the in-process API
(memory store): one stored object (v2) that every verb of either version reads and writes
converted — create, get, list, watch (from the cache and from a resourceVersion), update,
merge/strategic/JSON patch, the status subresource, server-side apply, delete and
deletecollection, tables, protobuf — with managedFields in the request's version and
validation errors naming v1's fields."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kybern import storage
from kybern.api import conversion_autoscaling, protobuf, registry
from kybern.apiserver import cache, handlers, strategy
from kybern.apiserver import store as storemod

Obj = dict[str, Any]
REG = registry.Registry()
V1 = "/apis/autoscaling/v1/namespaces/d/horizontalpodautoscalers"
V2 = "/apis/autoscaling/v2/namespaces/d/horizontalpodautoscalers"
REF = {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}
JSON = {"Content-Type": "application/json"}
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
Client = TestClient[Any, Any]


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, storemod.Store]]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    st = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    ns = REG.lookup("", "v1", "namespaces")
    assert ns is not None
    await st.create(ns, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handlers.ApiHandler(st, REG).handle)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, st
    await client.close()
    cacher.stop()
    await backend.close()


def v1_hpa(name: str = "web", **spec: Any) -> Obj:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": REF, "maxReplicas": 3, **spec},
    }


def v2_hpa(name: str = "web", **spec: Any) -> Obj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": REF, "maxReplicas": 3, **spec},
    }


async def call(c: Client, method: str, path: str, body: Any = None, **headers: str) -> Any:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body)
    r = await c.request(method, path, data=data, headers={**JSON, **headers})
    raw = await r.read()
    return r.status, (orjson.loads(raw) if raw and not raw.startswith(b"k8s\x00") else raw)


MEMORY = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}},
}
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 60}}


async def test_a_v1_create_is_stored_as_v2(api: tuple[Client, storemod.Store]) -> None:
    c, st = api
    code, out = await call(c, "POST", V1 + "?fieldManager=kubectl-autoscale", v1_hpa())
    assert code == 201, out
    assert out["apiVersion"] == "autoscaling/v1"
    assert out["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 3,
                           "targetCPUUtilizationPercentage": 80}  # fmt: skip
    assert out["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
    (entry,) = out["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-autoscale" and entry["apiVersion"] == "autoscaling/v1"
    assert set(entry["fieldsV1"]["f:spec"]) == {
        "f:maxReplicas", "f:minReplicas", "f:scaleTargetRef", "f:targetCPUUtilizationPercentage"
    }  # fmt: skip
    stored = st.peek(REG.lookup("autoscaling", "v2", "horizontalpodautoscalers"), "d", "web")  # type: ignore[arg-type]
    assert stored is not None and stored.obj["apiVersion"] == "autoscaling/v2"
    assert stored.obj["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    code, v2 = await call(c, "GET", V2 + "/web")
    assert code == 200 and v2["apiVersion"] == "autoscaling/v2"
    assert v2["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]
    assert v2["metadata"]["managedFields"] == out["metadata"]["managedFields"]
    code, again = await call(c, "GET", V1 + "/web")
    assert again == out


async def test_a_v2_object_reads_as_v1_with_annotations(
    api: tuple[Client, storemod.Store],
) -> None:
    c, _ = api
    metrics = [MEMORY, {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 50}}}]  # fmt: skip
    code, _ = await call(c, "POST", V2, v2_hpa(metrics=metrics, behavior=BEHAVIOR))
    assert code == 201
    code, got = await call(c, "GET", V1 + "/web")
    assert got["spec"]["targetCPUUtilizationPercentage"] == 50
    notes = got["metadata"]["annotations"]
    assert json.loads(notes[conversion_autoscaling.METRICS]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "1Gi"}}
    ]
    assert json.loads(notes[conversion_autoscaling.BEHAVIOR])["ScaleDown"] == {
        "StabilizationWindowSeconds": 60, "SelectPolicy": "Max",
        "Policies": [{"Type": "Percent", "Value": 100, "PeriodSeconds": 15}],
    }  # fmt: skip
    code, listed = await call(c, "GET", V1)
    assert listed["kind"] == "HorizontalPodAutoscalerList"
    assert listed["apiVersion"] == "autoscaling/v1" and listed["items"] == [got]
    # a v1 client writing back what it read loses nothing
    got["spec"]["maxReplicas"] = 7
    code, put = await call(c, "PUT", V1 + "/web", got)
    assert code == 200, put
    assert put["metadata"]["generation"] == 2
    code, v2 = await call(c, "GET", V2 + "/web")
    assert v2["spec"]["maxReplicas"] == 7
    assert v2["spec"]["metrics"] == metrics  # the CPU one after the others, as it was
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert "annotations" not in v2["metadata"]
    versions = {(m["manager"], m["apiVersion"]) for m in v2["metadata"]["managedFields"]}
    assert versions == {("Python", "autoscaling/v2"), ("Python", "autoscaling/v1")}


async def test_patches_in_v1(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    await call(c, "POST", V2, v2_hpa(metrics=[MEMORY]))
    merge = {"Content-Type": "application/merge-patch+json"}
    code, out = await call(
        c, "PATCH", V1 + "/web", {"spec": {"targetCPUUtilizationPercentage": 40}}, **merge
    )
    assert code == 200, out
    assert out["spec"]["targetCPUUtilizationPercentage"] == 40
    smp = {"Content-Type": "application/strategic-merge-patch+json"}
    code, out = await call(c, "PATCH", V1 + "/web", {"spec": {"minReplicas": 2}}, **smp)
    assert code == 200 and out["spec"]["minReplicas"] == 2
    jp = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "replace", "path": "/spec/maxReplicas", "value": 9}]
    code, out = await call(c, "PATCH", V1 + "/web", ops, **jp)
    assert code == 200 and out["spec"]["maxReplicas"] == 9
    code, v2 = await call(c, "GET", V2 + "/web")
    assert [m["resource"]["name"] for m in v2["spec"]["metrics"]] == ["memory", "cpu"]
    assert v2["spec"]["minReplicas"] == 2 and v2["spec"]["maxReplicas"] == 9


async def test_status_through_v1(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    await call(c, "POST", V1, v1_hpa(targetCPUUtilizationPercentage=50))
    status = {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 44}
    merge = {"Content-Type": "application/merge-patch+json"}
    body = {"spec": {"maxReplicas": 99}, "status": status}  # the spec part is ignored
    code, out = await call(c, "PATCH", V1 + "/web/status", body, **merge)
    assert code == 200, out
    assert out["status"] == status and out["spec"]["maxReplicas"] == 3
    code, v2 = await call(c, "GET", V2 + "/web/status")
    assert v2["status"]["currentMetrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 44}}}
    ]
    # conditions written by a v2 client survive a v1 status round trip
    conditions = [{"type": "AbleToScale", "status": "True", "reason": "R"}]
    await call(c, "PATCH", V2 + "/web/status", {"status": {"conditions": conditions}}, **merge)
    code, got = await call(c, "GET", V1 + "/web/status")
    code, out = await call(c, "PUT", V1 + "/web/status", got)
    assert code == 200, out
    code, v2 = await call(c, "GET", V2 + "/web")
    assert v2["status"]["conditions"] == conditions


async def test_server_side_apply_in_v1(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    apply = {"Content-Type": "application/apply-patch+yaml"}
    cfg = v1_hpa(targetCPUUtilizationPercentage=60)
    code, out = await call(c, "PATCH", V1 + "/web?fieldManager=me", cfg, **apply)
    assert code == 201, out
    (entry,) = out["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "me", "Apply", "autoscaling/v1"
    )  # fmt: skip
    assert "f:targetCPUUtilizationPercentage" in entry["fieldsV1"]["f:spec"]
    cfg["spec"]["targetCPUUtilizationPercentage"] = 65
    code, out = await call(c, "PATCH", V1 + "/web?fieldManager=me", cfg, **apply)
    assert code == 200 and out["spec"]["targetCPUUtilizationPercentage"] == 65
    # another manager changing the field conflicts
    cfg["spec"]["targetCPUUtilizationPercentage"] = 70
    code, out = await call(c, "PATCH", V1 + "/web?fieldManager=other", cfg, **apply)
    assert code == 409, out


async def test_validation_names_v1_fields(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    code, out = await call(c, "POST", V1, v1_hpa(maxReplicas=0, targetCPUUtilizationPercentage=0))
    assert code == 422
    assert [(x["field"], x["message"]) for x in out["details"]["causes"]] == [
        ("spec.maxReplicas", "Invalid value: 0: must be greater than 0"),
        ("spec.targetCPUUtilizationPercentage", "Invalid value: 0: must be greater than 0"),
    ]
    assert "spec.metrics" not in out["message"]
    code, out = await call(c, "POST", V1 + "?fieldValidation=Strict", v1_hpa(bogus=1))
    assert code == 400 and 'unknown field "spec.bogus"' in out["message"], out


async def test_watches_in_both_versions(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    _, first = await call(c, "POST", V1, v1_hpa("a", targetCPUUtilizationPercentage=30))
    rv = first["metadata"]["resourceVersion"]
    w1 = await c.get(V1 + "?watch=1&timeoutSeconds=5")
    w2 = await c.get(V2 + "?watch=1&timeoutSeconds=5")
    from_rv = await c.get(V1 + f"?watch=1&resourceVersion={rv}&timeoutSeconds=5")
    await call(c, "POST", V2, v2_hpa("b", metrics=[MEMORY]))
    ev = [orjson.loads(await w1.content.readline()) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in ev] == [
        ("ADDED", "a"), ("ADDED", "b")
    ]  # fmt: skip
    assert {e["object"]["apiVersion"] for e in ev} == {"autoscaling/v1"}
    assert conversion_autoscaling.METRICS in ev[1]["object"]["metadata"]["annotations"]
    ev2 = [orjson.loads(await w2.content.readline()) for _ in range(2)]
    assert {e["object"]["apiVersion"] for e in ev2} == {"autoscaling/v2"}
    assert ev2[1]["object"]["spec"]["metrics"] == [MEMORY]
    replay = orjson.loads(await from_rv.content.readline())
    assert replay["type"] == "ADDED" and replay["object"]["metadata"]["name"] == "b"
    assert replay["object"]["apiVersion"] == "autoscaling/v1"
    assert (
        replay["object"]["metadata"]["resourceVersion"]
        == ev[1]["object"]["metadata"]["resourceVersion"]
    )
    for w in (w1, w2, from_rv):
        w.close()


async def test_tables_print_the_same_for_both_versions(
    api: tuple[Client, storemod.Store],
) -> None:
    c, _ = api
    await call(c, "POST", V2, v2_hpa(metrics=[MEMORY]))
    _, t1 = await call(c, "GET", V1, **TABLE)
    _, t2 = await call(c, "GET", V2, **TABLE)
    assert t1["columnDefinitions"] == t2["columnDefinitions"]
    assert t1["rows"][0]["cells"][:6] == t2["rows"][0]["cells"][:6]
    assert t1["rows"][0]["cells"][2] == "<unknown>/1Gi"
    assert t1["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1"
    # a watch of Tables (kubectl get -w) too, the object embedded as v1
    w = await c.get(V1 + "?watch=1&timeoutSeconds=5&includeObject=Object", headers=TABLE)
    ev = orjson.loads(await w.content.readline())
    w.close()
    row = ev["object"]["rows"][0]
    assert row["cells"][:6] == t2["rows"][0]["cells"][:6]
    assert row["object"]["apiVersion"] == "autoscaling/v1"


async def test_protobuf_in_v1(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    pb = "application/vnd.kubernetes.protobuf"
    body = protobuf.encode_object(v1_hpa(targetCPUUtilizationPercentage=55))
    code, raw = await call(c, "POST", V1, body, **{"Content-Type": pb, "Accept": pb})
    assert code == 201
    out = protobuf.decode_object(raw)
    assert out["apiVersion"] == "autoscaling/v1" and out["kind"] == "HorizontalPodAutoscaler"
    assert out["spec"]["targetCPUUtilizationPercentage"] == 55
    code, raw = await call(c, "GET", V1, Accept=pb)
    listed = protobuf.decode_object(raw)
    assert listed["kind"] == "HorizontalPodAutoscalerList"
    assert listed["items"][0]["spec"]["targetCPUUtilizationPercentage"] == 55


async def test_delete_and_dry_run_in_v1(api: tuple[Client, storemod.Store]) -> None:
    c, _ = api
    code, dry = await call(c, "POST", V1 + "?dryRun=All", v1_hpa("x"))
    assert code == 201 and dry["apiVersion"] == "autoscaling/v1"
    code, _ = await call(c, "GET", V1 + "/x")
    assert code == 404
    await call(c, "POST", V2, v2_hpa("a"))
    await call(c, "POST", V2, v2_hpa("b"))
    code, out = await call(c, "DELETE", V1 + "/a")
    assert code == 200 and out["kind"] == "Status" and out["details"]["kind"] == (
        "horizontalpodautoscalers"
    )  # fmt: skip
    code, out = await call(c, "DELETE", V1)
    assert code == 200 and out["apiVersion"] == "autoscaling/v1"
    assert [(o["apiVersion"], o["metadata"]["name"]) for o in out["items"]] == [
        ("autoscaling/v1", "b")
    ]  # fmt: skip
    code, listed = await call(c, "GET", V2)
    assert listed["items"] == []


async def test_ownership_is_compared_in_each_managers_version(
    api: tuple[Client, storemod.Store],
) -> None:
    """As structured-merge-diff does: a v2 write changing the CPU metric changes v1's
    targetCPUUtilizationPercentage, which a v1 manager owns."""
    c, _ = api
    await call(c, "POST", V1 + "?fieldManager=kubectl-autoscale", v1_hpa(maxReplicas=3))
    apply = {"Content-Type": "application/apply-patch+yaml"}
    cpu70 = {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 70}}}  # fmt: skip
    cfg = v2_hpa(metrics=[cpu70])
    code, out = await call(c, "PATCH", V2 + "/web?fieldManager=ops", cfg, **apply)
    assert code == 409, out
    assert out["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-autoscale" using autoscaling/v1: '
        ".spec.targetCPUUtilizationPercentage"
    )
    code, out = await call(c, "PATCH", V2 + "/web?fieldManager=ops&force=true", cfg, **apply)
    assert code == 200, out
    entries = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert entries["ops"]["apiVersion"] == "autoscaling/v2"
    # the v1 manager lost the field, and kept the others
    assert set(entries["kubectl-autoscale"]["fieldsV1"]["f:spec"]) == {
        "f:maxReplicas", "f:minReplicas", "f:scaleTargetRef"
    }  # fmt: skip
    # a v1 update of the target takes the CPU metric from the v2 applier
    merge = {"Content-Type": "application/merge-patch+json"}
    patch = {"spec": {"targetCPUUtilizationPercentage": 20}}
    code, out = await call(c, "PATCH", V1 + "/web?fieldManager=edit", patch, **merge)
    assert code == 200, out
    entries = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert "f:metrics" not in entries["ops"]["fieldsV1"]["f:spec"]
    assert entries["edit"]["apiVersion"] == "autoscaling/v1"


class _Webhooks:
    """Admission webhooks that record what they are shown; the mutating one sets maxReplicas."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def enabled(self) -> bool:
        return True

    async def mutate(self, a: Any, obj: Obj, old: Obj | None, sub: str = "") -> Obj:
        self.seen.append(("mutate", obj["apiVersion"], old and old["apiVersion"]))
        out = json.loads(json.dumps(obj))
        out["spec"]["maxReplicas"] = 8
        return out

    async def validate(self, a: Any, obj: Obj, old: Obj | None) -> None:
        self.seen.append(("validate", obj["apiVersion"], old and old["apiVersion"]))

    async def admit_delete(self, res: Any, ns: str, name: str, obj: Obj, opts: Any) -> None:
        self.seen.append(("delete", obj["apiVersion"], None))


async def test_webhooks_see_the_requests_version(api: tuple[Client, storemod.Store]) -> None:
    c, st = api
    hooks = _Webhooks()
    st.admission = hooks  # type: ignore[assignment]
    code, out = await call(c, "POST", V1, v1_hpa(targetCPUUtilizationPercentage=50))
    assert code == 201 and out["spec"]["maxReplicas"] == 8
    merge = {"Content-Type": "application/merge-patch+json"}
    code, out = await call(c, "PATCH", V1 + "/web", {"spec": {"minReplicas": 2}}, **merge)
    assert code == 200 and out["spec"]["minReplicas"] == 2
    code, _ = await call(c, "DELETE", V1 + "/web")
    assert code == 200
    v1 = "autoscaling/v1"
    assert hooks.seen == [
        ("mutate", v1, None), ("validate", v1, None), ("mutate", v1, v1), ("validate", v1, v1),
        ("delete", v1, None),
    ]  # fmt: skip
