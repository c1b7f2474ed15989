"""Bad input over raw HTTPS (`requests`, with the kubeconfig's CA and client certificate):
every failure is a compact JSON `Status` with the right code, reason and details, and the
server keeps answering `/readyz` after each one.

Not covered here: 410 Gone for a watch from a compacted revision, which needs a forced
compaction (the storage tests cover compaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Server, unique

Obj = dict[str, Any]
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def http(server: Server) -> requests.Session:
    return server.http()


@pytest.fixture(autouse=True)
def still_alive(server: Server) -> Iterator[None]:
    """After every bad request the server still answers."""
    yield
    assert server.running, server.log_tail()
    assert server.is_ready()


@pytest.fixture(scope="module")
def ns(server: Server, http: requests.Session) -> str:
    name = unique("err")
    r = http.post(
        server.url + "/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert r.status_code == 201, r.text
    return name


def expect_status(r: requests.Response, code: int, reason: str) -> Obj:
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    st: Obj = r.json()
    assert st["kind"] == "Status" and st["apiVersion"] == "v1"
    assert st["status"] == "Failure"
    assert st["reason"] == reason
    assert st["code"] == code
    assert st["message"]
    # compact JSON, as Kubernetes sends it
    assert r.text == json.dumps(st, separators=(",", ":"), ensure_ascii=False)
    return st


def configmap(name: str, **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


def cm_url(server: Server, ns: str, name: str = "") -> str:
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps"
    return f"{url}/{name}" if name else url


# ---- decoding ----------------------------------------------------------------------------------


def test_malformed_json(server: Server, http: requests.Session, ns: str) -> None:
    r = http.post(
        cm_url(server, ns), data=b'{"apiVersion": "v1", "kind": ', headers=_ct("application/json")
    )
    expect_status(r, 400, "BadRequest")
    r = http.post(cm_url(server, ns), data=b"[1, 2, 3]", headers=_ct("application/json"))
    expect_status(r, 400, "BadRequest")
    r = http.post(cm_url(server, ns), data=b"", headers=_ct("application/json"))
    expect_status(r, 400, "BadRequest")
    r = http.post(
        cm_url(server, ns),
        data=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": "x"}),
        headers=_ct("application/json"),
    )
    expect_status(r, 400, "BadRequest")


def test_malformed_yaml(server: Server, http: requests.Session, ns: str) -> None:
    bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"
    r = http.post(cm_url(server, ns), data=bad, headers=_ct("application/yaml"))
    st = expect_status(r, 400, "BadRequest")
    assert "yaml" in st["message"].lower()
    r = http.post(
        cm_url(server, ns), data=b"key: value: other\n\t- x", headers=_ct("application/yaml")
    )
    expect_status(r, 400, "BadRequest")
    # the same endpoint takes well-formed YAML
    good = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: '1'\n"
    r = http.post(cm_url(server, ns), data=good, headers=_ct("application/yaml"))
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"a": "1"}


def test_unsupported_media_type(server: Server, http: requests.Session, ns: str) -> None:
    r = http.post(
        cm_url(server, ns), data=json.dumps(configmap("plain")), headers=_ct("text/plain")
    )
    expect_status(r, 415, "UnsupportedMediaType")
    http.post(cm_url(server, ns), json=configmap("patched")).raise_for_status()
    # PATCH needs one of the patch media types
    r = http.patch(
        cm_url(server, ns, "patched"), data=b'{"data":{"a":"1"}}', headers=_ct("application/json")
    )
    expect_status(r, 415, "UnsupportedMediaType")


def test_wrong_api_version_or_kind(server: Server, http: requests.Session, ns: str) -> None:
    body = configmap("wrong")
    body["apiVersion"] = "apps/v1"
    r = http.post(cm_url(server, ns), json=body)
    st = expect_status(r, 400, "BadRequest")
    assert "apps/v1" in st["message"]
    body = configmap("wrong")
    body["kind"] = "Secret"
    r = http.post(cm_url(server, ns), json=body)
    st = expect_status(r, 400, "BadRequest")
    assert "Secret" in st["message"]
    # a kind that exists nowhere
    body["kind"] = "ConfigMapp"
    expect_status(http.post(cm_url(server, ns), json=body), 400, "BadRequest")
    # the namespace in the body must be the one in the URL
    body = configmap("elsewhere")
    body["metadata"]["namespace"] = "default"
    expect_status(http.post(cm_url(server, ns), json=body), 400, "BadRequest")
    # the name in the body must be the one in the URL
    http.post(cm_url(server, ns), json=configmap("named")).raise_for_status()
    r = http.put(cm_url(server, ns, "named"), json=configmap("other-name"))
    expect_status(r, 400, "BadRequest")
    assert http.get(cm_url(server, ns, "wrong")).status_code == 404


def test_body_too_large(server: Server, http: requests.Session, ns: str) -> None:
    big = configmap("big", data={"blob": "x" * (3 * MiB + 16)})
    r = http.post(cm_url(server, ns), json=big)
    expect_status(r, 413, "RequestEntityTooLarge")

    # the same without a Content-Length (chunked): cut off while reading
    def chunks() -> Iterator[bytes]:
        yield b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"b":"'
        for _ in range(4 * 16):
            yield b"y" * (MiB // 16)
        yield b'"}}'

    r = http.post(cm_url(server, ns), data=chunks(), headers=_ct("application/json"))
    expect_status(r, 413, "RequestEntityTooLarge")
    assert http.get(cm_url(server, ns, "big")).status_code == 404
    # a large body under the limit is fine
    r = http.post(cm_url(server, ns), json=configmap("biggish", data={"blob": "z" * (MiB // 2)}))
    assert r.status_code == 201, r.text[:300]


# ---- validation --------------------------------------------------------------------------------


def test_invalid_name(server: Server, http: requests.Session, ns: str) -> None:
    r = http.post(cm_url(server, ns), json=configmap("Foo_Bar"))
    st = expect_status(r, 422, "Invalid")
    assert st["message"].startswith('ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value')
    details = st["details"]
    assert details["name"] == "Foo_Bar"
    assert details["kind"] == "ConfigMap"
    assert [c["field"] for c in details["causes"]] == ["metadata.name"]
    assert details["causes"][0]["reason"] == "FieldValueInvalid"
    # too long for a DNS subdomain
    st = expect_status(http.post(cm_url(server, ns), json=configmap("a" * 254)), 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    # no name and no generateName
    body = configmap("")
    del body["metadata"]["name"]
    st = expect_status(http.post(cm_url(server, ns), json=body), 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    assert st["details"]["causes"][0]["reason"] == "FieldValueRequired"
    # a namespace name is a DNS label: no dots
    r = http.post(
        server.url + "/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}},
    )
    st = expect_status(r, 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.name"


def test_invalid_labels_and_annotations(server: Server, http: requests.Session, ns: str) -> None:
    body = configmap("labelled")
    body["metadata"]["labels"] = {"bad key!": "v"}
    st = expect_status(http.post(cm_url(server, ns), json=body), 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.labels"
    body["metadata"]["labels"] = {"ok": "-bad value-"}
    st = expect_status(http.post(cm_url(server, ns), json=body), 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.labels"
    body["metadata"]["labels"] = {"ok": "v" * 64}
    expect_status(http.post(cm_url(server, ns), json=body), 422, "Invalid")
    body["metadata"]["labels"] = {"example.com/ok": "v"}
    body["metadata"]["annotations"] = {"bad/key/x": "v"}
    st = expect_status(http.post(cm_url(server, ns), json=body), 422, "Invalid")
    assert st["details"]["causes"][0]["field"] == "metadata.annotations"
    body["metadata"]["annotations"] = {"example.com/note": "anything at all! ✓"}
    r = http.post(cm_url(server, ns), json=body)
    assert r.status_code == 201, r.text


def test_unknown_fields(server: Server, http: requests.Session, ns: str) -> None:
    body = configmap("unk1", bogus=1, data={"a": "1"})
    r = http.post(cm_url(server, ns), params={"fieldValidation": "Strict"}, json=body)
    st = expect_status(r, 400, "BadRequest")
    assert st["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
        'strict decoding error: unknown field "bogus"'
    )
    assert http.get(cm_url(server, ns, "unk1")).status_code == 404
    # nested unknown fields are named by their path
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "unk"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagee": "typo"}]},
            },
        },
    }
    r = http.post(
        f"{server.url}/apis/apps/v1/namespaces/{ns}/deployments",
        params={"fieldValidation": "Strict"},
        json=deploy,
    )
    st = expect_status(r, 400, "BadRequest")
    assert 'unknown field "spec.template.spec.containers[0].imagee"' in st["message"]
    # Warn: created, and the unknown field reported in a Warning header
    r = http.post(cm_url(server, ns), params={"fieldValidation": "Warn"}, json=body)
    assert r.status_code == 201, r.text
    assert r.headers["Warning"] == '299 - "unknown field \\"bogus\\""'
    assert "bogus" not in r.json()
    # Ignore: created, silently
    body["metadata"]["name"] = "unk2"
    r = http.post(cm_url(server, ns), params={"fieldValidation": "Ignore"}, json=body)
    assert r.status_code == 201, r.text
    assert "Warning" not in r.headers
    # an unknown value of the parameter itself
    body["metadata"]["name"] = "unk3"
    r = http.post(cm_url(server, ns), params={"fieldValidation": "Loose"}, json=body)
    expect_status(r, 400, "BadRequest")


def test_bad_query_parameters(server: Server, http: requests.Session, ns: str) -> None:
    expect_status(http.get(cm_url(server, ns), params={"limit": "ten"}), 400, "BadRequest")
    r = http.get(cm_url(server, ns), params={"labelSelector": "a in ("})
    expect_status(r, 400, "BadRequest")
    r = http.get(cm_url(server, ns), params={"fieldSelector": "data.a=1"})
    expect_status(r, 400, "BadRequest")
    r = http.post(cm_url(server, ns), params={"dryRun": "Yes"}, json=configmap("dry"))
    expect_status(r, 400, "BadRequest")
    r = http.get(cm_url(server, ns), params={"watch": "true", "resourceVersion": "abc"})
    expect_status(r, 400, "BadRequest")


# ---- routing, methods, conflicts ------------------------------------------------------------


def test_unknown_paths(server: Server, http: requests.Session, ns: str) -> None:
    for path in (
        "/nothing/here",
        "/api/v2",
        "/api/v1/foos",
        f"/api/v1/namespaces/{ns}/foos",
        "/apis/nosuch.example.com/v1",
        "/apis/apps/v1/deployments/too/many/parts",
        f"/api/v1/namespaces/{ns}/configmaps/x/nosuchsub",
    ):
        expect_status(http.get(server.url + path), 404, "NotFound")
    # cluster-scoped kinds have no namespaced path
    expect_status(http.get(f"{server.url}/api/v1/namespaces/{ns}/nodes"), 404, "NotFound")


def test_missing_object(server: Server, http: requests.Session, ns: str) -> None:
    st = expect_status(http.get(cm_url(server, ns, "nope")), 404, "NotFound")
    assert st["message"] == 'configmaps "nope" not found'
    assert st["details"] == {"name": "nope", "kind": "configmaps"}
    r = http.get(f"{server.url}/apis/apps/v1/namespaces/{ns}/deployments/nope")
    st = expect_status(r, 404, "NotFound")
    assert st["message"] == 'deployments.apps "nope" not found'
    assert st["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


def test_already_exists_and_conflict(server: Server, http: requests.Session, ns: str) -> None:
    created = http.post(cm_url(server, ns), json=configmap("dup")).json()
    st = expect_status(http.post(cm_url(server, ns), json=configmap("dup")), 409, "AlreadyExists")
    assert st["message"] == 'configmaps "dup" already exists'
    assert st["details"] == {"name": "dup", "kind": "configmaps"}
    stale = dict(created, data={"v": "1"})
    http.put(cm_url(server, ns, "dup"), json=stale).raise_for_status()
    r = http.put(cm_url(server, ns, "dup"), json=dict(created, data={"v": "2"}))
    st = expect_status(r, 409, "Conflict")
    assert (
        "the object has been modified; please apply your changes to the latest version"
        in (st["message"])
    )


def test_uid_of_another_object(server: Server, http: requests.Session, ns: str) -> None:
    """An update's metadata.uid is a precondition (409); a patch cannot change it (422), so
    a kubelet's status patch never lands on a pod recreated under the same name."""
    created = http.post(cm_url(server, ns), json=configmap("uid", data={"v": "0"})).json()
    other = "00000000-0000-4000-8000-000000000001"
    body = dict(created, data={"v": "1"})
    body["metadata"] = dict(created["metadata"], uid=other, resourceVersion="")
    st = expect_status(http.put(cm_url(server, ns, "uid"), json=body), 409, "Conflict")
    assert (
        f"Precondition failed: UID in precondition: {other}, UID in object meta: "
        in (st["message"])
    )
    merge = {"Content-Type": "application/merge-patch+json"}
    patch = json.dumps({"metadata": {"uid": other}, "data": {"v": "2"}})
    st = expect_status(
        http.patch(cm_url(server, ns, "uid"), data=patch, headers=merge), 422, "Invalid"
    )
    assert st["details"]["causes"][0]["field"] == "metadata.uid"
    same = json.dumps({"metadata": {"uid": created["metadata"]["uid"]}, "data": {"v": "3"}})
    r = http.patch(cm_url(server, ns, "uid"), data=same, headers=merge)
    assert r.status_code == 200 and r.json()["data"] == {"v": "3"}, r.text


def test_wrong_method(server: Server, http: requests.Session, ns: str) -> None:
    expect_status(http.put(cm_url(server, ns), json=configmap("m")), 405, "MethodNotAllowed")
    http.post(cm_url(server, ns), json=configmap("m")).raise_for_status()
    r = http.post(cm_url(server, ns, "m"), json=configmap("m"))
    expect_status(r, 405, "MethodNotAllowed")
    expect_status(http.delete(server.url + "/api/v1"), 405, "MethodNotAllowed")
    r = http.post(f"{server.url}/api/v1/watch/namespaces/{ns}/configmaps", json={})
    expect_status(r, 405, "MethodNotAllowed")


def test_unauthenticated(server: Server) -> None:
    anon = server.http(authenticated=False)
    for method, path in (
        ("GET", "/api/v1/namespaces"),
        ("GET", "/api"),
        ("POST", "/api/v1/namespaces/default/configmaps"),
        ("GET", "/nothing/here"),
    ):
        r = anon.request(method, server.url + path, json=configmap("anon"))
        expect_status(r, 401, "Unauthorized")
    r = anon.get(
        server.url + "/api/v1/namespaces", headers={"Authorization": "Bearer not-the-token"}
    )
    expect_status(r, 401, "Unauthorized")
    # the health endpoints answer anyone
    assert anon.get(server.url + "/readyz").text == "ok"
    assert anon.get(server.url + "/livez").text == "ok"
    assert anon.get(server.url + "/version").json()["major"] == "1"
    assert server.http().get(cm_url(server, "default", "anon")).status_code == 404


def _ct(content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type}
