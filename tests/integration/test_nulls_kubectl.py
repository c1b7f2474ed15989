"""Explicit YAML nulls in built-in kinds through the real `kubectl` against a real `kybern
server`, answered as kube-apiserver's typed decode stores them: `kubectl create -f` of a
ConfigMap with an empty `data:` and `labels:` keeps neither (in the create answer and in `get -o
json`), null map values become "" (a label, a binaryData value), and a Pod with `containers:`
left empty gets the same 422 as one without the field; a null or empty `apiVersion`/`kind` is
taken from the URL, as a missing one is."""

from __future__ import annotations

import json

from conftest import Server

CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels:{labels}
data:{data}
"""


def test_kubectl_create_configmap_with_empty_data_and_labels(server: Server, ns: str) -> None:
    doc = CM.format(name="empty", labels="", data="")
    created = json.loads(
        server.kubectl("create", "-n", ns, "-f", "-", "-o", "json", input=doc).stdout
    )
    got = server.kubectl_json("get", "configmap", "empty", "-n", ns)
    for obj in (created, got):
        assert "data" not in obj
        assert "labels" not in obj["metadata"]
        assert obj["metadata"]["name"] == "empty" and obj["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_null_map_values_are_stored_as_empty_strings(server: Server, ns: str) -> None:
    doc = CM.format(name="zeros", labels="\n    a:\n    b: x", data="\n  k:\nbinaryData:\n  bin:")
    server.kubectl("create", "-n", ns, "-f", "-", input=doc)
    got = server.kubectl_json("get", "configmap", "zeros", "-n", ns)
    assert got["metadata"]["labels"] == {"a": "", "b": "x"}
    assert got["data"] == {"k": ""}
    assert got["binaryData"] == {"bin": ""}
    shown = server.kubectl("get", "configmap", "-n", ns, "-l", "a=", "-o", "name").stdout
    assert shown == "configmap/zeros\n"


def test_pod_with_empty_containers_is_invalid_like_one_without(server: Server, ns: str) -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  restartPolicy: Always\n"
    missing = server.kubectl("create", "-n", ns, "-f", "-", input=pod, check=False)
    null = server.kubectl("create", "-n", ns, "-f", "-", input=pod + "  containers:\n", check=False)
    assert missing.returncode == null.returncode == 1
    assert null.stderr == missing.stderr
    assert 'The Pod "p" is invalid: spec.containers: Required value' in null.stderr


def test_null_or_empty_apiversion_and_kind_default_to_the_endpoints(
    server: Server, ns: str
) -> None:
    http = server.http()
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps"
    for i, (av, kind) in enumerate([(None, None), ("", ""), (None, "ConfigMap")]):
        body = {"apiVersion": av, "kind": kind, "metadata": {"name": f"c{i}"}, "data": {"a": "1"}}
        r = http.post(url, json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["apiVersion"], r.json()["kind"]) == ("v1", "ConfigMap")
    r = http.post(url, json={"apiVersion": "v2", "kind": None, "metadata": {"name": "bad"}})
    assert r.status_code == 400
    assert r.json()["message"] == (
        "the API version in the data (v2) does not match the expected API version (v1)"
    )
