"""`/metrics` of a real `kybern server`, read as kube-apiserver's is read: `kubectl get --raw
/metrics` shows `apiserver_request_total` for a pod create (POST, scope `resource` as kube
reports creates, code 201) and a list (LIST, scope `namespace`), the `kubernetes` client's
requests are counted, a watch shows in `apiserver_longrunning_requests` while it is open, an
unauthenticated request gets kube's 401 Status, and the format follows Accept."""

from __future__ import annotations

import threading
from typing import Any

import requests
from conftest import Server, unique, wait_for
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
}


def samples(text: str, name: str) -> list[tuple[Labels, float]]:
    """The samples called `name` in a text exposition."""
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    return sum(v for got, v in samples(text, name) if labels.items() <= got.items())


def scrape(server: Server) -> str:
    return server.kubectl("get", "--raw", "/metrics").stdout


def test_kubectl_sees_a_pod_create_and_a_list(server: Server, ns: str) -> None:
    pod = unique("pod")
    server.kubectl("-n", ns, "run", pod, "--image=busybox:1", "--restart=Never")
    server.kubectl("-n", ns, "get", "pods")
    text = scrape(server)
    created = {
        "code": "201",
        "component": "apiserver",
        "dry_run": "",
        "group": "",
        "resource": "pods",
        "scope": "resource",  # kube's scope of a create (installer.go: POST -> resource)
        "subresource": "",
        "verb": "POST",
        "version": "v1",
    }
    assert value(text, "apiserver_request_total", **created) >= 1
    listed = {**created, "code": "200", "scope": "namespace", "verb": "LIST"}
    assert value(text, "apiserver_request_total", **listed) >= 1
    durations = {k: v for k, v in listed.items() if k != "code"}
    assert value(text, "apiserver_request_duration_seconds_count", **durations) >= 1
    assert value(text, "apiserver_request_duration_seconds_bucket", le="+Inf", **durations) >= 1
    assert value(text, "apiserver_storage_objects", resource="pods") >= 1
    assert value(text, "process_resident_memory_bytes") > 0
    assert value(text, "apiserver_current_inflight_requests", request_kind="readOnly") >= 1


def test_python_client_requests_are_counted(server: Server, api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    get = {"resource": "configmaps", "verb": "GET", "scope": "resource", "code": "200"}
    missing = {**get, "code": "404"}
    before = scrape(server)
    name = unique("cm")
    core.create_namespaced_config_map(ns, {"metadata": {"name": name}, "data": {"a": "b"}})
    for _ in range(3):
        core.read_namespaced_config_map(name, ns)
    try:
        core.read_namespaced_config_map(unique("absent"), ns)
    except k8s.ApiException as e:
        assert e.status == 404
    after = scrape(server)
    for labels, delta in ((get, 3), (missing, 1)):
        grown = value(after, "apiserver_request_total", **labels)
        assert grown - value(before, "apiserver_request_total", **labels) == delta, labels


def test_an_open_watch_is_long_running(server: Server, ns: str) -> None:
    s = server.http()
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=30"
    watch = {"resource": "configmaps", "verb": "WATCH", "scope": "namespace"}
    opened = threading.Event()
    resp: list[requests.Response] = []

    def run() -> None:
        r = s.get(url, stream=True, timeout=30)
        resp.append(r)
        opened.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert opened.wait(30), "the watch did not start"
    try:
        wait_for(
            lambda: value(scrape(server), "apiserver_longrunning_requests", **watch) >= 1,
            message="the watch in apiserver_longrunning_requests",
        )
    finally:
        resp[0].close()
    wait_for(
        lambda: value(scrape(server), "apiserver_longrunning_requests", **watch) == 0,
        message="the closed watch gone from apiserver_longrunning_requests",
    )


def test_unauthenticated_is_refused_as_kube_refuses(server: Server) -> None:
    r = server.http(authenticated=False).get(f"{server.url}/metrics")
    assert r.status_code == 401
    body: Any = r.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)


def test_format_follows_accept(server: Server) -> None:
    s = server.http()
    plain = s.get(f"{server.url}/metrics")
    assert plain.status_code == 200
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE apiserver_request_total counter" in plain.text
    om = s.get(
        f"{server.url}/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    assert plain.headers.get("Content-Encoding") == "gzip"  # requests asks for gzip
