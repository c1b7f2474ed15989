"""The protobuf wire format against a real `kybern server`: the real kubectl's typed commands
(which POST `application/vnd.kubernetes.protobuf` and accept it back) create every served
built-in kind they can create, storing exactly what the same object sent as JSON stores; raw
protobuf GET, LIST, WATCH and POST decode to what the JSON API returns; errors come back as
protobuf Status objects, kinds without protobuf messages answer 406/415 or fall back to JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Server, unique

from kybern.api import protobuf

PROTO = protobuf.MEDIA_TYPE
BOTH = f"{PROTO},application/json"


@pytest.fixture(scope="module")
def raw(server: Server) -> Iterator[requests.Session]:
    """A session with the admin certificate that ignores CA settings from the environment."""
    s = requests.Session()
    s.trust_env = False
    s.verify = server.ca_file
    s.cert = server.client_cert
    yield s
    s.close()


@pytest.fixture(scope="module")
def pns(server: Server) -> str:
    name = unique("pb")
    server.kubectl("create", "namespace", name)  # itself a protobuf create
    return name


# ---- kubectl's typed create commands -----------------------------------------------------------

CREATES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("configmap", ["configmap", "cm1", "--from-literal=a=b", "--from-literal=e="], {}),
    ("secret", ["secret", "generic", "s1", "--from-literal=k=v"], {}),
    ("deployment", ["deployment", "web", "--image=nginx:1.27", "--replicas=0", "--port=80"], {}),
    ("service", ["service", "clusterip", "svc1", "--tcp=80:8080", "--tcp=443:https"], {}),
    ("job", ["job", "j1", "--image=busybox", "--", "echo", "hi"], {}),
    (
        "cronjob",
        ["cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *", "--", "echo", "hi"],
        {},
    ),
    ("serviceaccount", ["serviceaccount", "sa1"], {}),
    ("resourcequota", ["quota", "q1", "--hard=cpu=1,memory=1G,pods=10"], {}),
    ("poddisruptionbudget", ["pdb", "pdb1", "--selector=app=web", "--max-unavailable=0"], {}),
    ("role", ["role", "r1", "--verb=get", "--resource=pods"], {}),
    ("rolebinding", ["rolebinding", "rb1", "--role=r1", "--user=bob"], {}),
]


def _check(kind: str, obj: dict[str, Any]) -> None:
    """What `kubectl create ...` above should have stored."""
    if kind == "configmap":
        assert obj["data"] == {"a": "b", "e": ""}
    elif kind == "secret":
        assert obj["data"] == {"k": "dg=="} and obj["type"] == "Opaque"
    elif kind == "deployment":
        spec = obj["spec"]
        assert spec["replicas"] == 0  # a pointer: its zero survives protobuf
        c = spec["template"]["spec"]["containers"][0]
        assert c["image"] == "nginx:1.27" and c["ports"] == [
            {"containerPort": 80, "protocol": "TCP"}
        ]
        assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    elif kind == "service":
        ports = obj["spec"]["ports"]
        assert [(p["port"], p["targetPort"]) for p in ports] == [(80, 8080), (443, "https")]
        assert obj["spec"]["type"] == "ClusterIP"
    elif kind == "job":
        c = obj["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["echo", "hi"]
        assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    elif kind == "cronjob":
        assert obj["spec"]["schedule"] == "*/5 * * * *"
    elif kind == "resourcequota":
        assert obj["spec"]["hard"] == {"cpu": "1", "memory": "1G", "pods": "10"}
    elif kind == "poddisruptionbudget":
        assert obj["spec"]["maxUnavailable"] == 0  # *IntOrString zero
    elif kind == "role":
        assert obj["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    elif kind == "rolebinding":
        assert obj["subjects"][0]["name"] == "bob"
        assert obj["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "r1",
        }


@pytest.mark.parametrize(("kind", "args", "_"), CREATES, ids=[c[0] for c in CREATES])
def test_kubectl_create(server: Server, pns: str, kind: str, args: list[str], _: Any) -> None:
    split = args.index("--") if "--" in args else len(args)
    out = server.kubectl("create", *args[:split], "-n", pns, *args[split:])
    assert "created" in out.stdout
    name = args[2] if args[0] in ("secret", "service") else args[1]
    obj = server.kubectl_json("get", kind, name, "-n", pns)
    assert obj["metadata"]["name"] == name and obj["metadata"]["namespace"] == pns
    _check(kind, obj)
    # an existing name: the AlreadyExists Status travels as protobuf and kubectl prints it
    again = server.kubectl("create", *args[:split], "-n", pns, *args[split:], check=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_kubectl_cluster_scoped_creates(server: Server) -> None:
    name = unique("pb")
    server.kubectl("create", "clusterrole", name, "--verb=get", "--resource=pods")
    server.kubectl("create", "clusterrolebinding", name, f"--clusterrole={name}", "--user=x")
    assert server.kubectl_json("get", "clusterrolebinding", name)["roleRef"]["name"] == name
    server.kubectl("delete", "clusterrolebinding", name)
    server.kubectl("delete", "clusterrole", name)


@pytest.mark.parametrize(
    "args",
    [
        ["deployment", "same-d", "--image=nginx:1.27", "--replicas=2", "--port=80"],
        ["service", "nodeport", "same-svc", "--tcp=80:8080"],
        ["job", "same-j", "--image=busybox", "--", "echo", "hi"],
        ["cronjob", "same-cj", "--image=busybox", "--schedule=@hourly", "--", "date"],
        ["configmap", "same-cm", "--from-literal=a=b", "--from-literal=e="],
        ["quota", "same-q", "--hard=pods=3"],
    ],
    ids=lambda a: a[0],
)
def test_protobuf_and_json_bodies_store_the_same_object(
    server: Server, pns: str, args: list[str]
) -> None:
    """kubectl's protobuf body (Go zero values written, omitempty unknown) and the JSON of the
    same object (`--dry-run=client -o json | kubectl create -f -`) store the same object."""
    split = args.index("--") if "--" in args else len(args)
    head, tail = [*args[:split], "-n", pns], args[split:]
    obj = json.loads(
        server.kubectl("create", *head, "--dry-run=client", "-o", "json", *tail).stdout
    )
    name = obj["metadata"]["name"]
    obj["metadata"]["name"] = name + "-json"
    server.kubectl("create", "-f", "-", input=json.dumps(obj))
    server.kubectl("create", *head, *tail)
    kind = obj["kind"].lower()
    via_proto = server.kubectl_json("get", kind, name, "-n", pns)
    via_json = server.kubectl_json("get", kind, name + "-json", "-n", pns)
    assert _comparable(via_proto) == _comparable(via_json)


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object less what differs between two objects anyway: identity, the time and the
    work of controllers (status, their annotations), allocated addresses and ports."""
    out: dict[str, Any] = json.loads(json.dumps(obj))
    out.pop("status", None)
    for k in ("name", "uid", "resourceVersion", "creationTimestamp", "managedFields"):
        out["metadata"].pop(k, None)
    out["metadata"].pop("annotations", None)
    spec = out.get("spec") or {}
    for k in ("clusterIP", "clusterIPs"):  # allocated
        spec.pop(k, None)
    for p in spec.get("ports") or []:
        p.pop("nodePort", None)
    if out.get("kind") == "Job":  # the generated selector and pod labels name this Job
        spec.pop("selector", None)
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        for k in [k for k in labels if "controller-uid" in k or "job-name" in k]:
            del labels[k]
    return out


def test_kubectl_typed_reads_and_updates(server: Server, pns: str) -> None:
    """describe, scale, set image, label and delete go through kubectl's typed (protobuf)
    clients too."""
    server.kubectl("create", "deployment", "typed", "--image=nginx:1.27", "-n", pns)
    assert "nginx:1.27" in server.kubectl("describe", "deployment", "typed", "-n", pns).stdout
    server.kubectl("scale", "deployment", "typed", "--replicas=3", "-n", pns)
    server.kubectl("set", "image", "deployment/typed", "nginx=nginx:1.28", "-n", pns)
    server.kubectl("label", "deployment", "typed", "tier=web", "-n", pns)
    obj = server.kubectl_json("get", "deployment", "typed", "-n", pns)
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert obj["metadata"]["labels"]["tier"] == "web"
    server.kubectl("delete", "deployment", "typed", "-n", pns)
    gone = server.kubectl("get", "deployment", "typed", "-n", pns, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


# ---- raw protobuf requests -----------------------------------------------------------------


def test_raw_get_list_create(server: Server, raw: requests.Session, pns: str) -> None:
    base = f"{server.url}/api/v1/namespaces/{pns}/configmaps"
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "raw", "labels": {"t": "raw"}},
        "data": {"x": ""},
    }
    r = raw.post(
        base,
        data=protobuf.encode_object(cm),
        headers={"Content-Type": PROTO, "Accept": BOTH},
    )
    assert r.status_code == 201, r.content
    assert r.headers["Content-Type"] == PROTO
    created = protobuf.decode_object(r.content)
    assert created["data"] == {"x": ""} and created["metadata"]["namespace"] == pns

    r = raw.get(f"{base}/raw", headers={"Accept": BOTH})
    assert r.headers["Content-Type"] == PROTO
    as_json = raw.get(f"{base}/raw", headers={"Accept": "application/json"}).json()
    assert protobuf.decode_object(r.content) == as_json

    only = {"labelSelector": "t=raw"}  # objects of this test alone
    r = raw.get(base, params=only, headers={"Accept": PROTO})
    assert r.status_code == 200 and r.headers["Content-Type"] == PROTO
    listed = protobuf.decode_object(r.content)
    as_json = raw.get(base, params=only, headers={"Accept": "application/json"}).json()
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    assert listed["metadata"]["resourceVersion"].isdigit()
    for item in as_json["items"]:  # list items carry no type information in protobuf
        item.pop("kind", None)
        item.pop("apiVersion", None)
    assert listed["items"] == as_json["items"]


def test_raw_watch(server: Server, raw: requests.Session, pns: str) -> None:
    base = f"{server.url}/api/v1/namespaces/{pns}/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}}
    assert raw.post(base, json=cm).status_code == 201
    rv = raw.get(base).json()["metadata"]["resourceVersion"]
    with raw.get(
        base,
        params={
            "watch": "1",
            "resourceVersion": rv,
            "timeoutSeconds": "30",
            "fieldSelector": "metadata.name=watched",
        },
        headers={"Accept": BOTH},
        stream=True,
    ) as w:
        assert w.status_code == 200
        assert w.headers["Content-Type"] == protobuf.WATCH_MEDIA_TYPE
        patch = raw.patch(
            f"{base}/watched",
            data='{"data":{"k":"v"}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patch.status_code == 200
        stream = b""
        events: list[tuple[str, dict[str, Any]]] = []
        for chunk in w.iter_content(chunk_size=None):
            stream += chunk
            events = list(protobuf.decode_watch_frames(stream))
            if events:
                break
    assert events[0][0] == "MODIFIED"
    assert events[0][1]["kind"] == "ConfigMap" and events[0][1]["data"] == {"k": "v"}


def test_raw_errors(server: Server, raw: requests.Session, pns: str) -> None:
    base = f"{server.url}/api/v1/namespaces/{pns}/configmaps"
    r = raw.get(f"{base}/missing", headers={"Accept": BOTH})
    assert r.status_code == 404 and r.headers["Content-Type"] == PROTO
    st = protobuf.decode_object(r.content)
    assert st["kind"] == "Status" and st["reason"] == "NotFound" and st["code"] == 404

    for body in (b"garbage", b"k8s\x00\x0f", protobuf.envelope("v1", "ConfigMap", b"\x0a\x09")):
        r = raw.post(base, data=body, headers={"Content-Type": PROTO, "Accept": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "BadRequest"

    # a protobuf body of a kind that has no protobuf message
    body = protobuf.envelope("apiregistration.k8s.io/v1", "APIService", b"")
    r = raw.post(
        f"{server.url}/apis/apiregistration.k8s.io/v1/apiservices",
        data=body,
        headers={"Content-Type": PROTO, "Accept": BOTH},
    )
    assert r.status_code == 415, r.content

    crds = f"{server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    r = raw.get(crds, headers={"Accept": PROTO})
    assert r.status_code == 406
    r = raw.get(crds, headers={"Accept": BOTH})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json()["kind"] == "CustomResourceDefinitionList"
