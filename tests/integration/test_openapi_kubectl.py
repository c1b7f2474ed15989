"""OpenAPI v2/v3 against a real `kybern server`, read by the real kubectl: `kubectl explain`
(fields, nested paths, `--recursive`, custom resources), `create -f`/`apply -f` with the default
validation (server-side Strict, which kubectl chooses from the v3 document), client-side
`kubectl apply` computing a strategic merge patch from our patch metadata (lists merged by
key, not replaced), and the HTTP caching rules of the documents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Server, unique, wait_for

KUBECTL_TIMEOUT = 60.0


@pytest.fixture
def kubectl(server: Server, tmp_path: Path) -> Any:
    """`kubectl(*args)`: the real kubectl with a cache dir of this test's own."""

    def run(
        *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return server.kubectl(
            f"--cache-dir={tmp_path / 'kube-cache'}",
            *args,
            check=check,
            input=input,
            timeout=KUBECTL_TIMEOUT,
        )

    return run


def deployment(ns: str, image: str, env: list[str], ports: list[int], second: str) -> str:
    container = {
        "name": "app",
        "image": image,
        "env": [{"name": n, "value": n.lower()} for n in env],
        "ports": [{"containerPort": p} for p in ports],
    }
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [container, {"name": second, "image": "side:1"}]},
                },
            },
        }
    )


def test_explain(kubectl: Any) -> None:
    out = kubectl("explain", "pods").stdout
    assert "KIND:       Pod" in out and "VERSION:    v1" in out
    assert "spec\t<PodSpec>" in out and "metadata\t<ObjectMeta>" in out
    assert "Pod is a collection of containers" in out
    out = kubectl("explain", "deployment.spec.template.spec.containers").stdout
    assert "GROUP:      apps" in out and "FIELD: containers <[]Container>" in out
    assert "env\t<[]EnvVar>" in out and "ports\t<[]ContainerPort>" in out
    out = kubectl("explain", "deploy.spec.strategy.rollingUpdate.maxSurge").stdout
    assert "FIELD: maxSurge <IntOrString>" in out
    out = kubectl("explain", "pods", "--recursive").stdout
    lines = out.splitlines()
    assert len(lines) > 1000  # the whole Pod tree
    for field in (
        "        containerPort\t<integer> -required-",
        "        mountPath\t<string> -required-",
        "  status\t<PodStatus>",
    ):
        assert any(line.startswith(field) for line in lines), field
    bad = kubectl("explain", "pods.spec.nosuchfield", check=False)
    assert bad.returncode != 0 and "nosuchfield" in bad.stderr


def test_create_and_apply_validate_strictly_on_the_server(
    server: Server, kubectl: Any, ns: str
) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}}
    out = kubectl("create", "-f", "-", "-v=6", input=json.dumps({**cm, "bogus": 1}), check=False)
    assert out.returncode != 0
    assert 'strict decoding error: unknown field "bogus"' in out.stderr
    assert "fieldValidation=Strict" in out.stderr  # kubectl found the parameter in /openapi/v3
    assert "/openapi/v3/api/v1?hash=" in out.stderr
    kubectl("create", "-f", "-", input=json.dumps(cm))
    kubectl("apply", "-f", "-", input=json.dumps({**cm, "data": {"k": "v"}}))
    assert server.kubectl_json("get", "configmap", "c", "-n", ns)["data"] == {"k": "v"}


def test_client_side_apply_merges_lists_by_key(server: Server, kubectl: Any, ns: str) -> None:
    kubectl("apply", "-f", "-", input=deployment(ns, "app:1", ["FOO", "BAR"], [80], "side"))
    # someone else adds an env var: client-side apply must keep it (merge, not replace)
    other = {"name": "app", "env": [{"name": "OTHER", "value": "x"}]}
    body = json.dumps({"spec": {"template": {"spec": {"containers": [other]}}}})
    kubectl("patch", "deployment", "web", "-n", ns, "-p", body)
    second = deployment(ns, "app:2", ["FOO", "BAZ"], [80, 81], "helper")
    out = kubectl("apply", "-f", "-", "-v=8", input=second)
    log = out.stderr
    assert "/openapi/v3/apis/apps/v1?hash=" in log
    assert "does not support strategic merge patch" not in log
    assert "error calculating patch from openapi" not in log
    assert "Content-Type: application/strategic-merge-patch+json" in log
    assert "$setElementOrder/containers" in log and '\\"$patch\\":\\"delete\\"' in log
    spec = server.kubectl_json("get", "deployment", "web", "-n", ns)["spec"]["template"]["spec"]
    containers = spec["containers"]
    assert [c["name"] for c in containers] == ["app", "helper"]
    app = containers[0]
    assert app["image"] == "app:2"
    assert sorted(e["name"] for e in app["env"]) == ["BAZ", "FOO", "OTHER"]
    assert [p["containerPort"] for p in app["ports"]] == [80, 81]
    assert app["terminationMessagePath"] == "/dev/termination-log"  # server defaults kept


def crd_manifest(group: str, extra: dict[str, Any] | None = None) -> str:
    spec_props: dict[str, Any] = {
        "cronSpec": {"type": "string", "description": "The cron schedule."},
        "replicas": {"type": "integer"},
        **(extra or {}),
    }
    schema = {
        "type": "object",
        "description": "CronTab runs a thing now and then.",
        "properties": {"spec": {"type": "object", "properties": spec_props}},
    }
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"crontabs.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        }
    )


def test_explain_custom_resource(server: Server, kubectl: Any, ns: str) -> None:
    group = f"{unique('g')}.example.com"
    created = kubectl("apply", "-f", "-", input=crd_manifest(group), check=False)
    assert created.returncode == 0, created.stderr
    try:
        kubectl("wait", "--for=condition=Established", f"crd/crontabs.{group}", "--timeout=30s")

        def explained() -> str:
            out = kubectl("explain", f"crontabs.{group}", check=False)
            return out.stdout if out.returncode == 0 else ""

        out = wait_for(explained, message="kubectl explain of the custom resource")
        assert f"GROUP:      {group}" in out and "KIND:       CronTab" in out
        assert "CronTab runs a thing now and then." in out and "spec\t<Object>" in out
        out = kubectl("explain", f"crontabs.{group}.spec", "--recursive").stdout
        assert "cronSpec\t<string>" in out and "replicas\t<integer>" in out
        # a schema change (the registry does not change) reaches the documents
        kubectl("apply", "-f", "-", input=crd_manifest(group, {"suspend": {"type": "boolean"}}))

        def has_suspend() -> bool:
            out = kubectl("explain", f"crontabs.{group}.spec", "--recursive", check=False)
            return "suspend\t<boolean>" in out.stdout

        wait_for(has_suspend, message="the new field in kubectl explain")
        cr = {
            "apiVersion": f"{group}/v1",
            "kind": "CronTab",
            "metadata": {"name": "c1", "namespace": ns},
            "spec": {"replicas": 1},
        }
        kubectl("apply", "-f", "-", input=json.dumps(cr))
        cr["spec"] = {"replicas": 2}
        out = kubectl("apply", "-f", "-", "-v=6", input=json.dumps(cr))  # a merge patch
        got = server.kubectl_json("get", f"crontabs.{group}", "c1", "-n", ns)
        assert got["spec"] == {"replicas": 2}
    finally:
        kubectl("delete", "crd", f"crontabs.{group}", "--wait=false", check=False)


def test_documents_over_http(server: Server) -> None:
    http = server.http()
    index = http.get(server.url + "/openapi/v3", timeout=30)
    assert index.status_code == 200 and index.headers["Cache-Control"] == "no-cache, private"
    paths = index.json()["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1"} <= set(paths)
    url = server.url + paths["apis/apps/v1"]["serverRelativeURL"]
    doc = http.get(url, timeout=30)
    assert doc.status_code == 200 and doc.headers["Cache-Control"] == "public, immutable"
    body = doc.json()
    assert body["openapi"] == "3.0.0"
    assert "io.k8s.api.apps.v1.Deployment" in body["components"]["schemas"]
    again = http.get(url, headers={"If-None-Match": doc.headers["ETag"]}, timeout=30)
    assert again.status_code == 304
    stale = http.get(server.url + "/openapi/v3/apis/apps/v1?hash=0", allow_redirects=False)
    assert stale.status_code == 301 and stale.headers["Location"] == url.removeprefix(server.url)
    v2 = http.get(server.url + "/openapi/v2", headers={"Accept": "application/json"}, timeout=30)
    assert v2.status_code == 200 and v2.json()["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in v2.json()["definitions"]
    proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    pb = http.get(server.url + "/openapi/v2", headers={"Accept": proto}, timeout=30)
    assert pb.status_code == 200
    assert pb.headers["Content-Type"].startswith("application/com.github.proto-openapi.spec.v2")
    assert pb.headers["ETag"] == v2.headers["ETag"]


def test_api_resources_wide(kubectl: Any) -> None:
    out = kubectl("api-resources", "-o", "wide").stdout
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "SHORTNAMES",
        "APIVERSION",
        "NAMESPACED",
        "KIND",
        "VERBS",
        "CATEGORIES",
    ]
    deploy = next(r.split() for r in rows if r.startswith("deployments "))
    assert deploy[:4] == ["deployments", "deploy", "apps/v1", "true"]
    assert deploy[5] == "create,delete,deletecollection,get,list,patch,update,watch"
