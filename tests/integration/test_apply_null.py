"""Server-side apply of configurations with explicit nulls against a real `kybern server`, as
kube-apiserver (structured-merge-diff) answers them: `kubectl apply --server-side` of a
ConfigMap whose `data` becomes null (the applier's keys are pruned, its entry goes), of a
Deployment with `replicas: null` (defaulted again, still owned) and with a null container (the
500 of an invalid typed patch, not a crash); the PyPI `kubernetes` client applying `data: null`
over keys another manager owns (kept, nothing owned), and a null YAML value over HTTP."""

from __future__ import annotations

import json
from typing import Any

import yaml
from conftest import Server
from kubernetes import client as k8s

# the server and per-test namespace fixtures of the kubectl apply tests
from test_apply_kubectl import ns as ns
from test_apply_kubectl import srv as srv


def owners(obj: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (e["manager"], e["operation"]): e["fieldsV1"]
        for e in obj["metadata"].get("managedFields") or []
    }


def get(srv: Server, *args: str) -> Any:
    return json.loads(srv.kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)


def test_kubectl_apply_null_map_prunes_the_appliers_keys(srv: Server, ns: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}}
    full = yaml.safe_dump({**cm, "data": {"a": "1", "b": "2"}})
    srv.kubectl("apply", "--server-side", "-f", "-", input=full)
    out = srv.kubectl(
        "apply", "--server-side", "-f", "-", input=yaml.safe_dump({**cm, "data": None})
    )
    assert out.stdout == "configmap/c serverside-applied\n"
    obj = get(srv, "cm", "c", "-n", ns)
    assert not obj.get("data")
    assert owners(obj) == {}  # kubectl owned only data.a and data.b


def test_kubectl_apply_null_scalar_and_null_list_item(srv: Server, ns: str) -> None:
    d: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    srv.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(d))
    d["spec"]["replicas"] = None
    srv.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(d))
    obj = get(srv, "deploy", "web", "-n", ns)
    assert obj["spec"]["replicas"] == 1  # null: the typed object's default again
    assert owners(obj)["kubectl", "Apply"]["f:spec"]["f:replicas"] == {}  # still kubectl's
    d["spec"]["template"]["spec"]["containers"] = [None]
    bad = srv.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(d), check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip() == (
        "Error from server: failed to create typed patch object "
        f"({ns}/web; apps/v1, Kind=Deployment): "
        "associative list with keys may not have a null element"
    )


def test_python_client_null_over_another_managers_map(srv: Server, ns: str) -> None:
    core = k8s.CoreV1Api(srv.client())
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "py"},
        "data": {"x": "1"},
    }
    apply = "application/apply-patch+yaml"
    core.patch_namespaced_config_map("py", ns, body, field_manager="a", _content_type=apply)
    body2 = {**body, "data": None, "binaryData": {"k": "eA=="}}
    out = core.patch_namespaced_config_map("py", ns, body2, field_manager="b", _content_type=apply)
    assert out.data == {"x": "1"} and out.binary_data == {"k": "eA=="}
    got = {(m.manager, m.operation): m.fields_v1 for m in out.metadata.managed_fields}
    assert got == {
        ("a", "Apply"): {"f:data": {"f:x": {}}},
        ("b", "Apply"): {"f:binaryData": {"f:k": {}}},
    }


def test_null_over_http(srv: Server, ns: str) -> None:
    http = srv.http()
    url = f"{srv.url}/api/v1/namespaces/{ns}/configmaps/raw?fieldManager=m"
    hdr = {"Content-Type": "application/apply-patch+yaml"}
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raw\ndata:\n  a: b\n"
    assert http.patch(url, data=body, headers=hdr).status_code == 201
    r = http.patch(url.replace("=m", "=n"), data=body.replace("  a: b\n", ""), headers=hdr)
    assert r.status_code == 200  # `data:` (a YAML null) over m's map: kept
    assert r.json()["data"] == {"a": "b"}
    assert owners(r.json()) == {("m", "Apply"): {"f:data": {"f:a": {}}}}
