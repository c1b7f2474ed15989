"""Restarts of a real `kybern server` on the same data dir, after SIGTERM and after SIGKILL:
every acknowledged write is there with its resourceVersion, revisions keep growing, custom
resources are served again, and a watch resumed from its last resourceVersion sees exactly
the events it missed. Also the CLI contract that SIGTERM/SIGINT stop the server within 5 s."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
import requests
from conftest import STOP_TIMEOUT, Server, StreamReader, unique, wait_for
from kubernetes import client as k8s
from kubernetes import watch

Obj = dict[str, Any]


def cm(name: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def create_namespace(core: k8s.CoreV1Api, name: str) -> None:
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def snapshot(api: k8s.ApiClient, ns: str) -> dict[str, tuple[str, str, Any]]:
    """name -> (uid, resourceVersion, data) of every ConfigMap in `ns`."""
    items = k8s.CoreV1Api(api).list_namespaced_config_map(ns).items
    return {i.metadata.name: (i.metadata.uid, i.metadata.resource_version, i.data) for i in items}


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.restart.example.com"},
    "spec": {
        "group": "restart.example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_acknowledged_writes_survive_restart(fresh_server: Server, how: str) -> None:
    srv = fresh_server
    api = srv.client()
    core = k8s.CoreV1Api(api)
    ns = unique("keep")
    create_namespace(core, ns)
    for i in range(40):
        core.create_namespaced_config_map(ns, cm(f"c{i:02d}", v="0"))
    for i in range(0, 40, 3):  # some updated, some twice
        core.patch_namespaced_config_map(f"c{i:02d}", ns, {"data": {"v": "1"}})
    for i in range(0, 40, 9):
        core.patch_namespaced_config_map(f"c{i:02d}", ns, {"data": {"v": "2"}})
    for i in (5, 6, 7):
        core.delete_namespaced_config_map(f"c{i:02d}", ns)
    apps = k8s.AppsV1Api(api)
    deploy = apps.create_namespaced_deployment(
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
    )
    before = snapshot(api, ns)
    assert len(before) == 37
    list_rv = int(core.list_namespaced_config_map(ns).metadata.resource_version)
    ca_before = (srv.creds_dir / "ca.crt").read_bytes()

    if how == "sigkill":
        srv.kill()
        assert srv.proc is not None and srv.proc.returncode == -signal.SIGKILL
        srv.start()
    else:
        srv.restart()

    api = srv.client()
    core = k8s.CoreV1Api(api)
    after = snapshot(api, ns)
    assert after == before
    assert (srv.creds_dir / "ca.crt").read_bytes() == ca_before  # same CA, same credentials
    got = k8s.AppsV1Api(api).read_namespaced_deployment("d", ns)
    assert got.metadata.resource_version == deploy.metadata.resource_version
    assert got.metadata.uid == deploy.metadata.uid
    assert got.spec.replicas == 3
    assert got.metadata.generation == 1
    for i in (5, 6, 7):
        with pytest.raises(k8s.ApiException) as info:
            core.read_namespaced_config_map(f"c{i:02d}", ns)
        assert info.value.status == 404
    # revisions continue upwards
    assert int(core.list_namespaced_config_map(ns).metadata.resource_version) >= list_rv
    updated = core.patch_namespaced_config_map("c00", ns, {"data": {"v": "3"}})
    assert int(updated.metadata.resource_version) > list_rv
    created = core.create_namespaced_config_map(ns, cm("new"))
    assert int(created.metadata.resource_version) > int(updated.metadata.resource_version)
    # the system namespaces and the kubernetes service are not created twice
    names = [n.metadata.name for n in core.list_namespace().items]
    assert len(names) == len(set(names))
    assert names.count("default") == 1
    # the kubectl view is the same
    out = json.loads(srv.kubectl("-n", ns, "get", "configmap", "c03", "-o", "json").stdout)
    assert out["metadata"]["resourceVersion"] == before["c03"][1]


def test_custom_resources_survive_kill(fresh_server: Server) -> None:
    srv = fresh_server
    api = srv.client()
    ns = unique("crd")
    create_namespace(k8s.CoreV1Api(api), ns)
    ext = k8s.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(CRD)

    def crd_established() -> bool:
        got = ext.read_custom_resource_definition(CRD["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in got.status.conditions or []
        )

    wait_for(crd_established, message="the CRD to be Established")
    gadget = k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "restart.example.com",
        "v1",
        ns,
        "gadgets",
        {
            "apiVersion": "restart.example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"anything": [1, 2, 3]},
        },
    )
    srv.kill()
    srv.start()
    co = k8s.CustomObjectsApi(srv.client())
    # served again as soon as the server is ready (readyz waits for the CRDs, as Kubernetes)
    g = co.get_namespaced_custom_object("restart.example.com", "v1", ns, "gadgets", "g1")
    assert g["metadata"]["resourceVersion"] == gadget["metadata"]["resourceVersion"]
    assert g["metadata"]["uid"] == gadget["metadata"]["uid"]
    assert g["spec"] == {"anything": [1, 2, 3]}
    out = json.loads(srv.kubectl("-n", ns, "get", "gadgets", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in out["items"]] == ["g1"]


def test_watch_resumes_after_kill(fresh_server: Server) -> None:
    srv = fresh_server
    core = k8s.CoreV1Api(srv.client())
    ns = unique("resume")
    create_namespace(core, ns)
    start_rv = core.list_namespaced_config_map(ns).metadata.resource_version
    # a raw watch stream, open while the server is killed
    session = srv.http()
    stream = session.get(
        f"{srv.url}/api/v1/namespaces/{ns}/configmaps",
        params={"watch": "true", "resourceVersion": start_rv},
        stream=True,
        timeout=60,
    )
    assert stream.status_code == 200
    lines = stream.iter_lines()
    core.create_namespaced_config_map(ns, cm("a1"))
    core.create_namespaced_config_map(ns, cm("a2"))
    seen: list[tuple[str, str]] = []
    last_rv = 0

    def record(line: bytes) -> str:
        nonlocal last_rv
        ev = json.loads(line)
        meta = ev["object"]["metadata"]
        seen.append((ev["type"], meta["name"]))
        assert int(meta["resourceVersion"]) > last_rv
        last_rv = int(meta["resourceVersion"])
        return str(meta["name"])

    for line in lines:
        if record(line) == "a2":
            break
    assert seen == [("ADDED", "a1"), ("ADDED", "a2")]
    # acknowledged before the crash; the watcher may or may not get it before the kill
    core.create_namespaced_config_map(ns, cm("b1"))
    srv.kill()
    try:
        for line in lines:  # whatever was sent before the kill, then the stream breaks
            record(line)
    except requests.exceptions.RequestException:
        pass
    stream.close()
    assert seen in (
        [("ADDED", "a1"), ("ADDED", "a2")],
        [("ADDED", "a1"), ("ADDED", "a2"), ("ADDED", "b1")],
    )

    srv.start()
    core = k8s.CoreV1Api(srv.client())
    core.patch_namespaced_config_map("a1", ns, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("a2", ns)
    core.create_namespaced_config_map(ns, cm("c1"))

    w = watch.Watch()
    resumed: list[tuple[str, str, int]] = []
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=str(last_rv),
        timeout_seconds=2,  # the server ends the stream; everything after is unexpected
    ):
        o = event["object"]
        resumed.append((event["type"], o.metadata.name, int(o.metadata.resource_version)))
    # nothing missed, nothing repeated
    assert seen + [(t, n) for t, n, _ in resumed] == [
        ("ADDED", "a1"),
        ("ADDED", "a2"),
        ("ADDED", "b1"),
        ("MODIFIED", "a1"),
        ("DELETED", "a2"),
        ("ADDED", "c1"),
    ]
    rvs = [rv for _, _, rv in resumed]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    assert rvs[0] > last_rv


def test_watch_from_before_restart_replays_history(fresh_server: Server) -> None:
    """A watch from a resourceVersion older than the restart sees every change since then,
    in revision order, from the store's log (not only from the in-memory cache)."""
    srv = fresh_server
    core = k8s.CoreV1Api(srv.client())
    ns = unique("hist")
    create_namespace(core, ns)
    rv0 = core.list_namespaced_config_map(ns).metadata.resource_version
    for i in range(5):
        core.create_namespaced_config_map(ns, cm(f"h{i}"))
    core.patch_namespaced_config_map("h1", ns, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("h3", ns)
    srv.restart()
    core = k8s.CoreV1Api(srv.client())
    w = watch.Watch()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in w.stream(
            core.list_namespaced_config_map, ns, resource_version=rv0, timeout_seconds=2
        )
    ]
    assert events == [
        ("ADDED", "h0"),
        ("ADDED", "h1"),
        ("ADDED", "h2"),
        ("ADDED", "h3"),
        ("ADDED", "h4"),
        ("MODIFIED", "h1"),
        ("DELETED", "h3"),
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_within_5s(fresh_server: Server, sig: signal.Signals) -> None:
    """The CLI contract: SIGTERM and SIGINT stop the server cleanly within 5 s, also with
    open watch connections (kubectl -w, a raw stream) and a write just acknowledged."""
    srv = fresh_server
    core = k8s.CoreV1Api(srv.client())
    core.create_namespaced_config_map("default", cm(unique("last")))
    kubectl = srv.kubectl_popen("get", "configmaps", "-A", "-w", "-o", "name")
    try:
        stream = srv.http().get(
            f"{srv.url}/api/v1/namespaces/default/configmaps",
            params={"watch": "true"},
            stream=True,
            timeout=60,
        )
        assert stream.status_code == 200
        assert next(stream.iter_lines())  # the watch is established
        printed = StreamReader(kubectl)
        wait_for(lambda: printed.text.startswith("configmap/"), message="kubectl -w output")
        assert srv.proc is not None
        srv.proc.send_signal(sig)
        rc = srv.proc.wait(STOP_TIMEOUT)  # raises TimeoutExpired after 5 s: a failure
        assert rc == 0, srv.log_tail()
        stream.close()
    finally:
        kubectl.terminate()
        kubectl.wait(10)
    srv.start()  # and the data dir is fine afterwards
    assert srv.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
