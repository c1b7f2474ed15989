"""Custom resources through the `kubernetes` client's CustomObjectsApi and raw HTTPS: schema
validation and defaulting, pruning with fieldValidation, CEL rules (also transition rules), the
status and scale subresources, selectable fields, several versions (conversion None, storage
version, deprecation warnings, served toggles, storedVersions), and bad input that must be
refused cleanly while the server stays alive."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Server, unique, wait_for
from kubernetes import client as k8s
from test_crd_support import CRDS, crd_body, create_crd, delete_crd

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def group(server: Server) -> Iterator[str]:
    g = f"{unique('c')}.example.com"
    create_crd(server, crd_body(g))
    yield g
    delete_crd(server, f"widgets.{g}")


def widget(group: str, name: str, version: str = "v1", **spec: Any) -> Obj:
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def api(server: Server) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(server.client())


def invalid(e: pytest.ExceptionInfo[k8s.ApiException]) -> list[str]:
    import json

    assert e.value.status == 422, e.value.body
    body = json.loads(e.value.body)
    assert body["reason"] == "Invalid"
    return [f"{c['field']}: {c['message']}" for c in body["details"]["causes"]]


def test_create_defaults_and_read(server: Server, group: str, ns: str) -> None:
    co = api(server)
    out = co.create_namespaced_custom_object(group, "v1", ns, "widgets", widget(group, "w1"))
    assert out["spec"] == {"replicas": 1, "maxReplicas": 5, "color": "red", "size": "M"}
    assert out["metadata"]["generation"] == 1
    got = co.get_namespaced_custom_object(group, "v1", ns, "widgets", "w1")
    assert got["spec"]["color"] == "red"
    listed = co.list_namespaced_custom_object(group, "v1", ns, "widgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    co.patch_namespaced_custom_object(group, "v1", ns, "widgets", "w1", {"spec": {"replicas": 3}})
    got = co.get_namespaced_custom_object(group, "v1", ns, "widgets", "w1")
    assert got["spec"]["replicas"] == 3 and got["metadata"]["generation"] == 2
    co.delete_namespaced_custom_object(group, "v1", ns, "widgets", "w1")


def test_schema_and_cel_errors(server: Server, group: str, ns: str) -> None:
    co = api(server)
    bad = widget(group, "bad", replicas=11, color="pink", maxReplicas=20)
    with pytest.raises(k8s.ApiException) as e:
        co.create_namespaced_custom_object(group, "v1", ns, "widgets", bad)
    assert invalid(e) == [
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal "
        "to 10",
        'spec.color: Unsupported value: "pink": supported values: "red", "blue"',
    ]
    with pytest.raises(k8s.ApiException) as e:
        co.create_namespaced_custom_object(
            group, "v1", ns, "widgets", widget(group, "bad", replicas=8)
        )
    assert invalid(e) == ['spec: Invalid value: "object": replicas above max']
    dup = widget(group, "bad", tags=["a", "b", "a"])
    with pytest.raises(k8s.ApiException) as e:
        co.create_namespaced_custom_object(group, "v1", ns, "widgets", dup)
    assert invalid(e) == ['spec.tags[2]: Duplicate value: "a"']


def test_transition_rule(server: Server, group: str, ns: str) -> None:
    co = api(server)
    co.create_namespaced_custom_object(group, "v1", ns, "widgets", widget(group, "t", mode="a"))
    with pytest.raises(k8s.ApiException) as e:
        co.patch_namespaced_custom_object(group, "v1", ns, "widgets", "t", {"spec": {"mode": "b"}})
    assert invalid(e) == ['spec.mode: Invalid value: "string": mode is immutable']
    co.patch_namespaced_custom_object(group, "v1", ns, "widgets", "t", {"spec": {"replicas": 2}})


def test_field_validation(server: Server, group: str, ns: str) -> None:
    http = server.http()
    url = f"{server.url}/apis/{group}/v1/namespaces/{ns}/widgets"
    body = widget(group, "fv", replicas=2, bogus=1)
    body["metadata"]["junk"] = "x"
    r = http.post(url + "?fieldValidation=Strict", json=body)
    assert r.status_code == 400
    assert r.json()["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "metadata.junk", unknown field "spec.bogus"'
    )
    r = http.post(url + "?fieldValidation=Warn", json=body)
    assert r.status_code == 201, r.text
    assert 'unknown field \\"spec.bogus\\"' in r.headers["Warning"]
    assert "bogus" not in r.json()["spec"] and "junk" not in r.json()["metadata"]
    free = widget(group, "fv2", free={"any": {"thing": [1]}})
    r = http.post(url + "?fieldValidation=Strict", json=free)
    assert r.status_code == 201 and r.json()["spec"]["free"] == {"any": {"thing": [1]}}


def test_status_and_scale_subresources(server: Server, group: str, ns: str) -> None:
    co = api(server)
    co.create_namespaced_custom_object(
        group, "v1", ns, "widgets", widget(group, "s", replicas=2, selector="app=s")
    )
    # status is ignored on the main resource, spec on /status; generation only for spec
    co.patch_namespaced_custom_object(group, "v1", ns, "widgets", "s", {"status": {"phase": "X"}})
    out = co.patch_namespaced_custom_object_status(
        group,
        "v1",
        ns,
        "widgets",
        "s",
        {"status": {"replicas": 2, "phase": "Ready"}, "spec": {"replicas": 9}},
    )
    assert out["status"] == {"replicas": 2, "phase": "Ready"}
    assert out["spec"]["replicas"] == 2 and out["metadata"]["generation"] == 1
    scale = co.get_namespaced_custom_object_scale(group, "v1", ns, "widgets", "s")
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=s"}
    co.patch_namespaced_custom_object_scale(
        group, "v1", ns, "widgets", "s", {"spec": {"replicas": 4}}
    )
    got = co.get_namespaced_custom_object(group, "v1", ns, "widgets", "s")
    assert got["spec"]["replicas"] == 4 and got["metadata"]["generation"] == 2


def test_selectable_fields(server: Server, group: str, ns: str) -> None:
    co = api(server)
    for name, color in (("red1", "red"), ("blue1", "blue")):
        co.create_namespaced_custom_object(
            group, "v1", ns, "widgets", widget(group, name, color=color)
        )
    got = co.list_namespaced_custom_object(
        group, "v1", ns, "widgets", field_selector="spec.color=blue"
    )
    assert [i["metadata"]["name"] for i in got["items"]] == ["blue1"]
    with pytest.raises(k8s.ApiException) as e:
        co.list_namespaced_custom_object(group, "v1", ns, "widgets", field_selector="spec.size=M")
    assert e.value.status == 400 and "field label not supported: spec.size" in e.value.body


def test_bad_input_is_refused_cleanly(server: Server, group: str, ns: str) -> None:
    http = server.http()
    url = f"{server.url}/apis/{group}/v1/namespaces/{ns}/widgets"
    r = http.post(url, json=widget(group, "big", tags=[str(i) for i in range(10_000)]))
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["message"] == (
        "Too many: 10000: must have at most 100 items"
    )
    deep: Any = {}
    for _ in range(200):
        deep = {"a": deep}
    r = http.post(url, json=widget(group, "deep", free=deep))
    assert r.status_code == 400 and "nested too deeply" in r.json()["message"]
    assert server.is_ready()


def test_runaway_cel_rules(server: Server, ns: str) -> None:
    g = f"{unique('r')}.example.com"
    body = crd_body(g, "loops", "Loop")
    spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["nums"] = {"type": "array", "items": {"type": "integer"}}
    spec["x-kubernetes-validations"] = [
        {"rule": "self.nums.all(x, self.nums.all(y, self.nums.all(z, x + y + z >= 0)))"}
    ]
    http = server.http()
    r = http.post(f"{server.url}{CRDS}", json=body)
    assert r.status_code == 422
    assert "estimated rule cost exceeds budget by factor of more than 100x" in r.text
    # bounded well enough to be accepted, but a big list still runs out of budget at run time
    spec["properties"]["nums"]["maxItems"] = 300
    spec["x-kubernetes-validations"] = [{"rule": "self.nums.all(x, self.nums.all(y, x + y >= 0))"}]
    create_crd(server, body)
    try:
        url = f"{server.url}/apis/{g}/v1/namespaces/{ns}/loops"
        r = http.post(url, json={**widget(g, "l", nums=list(range(300))), "kind": "Loop"})
        assert r.status_code == 422, r.text
        assert "call cost exceeds limit for rule" in r.text
        r = http.post(url, json={**widget(g, "ok", nums=list(range(20))), "kind": "Loop"})
        assert r.status_code == 201, r.text
        assert server.is_ready()
    finally:
        delete_crd(server, f"loops.{g}")


def test_versions_conversion_none(server: Server, ns: str) -> None:
    g = f"{unique('v')}.example.com"
    body = crd_body(g, "gizmos", "Gizmo")
    v1 = body["spec"]["versions"][0]
    v2 = copy.deepcopy(v1)
    v2.update(
        name="v2",
        storage=False,
        deprecated=True,
        deprecationWarning=f"{g}/v2 Gizmo is going away",
    )
    v2["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"]["default"] = "L"
    body["spec"]["versions"] = [v1, v2]
    create_crd(server, body)
    http = server.http()
    base = f"{server.url}/apis/{g}"
    try:
        r = http.post(
            f"{base}/v2/namespaces/{ns}/gizmos", json={**widget(g, "a", "v2"), "kind": "Gizmo"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["apiVersion"] == f"{g}/v2" and r.json()["spec"]["size"] == "L"
        assert f"{g}/v2 Gizmo is going away" in r.headers["Warning"]
        r = http.get(f"{base}/v1/namespaces/{ns}/gizmos/a")
        assert r.json()["apiVersion"] == f"{g}/v1"  # stored as v1, served as v1
        assert "Warning" not in r.headers
        r = http.get(f"{base}/v2/namespaces/{ns}/gizmos")
        assert [i["apiVersion"] for i in r.json()["items"]] == [f"{g}/v2"]
        assert "Warning" in r.headers
        crd = http.get(f"{server.url}{CRDS}/gizmos.{g}").json()
        assert crd["status"]["storedVersions"] == ["v1"]
        # a watch of v2, which stays served, outlives the change of versions below
        rv = r.json()["metadata"]["resourceVersion"]
        watch = http.get(
            f"{base}/v2/namespaces/{ns}/gizmos?watch=1&resourceVersion={rv}&timeoutSeconds=60",
            stream=True,
            timeout=60,
        )
        events = watch.iter_lines()
        # served: false takes the version away; storage moves to v2
        crd["spec"]["versions"][0].update(served=False, storage=False)
        crd["spec"]["versions"][1]["storage"] = True
        r = http.put(f"{server.url}{CRDS}/gizmos.{g}", json=crd)
        assert r.status_code == 200, r.text
        wait_for(lambda: http.get(f"{base}/v1/namespaces/{ns}/gizmos").status_code == 404)
        assert set(r.json()["status"]["storedVersions"]) == {"v1", "v2"}
        # v2 was served all along: its routes and its watches stay while v1's go
        r = http.get(f"{base}/v2/namespaces/{ns}/gizmos/a")
        assert r.status_code == 200 and r.json()["apiVersion"] == f"{g}/v2"
        r = http.post(
            f"{base}/v2/namespaces/{ns}/gizmos", json={**widget(g, "b", "v2"), "kind": "Gizmo"}
        )
        assert r.status_code == 201, r.text
        event = json.loads(next(events))
        assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "b"
        watch.close()
    finally:
        delete_crd(server, f"gizmos.{g}")


def test_invalid_crd_is_refused(server: Server) -> None:
    g = f"{unique('i')}.example.com"
    body = crd_body(g)
    del body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"]
    r = server.http().post(f"{server.url}{CRDS}", json=body)
    assert r.status_code == 422
    causes = [f"{c['field']}: {c['message']}" for c in r.json()["details"]["causes"]]
    assert causes == [
        "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be "
        "empty for specified object fields"
    ]
