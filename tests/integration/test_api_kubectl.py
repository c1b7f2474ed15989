"""The real `kubectl` binary against a real `kybern server`: create, apply, get in its output
formats and with selectors, watch, describe, label, annotate, the three patch types, replace,
delete, scale, discovery, raw paths, and kubectl's own error messages for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from conftest import Server, StreamReader, unique, wait_for


def manifest(namespace: str) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: {namespace}
  labels:
    app: web
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1
        command: ["sleep", "3600"]
      - name: sidecar
        image: busybox:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {namespace}
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""


def configmap(name: str, namespace: str, labels: dict[str, str] | None = None, **data: str) -> str:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "data": data,
    }
    return yaml.safe_dump(obj)


def names(listing: dict[str, Any]) -> list[str]:
    return sorted(item["metadata"]["name"] for item in listing["items"])


@pytest.fixture
def app_ns(server: Server) -> Iterator[str]:
    """A namespace created by `kubectl create -f` of the multi-document manifest."""
    name = unique("app")
    out = server.kubectl("create", "-f", "-", input=manifest(name)).stdout
    assert out.split("\n")[:4] == [
        f"namespace/{name} created",
        "configmap/cfg created",
        "deployment.apps/web created",
        "service/web created",
    ]
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


# ---- create / apply ---------------------------------------------------------------------


def test_create_multi_document_file(server: Server, app_ns: str) -> None:
    ns_obj = server.kubectl_json("get", "namespace", app_ns)
    assert ns_obj["status"]["phase"] == "Active"
    cm = server.kubectl_json("-n", app_ns, "get", "configmap", "cfg")
    assert cm["data"] == {"greeting": "hello"}
    assert cm["metadata"]["labels"] == {"app": "web"}
    deploy = server.kubectl_json("-n", app_ns, "get", "deployment", "web")
    assert deploy["apiVersion"] == "apps/v1"
    assert deploy["spec"]["replicas"] == 2
    assert [c["name"] for c in deploy["spec"]["template"]["spec"]["containers"]] == [
        "web",
        "sidecar",
    ]
    assert deploy["metadata"]["generation"] == 1
    svc = server.kubectl_json("-n", app_ns, "get", "service", "web")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["clusterIP"]
    assert svc["spec"]["ports"][0]["port"] == 80
    # creating the same file again: AlreadyExists, kubectl's wording
    again = server.kubectl("create", "-f", "-", input=manifest(app_ns), check=False)
    assert again.returncode != 0
    assert f'namespaces "{app_ns}" already exists' in again.stderr
    assert 'configmaps "cfg" already exists' in again.stderr


def test_apply_twice_then_change(server: Server) -> None:
    name = unique("apply")
    first = server.kubectl("apply", "--validate=false", "-f", "-", input=manifest(name)).stdout
    assert f"namespace/{name} created" in first
    assert "configmap/cfg created" in first
    assert "deployment.apps/web created" in first
    assert "service/web created" in first
    try:
        second = server.kubectl("apply", "--validate=false", "-f", "-", input=manifest(name))
        assert second.stdout.split("\n")[:4] == [
            f"namespace/{name} unchanged",
            "configmap/cfg unchanged",
            "deployment.apps/web unchanged",
            "service/web unchanged",
        ]
        changed = manifest(name).replace("greeting: hello", "greeting: bonjour")
        changed = changed.replace("replicas: 2", "replicas: 4")
        third = server.kubectl("apply", "--validate=false", "-f", "-", input=changed).stdout
        assert "configmap/cfg configured" in third
        assert "deployment.apps/web configured" in third
        assert f"namespace/{name} unchanged" in third
        cm = server.kubectl_json("-n", name, "get", "configmap", "cfg")
        assert cm["data"] == {"greeting": "bonjour"}
        last = json.loads(
            cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        )
        assert last["data"] == {"greeting": "bonjour"}
        deploy = server.kubectl_json("-n", name, "get", "deployment", "web")
        assert deploy["spec"]["replicas"] == 4
        assert deploy["metadata"]["generation"] == 2
    finally:
        server.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_create_imperative_configmap_and_namespace(server: Server) -> None:
    """`kubectl create configmap|namespace` send their bodies as protobuf (built-in types)."""
    name = unique("imp")
    out = server.kubectl("create", "namespace", name, check=False)
    assert out.returncode == 0, out.stderr
    try:
        out = server.kubectl(
            "-n", name, "create", "configmap", "lit", "--from-literal=k=v", check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "configmap/lit created"
        cm = server.kubectl_json("-n", name, "get", "configmap", "lit")
        assert cm["data"] == {"k": "v"}
    finally:
        server.kubectl("delete", "namespace", name, "--wait=false", check=False)


# ---- get ----------------------------------------------------------------------------------


def test_get_output_formats(server: Server, app_ns: str) -> None:
    as_json = server.kubectl_json("-n", app_ns, "get", "configmaps")
    assert as_json["kind"] == "List"
    assert "cfg" in names(as_json)
    as_yaml = yaml.safe_load(
        server.kubectl("-n", app_ns, "get", "configmap", "cfg", "-o", "yaml").stdout
    )
    assert as_yaml["kind"] == "ConfigMap"
    assert as_yaml["metadata"]["namespace"] == app_ns
    assert as_yaml["data"] == {"greeting": "hello"}
    jp = server.kubectl(
        "-n",
        app_ns,
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ).stdout
    assert jp == "web sidecar"
    assert server.kubectl("-n", app_ns, "get", "cm", "cfg", "-o", "name").stdout.strip() == (
        "configmap/cfg"
    )
    # the table printer only shows NAME/AGE without server-side tables, but it must work
    plain = server.kubectl("-n", app_ns, "get", "configmap", "cfg").stdout
    assert plain.splitlines()[0].startswith("NAME")
    assert "cfg" in plain


def test_get_missing_object(server: Server, app_ns: str) -> None:
    out = server.kubectl("-n", app_ns, "get", "configmap", "nope", check=False)
    assert out.returncode == 1
    assert 'Error from server (NotFound): configmaps "nope" not found' in out.stderr


def test_get_label_selectors(server: Server, ns: str) -> None:
    docs = [
        configmap("a", ns, {"tier": "front", "env": "prod"}),
        configmap("b", ns, {"tier": "back", "env": "prod"}),
        configmap("c", ns, {"tier": "cache"}),
        configmap("d", ns),
    ]
    server.kubectl("create", "-f", "-", input="---\n".join(docs))
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "env=prod")) == ["a", "b"]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "tier!=front")) == [
        "b",
        "c",
        "d",
    ]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "tier in (front,cache)")) == [
        "a",
        "c",
    ]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "tier notin (front)")) == [
        "b",
        "c",
        "d",
    ]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "!env")) == ["c", "d"]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "tier,env=prod,tier!=back")) == [
        "a"
    ]
    assert names(server.kubectl_json("-n", ns, "get", "cm", "-l", "env=staging")) == []
    bad = server.kubectl("-n", ns, "get", "cm", "-l", "tier in (", check=False)
    assert bad.returncode != 0


def test_get_field_selector(server: Server, ns: str) -> None:
    server.kubectl(
        "create", "-f", "-", input=configmap("alpha", ns) + "---\n" + configmap("beta", ns)
    )
    got = server.kubectl_json("-n", ns, "get", "cm", "--field-selector", "metadata.name=alpha")
    assert names(got) == ["alpha"]
    got = server.kubectl_json("-n", ns, "get", "cm", "--field-selector", "metadata.name!=alpha")
    assert names(got) == ["beta"]
    got = server.kubectl_json(
        "get", "cm", "-A", "--field-selector", f"metadata.namespace={ns},metadata.name=beta"
    )
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in got["items"]] == [
        (ns, "beta")
    ]
    bad = server.kubectl("-n", ns, "get", "cm", "--field-selector", "data.x=1", check=False)
    assert bad.returncode != 0
    assert "field label not supported" in bad.stderr


def test_get_all_namespaces(server: Server, ns: str) -> None:
    other = unique("other")
    server.kubectl(
        "create", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n"
    )
    try:
        server.kubectl(
            "create", "-f", "-", input=configmap("one", ns) + "---\n" + configmap("two", other)
        )
        listing = server.kubectl_json("get", "configmaps", "-A")
        seen = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]}
        assert {(ns, "one"), (other, "two")} <= seen
        namespaces = names(server.kubectl_json("get", "namespaces"))
        for system in ("default", "kube-system", "kube-public", "kube-node-lease"):
            assert system in namespaces
        svc = server.kubectl_json("-n", "default", "get", "service", "kubernetes")
        assert svc["spec"]["ports"][0]["port"] == 443
    finally:
        server.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_get_watch_prints_changes(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("before", ns))
    proc = server.kubectl_popen(
        "-n", ns, "get", "configmaps", "--watch", "--output-watch-events", "-o", "json",
        "--request-timeout=60s",
    )  # fmt: skip
    try:
        reader = StreamReader(proc)

        def names_seen() -> list[tuple[str, str]]:
            return [(v["type"], v["object"]["metadata"]["name"]) for v in reader.json_values()]

        # the initial list arrives as ADDED: the watch is established after it
        wait_for(lambda: ("ADDED", "before") in names_seen(), message="the initial list")
        server.kubectl("create", "-f", "-", input=configmap("during", ns, a="1"))
        server.kubectl("-n", ns, "label", "configmap", "during", "touched=yes")
        server.kubectl("-n", ns, "delete", "configmap", "during")
        expected = [
            ("ADDED", "before"),
            ("ADDED", "during"),
            ("MODIFIED", "during"),
            ("DELETED", "during"),
        ]
        wait_for(lambda: names_seen() == expected, message=f"{expected}, saw {names_seen()}")
        events = reader.json_values()
        assert events[2]["object"]["metadata"]["labels"] == {"touched": "yes"}
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events[1:]]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3
        assert proc.poll() is None, "the watch ended early"
    finally:
        proc.terminate()
        proc.wait(10)


def test_get_watch_ends_at_request_timeout(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("idle", ns))
    proc = server.kubectl_popen(
        "-n", ns, "get", "configmaps", "-w", "-o", "name", "--request-timeout=2s"
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "configmap/idle"


# ---- describe / label / annotate -------------------------------------------------------


def test_describe(server: Server, app_ns: str) -> None:
    out = server.kubectl("-n", app_ns, "describe", "deployment", "web").stdout
    assert "Name:" in out and "web" in out
    assert f"Namespace:              {app_ns}" in out
    assert "Replicas:               2 desired" in out
    assert "sidecar:" in out
    out = server.kubectl("-n", app_ns, "describe", "configmap", "cfg").stdout
    assert "greeting" in out and "hello" in out
    out = server.kubectl("-n", app_ns, "describe", "service", "web").stdout
    assert "Selector:" in out and "app=web" in out
    out = server.kubectl("describe", "namespace", app_ns).stdout
    assert "Status:" in out and "Active" in out


def test_label_and_annotate(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("lab", ns, {"keep": "1"}))
    out = server.kubectl("-n", ns, "label", "configmap", "lab", "color=blue").stdout
    assert out.strip() == "configmap/lab labeled"
    got = server.kubectl_json("-n", ns, "get", "cm", "lab")
    assert got["metadata"]["labels"] == {"keep": "1", "color": "blue"}
    refused = server.kubectl("-n", ns, "label", "configmap", "lab", "color=red", check=False)
    assert refused.returncode != 0
    assert "already has a value (blue)" in refused.stderr
    server.kubectl("-n", ns, "label", "configmap", "lab", "color=red", "--overwrite")
    server.kubectl("-n", ns, "label", "configmap", "lab", "keep-")
    got = server.kubectl_json("-n", ns, "get", "cm", "lab")
    assert got["metadata"]["labels"] == {"color": "red"}
    bad = server.kubectl("-n", ns, "label", "configmap", "lab", "ok=not valid!", check=False)
    assert bad.returncode != 0

    out = server.kubectl("-n", ns, "annotate", "configmap", "lab", "note=hello world").stdout
    assert out.strip() == "configmap/lab annotated"
    got = server.kubectl_json("-n", ns, "get", "cm", "lab")
    assert got["metadata"]["annotations"]["note"] == "hello world"
    server.kubectl("-n", ns, "annotate", "configmap", "lab", "note-")
    got = server.kubectl_json("-n", ns, "get", "cm", "lab")
    assert "note" not in (got["metadata"].get("annotations") or {})


# ---- patch / replace ------------------------------------------------------------------------


def test_patch_json(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("p", ns, a="1", b="2"))
    ops = [
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"},
    ]
    out = server.kubectl("-n", ns, "patch", "cm", "p", "--type", "json", "-p", json.dumps(ops))
    assert out.stdout.strip() == "configmap/p patched"
    assert server.kubectl_json("-n", ns, "get", "cm", "p")["data"] == {"a": "10", "c": "3"}
    failing = [{"op": "test", "path": "/data/a", "value": "nope"}]
    bad = server.kubectl(
        "-n", ns, "patch", "cm", "p", "--type", "json", "-p", json.dumps(failing), check=False
    )
    assert bad.returncode != 0
    assert server.kubectl_json("-n", ns, "get", "cm", "p")["data"] == {"a": "10", "c": "3"}


def test_patch_merge(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("m", ns, {"x": "1"}, a="1", b="2"))
    patch = {"metadata": {"labels": {"y": "2"}}, "data": {"a": None, "c": "3"}}
    server.kubectl("-n", ns, "patch", "cm", "m", "--type", "merge", "-p", json.dumps(patch))
    got = server.kubectl_json("-n", ns, "get", "cm", "m")
    assert got["data"] == {"b": "2", "c": "3"}
    assert got["metadata"]["labels"] == {"x": "1", "y": "2"}
    # no change: kubectl says so
    out = server.kubectl("-n", ns, "patch", "cm", "m", "--type", "merge", "-p", json.dumps(patch))
    assert out.stdout.strip() == "configmap/m patched (no change)"


def test_patch_strategic_merges_containers_by_name(server: Server, app_ns: str) -> None:
    before = server.kubectl_json("-n", app_ns, "get", "deployment", "web")
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox:2"},
                        {"name": "extra", "image": "busybox:3"},
                    ]
                }
            }
        }
    }
    # strategic is kubectl's default patch type
    server.kubectl("-n", app_ns, "patch", "deployment", "web", "-p", json.dumps(patch))
    after = server.kubectl_json("-n", app_ns, "get", "deployment", "web")
    containers = {c["name"]: c for c in after["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"web", "sidecar", "extra"}
    assert containers["web"]["image"] == "busybox:1"
    assert containers["web"]["command"] == ["sleep", "3600"]
    assert containers["sidecar"]["image"] == "busybox:2"
    assert containers["extra"]["image"] == "busybox:3"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    # $patch: delete removes one element by its merge key
    remove = {
        "spec": {"template": {"spec": {"containers": [{"name": "extra", "$patch": "delete"}]}}}
    }
    server.kubectl(
        "-n", app_ns, "patch", "deployment", "web", "--type", "strategic", "-p", json.dumps(remove)
    )
    after = server.kubectl_json("-n", app_ns, "get", "deployment", "web")
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == [
        "web",
        "sidecar",
    ]


def test_replace(server: Server, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=configmap("r", ns, a="1"))
    current = server.kubectl_json("-n", ns, "get", "cm", "r")
    current["data"] = {"a": "2"}
    out = server.kubectl("replace", "-f", "-", input=json.dumps(current)).stdout
    assert out.strip() == "configmap/r replaced"
    got = server.kubectl_json("-n", ns, "get", "cm", "r")
    assert got["data"] == {"a": "2"}
    assert int(got["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])
    # the stale resourceVersion of `current` is a conflict
    current["data"] = {"a": "3"}
    stale = server.kubectl("replace", "-f", "-", input=json.dumps(current), check=False)
    assert stale.returncode != 0
    assert "Operation cannot be fulfilled on configmaps" in stale.stderr
    assert "the object has been modified" in stale.stderr
    # without a resourceVersion it is an unconditional update
    del current["metadata"]["resourceVersion"]
    server.kubectl("replace", "-f", "-", input=json.dumps(current))
    assert server.kubectl_json("-n", ns, "get", "cm", "r")["data"] == {"a": "3"}


# ---- delete --------------------------------------------------------------------------------


def test_delete_by_name_label_and_all(server: Server, ns: str) -> None:
    docs = [
        configmap("d1", ns, {"group": "a"}),
        configmap("d2", ns, {"group": "a"}),
        configmap("d3", ns, {"group": "b"}),
        configmap("d4", ns, {"group": "b"}),
        configmap("d5", ns),
    ]
    server.kubectl("create", "-f", "-", input="---\n".join(docs))
    out = server.kubectl("-n", ns, "delete", "configmap", "d1").stdout
    assert out.strip() == 'configmap "d1" deleted'
    assert names(server.kubectl_json("-n", ns, "get", "cm")) == ["d2", "d3", "d4", "d5"]
    out = server.kubectl("-n", ns, "delete", "configmap", "-l", "group=b").stdout
    assert sorted(out.strip().splitlines()) == ['configmap "d3" deleted', 'configmap "d4" deleted']
    assert names(server.kubectl_json("-n", ns, "get", "cm")) == ["d2", "d5"]
    out = server.kubectl("-n", ns, "delete", "configmaps", "--all").stdout
    assert sorted(out.strip().splitlines()) == ['configmap "d2" deleted', 'configmap "d5" deleted']
    assert names(server.kubectl_json("-n", ns, "get", "cm")) == []
    missing = server.kubectl("-n", ns, "delete", "configmap", "d1", check=False)
    assert missing.returncode != 0
    assert 'configmaps "d1" not found' in missing.stderr
    assert server.kubectl("-n", ns, "delete", "configmap", "d1", "--ignore-not-found").stdout == ""


def test_delete_file(server: Server, ns: str) -> None:
    docs = manifest(ns).split("---\n")[1:]  # everything but the namespace
    text = "---\n".join(docs)
    server.kubectl("create", "-f", "-", input=text)
    out = server.kubectl("delete", "-f", "-", input=text).stdout
    assert out.strip().splitlines() == [
        'configmap "cfg" deleted',
        'deployment.apps "web" deleted',
        'service "web" deleted',
    ]
    for kind in ("configmap/cfg", "deployment/web", "service/web"):
        gone = server.kubectl("-n", ns, "get", kind, check=False)
        assert gone.returncode == 1 and "NotFound" in gone.stderr


# ---- scale --------------------------------------------------------------------------------


def test_scale(server: Server, app_ns: str) -> None:
    out = server.kubectl("-n", app_ns, "scale", "deployment", "web", "--replicas=5").stdout
    assert out.strip() == "deployment.apps/web scaled"
    assert server.kubectl_json("-n", app_ns, "get", "deploy", "web")["spec"]["replicas"] == 5
    server.kubectl("-n", app_ns, "scale", "deployment", "web", "--replicas=0")
    assert server.kubectl_json("-n", app_ns, "get", "deploy", "web")["spec"]["replicas"] == 0
    # with a precondition on the current size kubectl GETs the Scale and PUTs it back
    wrong = server.kubectl(
        "-n", app_ns, "scale", "deployment", "web", "--current-replicas=2", "--replicas=1",
        check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "Expected replicas to be 2, was 0" in wrong.stderr
    server.kubectl(
        "-n", app_ns, "scale", "deployment", "web", "--current-replicas=0", "--replicas=3"
    )
    assert server.kubectl_json("-n", app_ns, "get", "deploy", "web")["spec"]["replicas"] == 3
    # a PUT of Scale to 0: Go's omitempty leaves `replicas` out of the body, meaning 0
    server.kubectl(
        "-n", app_ns, "scale", "deployment", "web", "--current-replicas=3", "--replicas=0"
    )
    assert server.kubectl_json("-n", app_ns, "get", "deploy", "web")["spec"]["replicas"] == 0


# ---- discovery and raw --------------------------------------------------------------------


def test_api_resources(server: Server) -> None:
    out = server.kubectl("api-resources", "--no-headers").stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        rows[cols[0]] = cols
    assert rows["deployments"][-3:] == ["apps/v1", "true", "Deployment"]
    assert "deploy" in rows["deployments"]
    assert rows["configmaps"][-3:] == ["v1", "true", "ConfigMap"]
    assert rows["namespaces"][-3:] == ["v1", "false", "Namespace"]
    assert rows["nodes"][-3:] == ["v1", "false", "Node"]
    assert rows["customresourcedefinitions"][-3:] == [
        "apiextensions.k8s.io/v1",
        "false",
        "CustomResourceDefinition",
    ]
    for plural in (
        "pods", "services", "secrets", "serviceaccounts", "events", "endpoints",
        "persistentvolumes", "persistentvolumeclaims", "replicationcontrollers", "limitranges",
        "resourcequotas", "replicasets", "statefulsets", "daemonsets", "controllerrevisions",
        "jobs", "cronjobs", "leases", "endpointslices", "roles", "clusterroles", "rolebindings",
        "clusterrolebindings", "storageclasses", "csidrivers", "csinodes", "volumeattachments",
        "apiservices", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
    ):  # fmt: skip
        assert plural in rows, plural
    namespaced = server.kubectl("api-resources", "--namespaced=false", "-o", "name").stdout
    assert "namespaces" in namespaced.split()
    assert "configmaps" not in namespaced.split()
    apps = server.kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert "deployments.apps" in apps
    wide = server.kubectl("api-resources", "-o", "wide", "--api-group=apps", "--no-headers")
    deploy_row = next(r for r in wide.stdout.splitlines() if r.startswith("deployments "))
    assert deploy_row.split()[5:] == [
        "create,delete,deletecollection,get,list,patch,update,watch",
        "all",
    ]


def test_api_versions(server: Server) -> None:
    versions = server.kubectl("api-versions").stdout.split()
    for gv in (
        "v1",
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "events.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "storage.k8s.io/v1",
        "apiextensions.k8s.io/v1",
        "apiregistration.k8s.io/v1",
        "admissionregistration.k8s.io/v1",
    ):
        assert gv in versions, gv


def test_version(server: Server) -> None:
    out = json.loads(server.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["major"] == "1"
    assert out["serverVersion"]["gitVersion"].startswith("v1.")


def test_get_raw(server: Server) -> None:
    assert server.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    assert server.kubectl("get", "--raw", "/livez").stdout.strip() == "ok"
    assert server.kubectl("get", "--raw", "/healthz").stdout.strip() == "ok"
    v1 = json.loads(server.kubectl("get", "--raw", "/api/v1").stdout)
    assert v1["kind"] == "APIResourceList"
    assert v1["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in v1["resources"]}
    assert by_name["pods"]["namespaced"] is True
    assert "binding" not in by_name["pods"]["verbs"]
    assert by_name["pods/binding"]["verbs"] == ["create"]
    assert "pods/status" in by_name
    assert by_name["configmaps"]["shortNames"] == ["cm"]
    assert by_name["configmaps"]["singularName"] == "configmap"
    api = json.loads(server.kubectl("get", "--raw", "/api").stdout)
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    apps = json.loads(server.kubectl("get", "--raw", "/apis/apps/v1").stdout)
    deployments = next(r for r in apps["resources"] if r["name"] == "deployments")
    assert "all" in deployments["categories"]
    assert any(r["name"] == "deployments/scale" for r in apps["resources"])
    missing = server.kubectl("get", "--raw", "/api/v2", check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


# ---- errors ---------------------------------------------------------------------------------


def test_create_invalid_name(server: Server, ns: str) -> None:
    out = server.kubectl("-n", ns, "create", "-f", "-", input=configmap("Foo_Bar", ns), check=False)
    assert out.returncode == 1
    assert 'The ConfigMap "Foo_Bar" is invalid' in out.stderr
    assert 'metadata.name: Invalid value: "Foo_Bar"' in out.stderr
    assert "RFC 1123" in out.stderr
    assert server.kubectl("-n", ns, "get", "cm", "Foo_Bar", check=False).returncode != 0


def test_create_invalid_label(server: Server, ns: str) -> None:
    doc = configmap("fine", ns, {"bad label!": "x"})
    out = server.kubectl("create", "-f", "-", input=doc, check=False)
    assert out.returncode == 1
    assert 'The ConfigMap "fine" is invalid' in out.stderr
    assert "metadata.labels" in out.stderr
    doc = configmap("fine", ns, {"ok": "bad value!"})
    out = server.kubectl("create", "-f", "-", input=doc, check=False)
    assert out.returncode == 1
    assert 'The ConfigMap "fine" is invalid' in out.stderr
    assert 'Invalid value: "bad value!"' in out.stderr


def test_create_typo_kind(server: Server, ns: str) -> None:
    doc = f"apiVersion: v1\nkind: ConfigMapp\nmetadata:\n  name: typo\n  namespace: {ns}\n"
    out = server.kubectl("create", "-f", "-", input=doc, check=False)
    assert out.returncode == 1
    assert 'no matches for kind "ConfigMapp" in version "v1"' in out.stderr
    out = server.kubectl("create", "--validate=false", "-f", "-", input=doc, check=False)
    assert out.returncode == 1
    assert 'no matches for kind "ConfigMapp" in version "v1"' in out.stderr
    out = server.kubectl("get", "configmapz", check=False)
    assert out.returncode == 1
    assert 'the server doesn\'t have a resource type "configmapz"' in out.stderr


def test_create_unknown_field(server: Server, ns: str) -> None:
    doc = configmap("unknown", ns) + "bogus: 1\n"
    # kubectl's default validation is Strict: the server refuses with a strict decoding error
    out = server.kubectl("create", "-f", "-", input=doc, check=False)
    assert out.returncode == 1
    assert "strict decoding error" in out.stderr
    assert 'unknown field "bogus"' in out.stderr
    assert server.kubectl("-n", ns, "get", "cm", "unknown", check=False).returncode != 0
    # --validate=warn: created, with the server's warning passed on
    out = server.kubectl("create", "--validate=warn", "-f", "-", input=doc)
    assert "configmap/unknown created" in out.stdout
    assert 'unknown field "bogus"' in out.stderr
    # --validate=false: silently dropped
    doc2 = configmap("unknown2", ns) + "bogus: 1\n"
    out = server.kubectl("create", "--validate=false", "-f", "-", input=doc2)
    assert out.stderr == ""
    got = server.kubectl_json("-n", ns, "get", "cm", "unknown2")
    assert "bogus" not in got
