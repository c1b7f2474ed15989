"""Server-side apply against a real `kybern server`: `kubectl apply --server-side` (create,
no-op re-apply, the conflict text kubectl prints, `--force-conflicts`), the migration from
client-side apply, the PyPI `kubernetes` client's server-side apply (typed API with the apply
content type, and `dynamic`), the 409 `Status` of a conflict and the 422 without a field
manager, and the managedFields every write leaves (create, update, patch, status, scale) with
the manager taken from `fieldManager` or from the User-Agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Server, running_server, unique, wait_for
from kubernetes import client as k8s
from kubernetes import dynamic
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    with running_server() as s:
        s.kubectl("wait", "--for=jsonpath={.status.phase}=Active", "ns/default", "--timeout=30s")
        yield s


@pytest.fixture
def ns(srv: Server) -> Iterator[str]:
    name = unique("ssa")
    srv.kubectl("create", "namespace", name)
    yield name
    srv.kubectl("delete", "namespace", name, "--wait=false", check=False)


def deployment(ns: str, name: str, replicas: int = 1, image: str = "nginx:1.25") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
                        ]
                    },
                },
            },
        }
    )


def managed(srv: Server, *args: str) -> dict[tuple[str, str, str], Any]:
    obj = json.loads(srv.kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)
    return {
        (e["manager"], e["operation"], e.get("subresource", "")): e
        for e in obj["metadata"]["managedFields"]
    }


def test_kubectl_server_side_apply(srv: Server, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(deployment(ns, "web"))
    out = srv.kubectl("apply", "--server-side", "-f", str(f))
    assert out.stdout == "deployment.apps/web serverside-applied\n"
    rv = srv.kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}")
    srv.kubectl("apply", "--server-side", "-f", str(f))
    rv2 = srv.kubectl(
        "get", "deploy", "web", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}"
    )
    assert rv.stdout == rv2.stdout  # unchanged: no write
    got = managed(srv, "deploy", "web", "-n", ns)
    e = got["kubectl", "Apply", ""]
    assert e["apiVersion"] == "apps/v1" and e["fieldsType"] == "FieldsV1" and e["time"]
    assert e["fieldsV1"]["f:spec"]["f:replicas"] == {}
    ports = e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in ports["f:ports"]

    f.write_text(deployment(ns, "web", replicas=3))
    bad = srv.kubectl("apply", "--server-side", "--field-manager=ci", "-f", str(f), check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas\n'
        "Please review the fields above--they currently have other managers."
    )
    assert "--force-conflicts" in bad.stderr
    forced = srv.kubectl(
        "apply", "--server-side", "--field-manager=ci", "--force-conflicts", "-f", str(f)
    )
    assert forced.stdout == "deployment.apps/web serverside-applied\n"
    got = managed(srv, "deploy", "web", "-n", ns)
    assert got["ci", "Apply", ""]["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert "f:replicas" not in got["kubectl", "Apply", ""]["fieldsV1"]["f:spec"]
    dry = srv.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(f))
    assert dry.stdout == "deployment.apps/web serverside-applied (server dry run)\n"


def test_client_side_then_server_side_apply(srv: Server, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(deployment(ns, "mig"))
    assert srv.kubectl("apply", "-f", str(f)).stdout == "deployment.apps/mig created\n"
    got = managed(srv, "deploy", "mig", "-n", ns)
    csa = got["kubectl-client-side-apply", "Update", ""]["fieldsV1"]
    assert (
        "f:kubectl.kubernetes.io/last-applied-configuration" in csa["f:metadata"]["f:annotations"]
    )
    f.write_text(deployment(ns, "mig", replicas=2))
    out = srv.kubectl("apply", "--server-side", "-f", str(f))  # no conflict: CSA migration
    assert out.stdout == "deployment.apps/mig serverside-applied\n"
    obj = json.loads(srv.kubectl("get", "deploy", "mig", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 2
    last = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(last)["spec"]["replicas"] == 2
    got = managed(srv, "deploy", "mig", "-n", ns)
    assert got["kubectl", "Apply", ""]["fieldsV1"]["f:spec"]["f:replicas"] == {}


def test_python_client_server_side_apply(srv: Server, ns: str) -> None:
    api = srv.client()
    core = k8s.CoreV1Api(api)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py"}, "data": {"x": "1"}}
    out = core.patch_namespaced_config_map(
        "py", ns, body, field_manager="py-a", _content_type="application/apply-patch+yaml"
    )
    (e,) = out.metadata.managed_fields
    assert (e.manager, e.operation, e.fields_v1) == ("py-a", "Apply", {"f:data": {"f:x": {}}})
    cms = dynamic.DynamicClient(api).resources.get(api_version="v1", kind="ConfigMap")
    body2 = {**body, "metadata": {"name": "py", "namespace": ns}, "data": {"x": "2"}}
    with pytest.raises(ApiException) as err:
        cms.server_side_apply(body=body2, field_manager="py-b")
    status = json.loads(err.value.body)
    assert err.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "py-a": .data.x'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "py-a"', "field": ".data.x"}
    ]
    done = cms.server_side_apply(body=body2, field_manager="py-b", force_conflicts=True)
    assert done.data.x == "2"
    # an update without fieldManager: the User-Agent's product name manages what it changed
    cm = core.read_namespaced_config_map("py", ns)
    cm.data["y"] = "3"
    cm = core.replace_namespaced_config_map("py", ns, cm)
    owners = {(m.manager, m.operation): m.fields_v1 for m in cm.metadata.managed_fields}
    assert owners == {
        ("py-b", "Apply"): {"f:data": {"f:x": {}}},
        ("OpenAPI-Generator", "Update"): {"f:data": {"f:y": {}}},
    }


def test_apply_over_http(srv: Server, ns: str) -> None:
    http = srv.http()
    url = f"{srv.url}/api/v1/namespaces/{ns}/configmaps/raw"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raw\ndata:\n  a: b\n"
    hdr = {"Content-Type": "application/apply-patch+yaml"}
    r = http.patch(url, data=body, headers=hdr)
    assert r.status_code == 422
    assert r.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
        "apply patch"
    )
    r = http.patch(url + "?fieldManager=m", data=body, headers=hdr)
    assert r.status_code == 201
    r2 = http.patch(url + "?fieldManager=m", data=body, headers=hdr)
    assert r2.status_code == 200
    assert r2.json()["metadata"]["resourceVersion"] == r.json()["metadata"]["resourceVersion"]
    r3 = http.patch(url + "?fieldManager=m", data=body.replace("a: b", "c: d"), headers=hdr)
    assert r3.json()["data"] == {"c": "d"}  # `a` was only m's: removed


def test_every_write_updates_managed_fields(srv: Server, ns: str, tmp_path: Path) -> None:
    srv.kubectl("create", "deployment", "w", "--image=nginx", "-n", ns)
    got = managed(srv, "deploy", "w", "-n", ns)
    e = got["kubectl-create", "Update", ""]
    assert e["apiVersion"] == "apps/v1" and e["fieldsType"] == "FieldsV1" and e["time"]
    assert "f:replicas" in e["fieldsV1"]["f:spec"]
    srv.kubectl("patch", "deploy", "w", "-n", ns, "-p", '{"spec":{"minReadySeconds":3}}')
    got = managed(srv, "deploy", "w", "-n", ns)
    assert got["kubectl-patch", "Update", ""]["fieldsV1"] == {"f:spec": {"f:minReadySeconds": {}}}
    srv.kubectl("label", "deploy", "w", "-n", ns, "tier=web")
    got = managed(srv, "deploy", "w", "-n", ns)
    assert got["kubectl-label", "Update", ""]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:tier": {}}}
    }
    srv.kubectl("scale", "deploy", "w", "-n", ns, "--replicas=2")
    got = managed(srv, "deploy", "w", "-n", ns)
    scale = [e for k, e in got.items() if k[2] == "scale"]
    assert scale and scale[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in got["kubectl-create", "Update", ""]["fieldsV1"]["f:spec"]
    # a status write (no controller touches this one): its own entry, with the subresource
    http = srv.http()
    r = http.patch(
        f"{srv.url}/api/v1/namespaces/{ns}/status?fieldManager=tester",
        json={"status": {"conditions": [{"type": "Custom", "status": "True"}]}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    mine = [m for m in r.json()["metadata"]["managedFields"] if m["manager"] == "tester"]
    assert mine == [
        {
            "manager": "tester",
            "operation": "Update",
            "apiVersion": "v1",
            "time": mine[0]["time"],
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:status": {
                    "f:conditions": {
                        'k:{"type":"Custom"}': {"f:status": {}, "f:type": {}, ".": {}},
                        ".": {},
                    }
                }
            },
            "subresource": "status",
        }
    ]


def test_unknown_fields_and_custom_resources(srv: Server, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    bad = yaml.safe_load(deployment(ns, "bad"))
    bad["spec"]["foo"] = 1
    f.write_text(yaml.safe_dump(bad))
    out = srv.kubectl("apply", "--server-side", "-f", str(f), check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"Error from server: failed to create typed patch object ({ns}/bad; apps/v1, "
        "Kind=Deployment): .spec.foo: field not declared in schema"
    )
    group = unique("g") + ".example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "items": {
                                            "type": "array",
                                            "x-kubernetes-list-type": "map",
                                            "x-kubernetes-list-map-keys": ["id"],
                                            "items": {
                                                "type": "object",
                                                "required": ["id"],
                                                "properties": {
                                                    "id": {"type": "string"},
                                                    "v": {"type": "integer"},
                                                },
                                            },
                                        }
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    srv.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    srv.kubectl("wait", "--for=condition=Established", f"crd/things.{group}", "--timeout=30s")
    thing = {
        "apiVersion": f"{group}/v1",
        "kind": "Thing",
        "metadata": {"name": "t", "namespace": ns},
        "spec": {"items": [{"id": "a", "v": 1}]},
    }
    wait_for(
        lambda: srv.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(thing)),
        message="the custom resource to be served",
    )
    thing["spec"] = {"items": [{"id": "b", "v": 2}]}
    srv.kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=json.dumps(thing)
    )
    got = managed(srv, f"things.{group}", "t", "-n", ns)
    assert got["other", "Apply", ""]["fieldsV1"] == {
        "f:spec": {"f:items": {'k:{"id":"b"}': {"f:id": {}, "f:v": {}, ".": {}}}}
    }
    items = json.loads(srv.kubectl("get", f"things.{group}", "t", "-n", ns, "-o", "json").stdout)
    assert [i["id"] for i in items["spec"]["items"]] == ["a", "b"]  # merged by key
