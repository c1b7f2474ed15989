"""API aggregation end to end: a real `kybern server`, and an extension API server built on
kybern.ext (test_aggregation_support) registered by Service, Endpoints and APIService. Users'
requests reach it with their identity in X-Remote-User/X-Remote-Group (spoofed headers
dropped); requests that bypass the aggregator are refused by the SDK; discovery, tables,
selectors, watches and WebSocket upgrades pass through; unresolvable services and a stopped
backend make the APIService unavailable (503 for its group only) until the backend is back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests
import websocket
from conftest import Server, StreamReader, wait_for
from test_aggregation_support import (
    GROUP,
    NAMESPACE,
    VERSION,
    Backend,
    auth_data,
    condition,
    greeting,
)

from kybern.apiserver import certs

APISERVICE = f"{VERSION}.{GROUP}"
BASE = f"/apis/{GROUP}/{VERSION}"


@pytest.fixture(scope="module")
def backend(server: Server) -> Iterator[Backend]:
    b = Backend(auth_data(server))
    try:
        b.start()
        b.register(server)
        wait_for(
            lambda: condition(server, APISERVICE).get("status") == "True",
            60,
            message=f"{APISERVICE} to become available",
        )
        yield b
    finally:
        b.close()


def user_session(server: Server, name: str, groups: list[str]) -> requests.Session:
    """HTTPS to the API server as `name` in `groups` (a client certificate from its CA)."""
    cert, key = certs.issue_client_cert(certs.Pki(server.data_dir / "pki"), name, groups)
    cert_file, key_file = server.base_dir / f"{name}.crt", server.base_dir / f"{name}.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    s = server.http(authenticated=False)
    s.cert = (str(cert_file), str(key_file))
    return s


def test_local_apiservices(server: Server) -> None:
    apps = server.kubectl_json("get", "apiservice", "v1.apps")
    assert "service" not in apps["spec"]
    assert apps["spec"]["groupPriorityMinimum"] == 17800
    assert apps["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "onstart"
    wait_for(lambda: condition(server, "v1.apps").get("reason") == "Local", message="Local")
    names = server.kubectl("get", "apiservices", "-o", "name").stdout.split()
    assert "apiservice.apiregistration.k8s.io/v1." in names


def test_authentication_configmap(server: Server) -> None:
    data = auth_data(server)
    pki = certs.Pki(server.data_dir / "pki")
    assert data["client-ca-file"] == pki.ca_cert.read_text()
    assert data["requestheader-client-ca-file"] == pki.front_proxy_ca_cert.read_text()
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]


def test_user_identity_reaches_backend(server: Server, backend: Backend) -> None:
    alice = user_session(server, "alice", ["devs", "qa"])
    r = alice.get(
        f"{server.url}{BASE}/whoamis",
        headers={"X-Remote-User": "mallory", "X-Remote-Group": "system:masters"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    spec = r.json()["items"][0]["spec"]
    assert spec["user"] == "alice"
    assert spec["remoteUser"] == ["alice"]
    assert spec["remoteGroups"] == ["devs", "qa", "system:authenticated"]
    assert spec["groups"] == ["devs", "qa", "system:authenticated"]
    assert spec["authorization"] == ""
    admin = json.loads(server.kubectl("get", "--raw", f"{BASE}/whoamis/kybern-admin").stdout)
    assert admin["spec"]["remoteGroups"] == ["system:masters", "system:authenticated"]


def test_requests_bypassing_the_aggregator_are_refused(server: Server, backend: Backend) -> None:
    ca = server.base_dir / "backend-ca.crt"
    ca.write_bytes(backend.cert.ca_pem)
    url = f"https://127.0.0.1:{backend.port}{BASE}/whoamis"
    spoofed = {"X-Remote-User": "kybern-admin", "X-Remote-Group": "system:masters"}
    seen = len(backend.seen)
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(url, headers=spoofed, verify=str(ca), timeout=30)
        assert r.status_code == 401
        assert r.json()["reason"] == "Unauthorized"
        # the cluster's admin certificate is a valid client certificate, but not the proxy's
        r = s.get(url, headers=spoofed, verify=str(ca), cert=server.client_cert, timeout=30)
        assert r.status_code == 401
        assert "must come through" in r.json()["message"]
        assert s.get(f"https://127.0.0.1:{backend.port}/healthz", verify=str(ca)).text == "ok"
    assert len(backend.seen) == seen  # no handler ran


def test_discovery_lists_the_backend(server: Server, backend: Backend) -> None:
    names = server.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name").stdout.split()
    assert names == [f"greetings.{GROUP}", f"whoamis.{GROUP}"]
    wide = server.kubectl("api-resources", f"--api-group={GROUP}", "--no-headers").stdout
    assert wide.split("\n")[0].split() == [
        "greetings",
        "gr",
        f"{GROUP}/{VERSION}",
        "true",
        "Greeting",
    ]
    assert f"{GROUP}/{VERSION}" in server.kubectl("api-versions").stdout.split()
    groups = [
        g["name"] for g in json.loads(server.kubectl("get", "--raw", "/apis").stdout)["groups"]
    ]
    assert groups[-1] == GROUP  # groupPriorityMinimum 100: after the built-ins
    group = json.loads(server.kubectl("get", "--raw", f"/apis/{GROUP}").stdout)
    assert group["preferredVersion"]["groupVersion"] == f"{GROUP}/{VERSION}"


def test_get_list_selectors_and_tables(server: Server, backend: Backend, ns: str) -> None:
    backend.put(greeting("a", ns, lang="en"))
    backend.put(greeting("b", ns, lang="de"))
    out = server.kubectl("get", "greetings", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "TEXT", "AGE"]
    assert [line.split()[:3] for line in out[1:]] == [["a", "hello", "a"], ["b", "hello", "b"]]
    only = server.kubectl("get", "gr", "-n", ns, "-l", "lang=de", "-o", "name").stdout.split()
    assert only == [f"greeting.{GROUP}/b"]
    a = server.kubectl_json("get", "greeting", "a", "-n", ns)
    assert a["spec"]["text"] == "hello a" and a["metadata"]["labels"] == {"lang": "en"}
    missing = server.kubectl("get", "greeting", "nope", "-n", ns, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    everywhere = server.kubectl("get", "greetings", "-A", "--no-headers").stdout
    assert ns in everywhere


def test_watch_through_the_aggregator(server: Server, backend: Backend, ns: str) -> None:
    proc = server.kubectl_popen("get", "greetings", "-n", ns, "--watch", "-o", "json")
    reader = StreamReader(proc)
    try:
        for name in ("w1", "w2", "w3"):
            backend.put(greeting(name, ns))
            wait_for(
                lambda name=name: any(
                    v.get("metadata", {}).get("name") == name for v in reader.json_values()
                ),
                message=f"watch event for {name}",
            )
        assert proc.poll() is None, "the watch ended"
    finally:
        proc.terminate()
        proc.wait(10)


def test_upgrade_through_the_aggregator(server: Server, backend: Backend) -> None:
    url = server.url.replace("https://", "wss://") + f"{BASE}/namespaces/default/greetings/x/echo"
    cert, key = server.client_cert
    ws = websocket.create_connection(
        url,
        sslopt={"ca_certs": server.ca_file, "certfile": cert, "keyfile": key},
        timeout=30,
    )
    try:
        ws.send("hi")
        assert ws.recv() == "kybern-admin: hi"
        ws.send("again")
        assert ws.recv() == "kybern-admin: again"
    finally:
        ws.close()


def test_unresolvable_services(server: Server) -> None:
    group = f"nowhere-{uuid.uuid4().hex[:6]}.test"
    name, svc = f"v1.{group}", f"nowhere-{uuid.uuid4().hex[:6]}"
    spec = {
        "group": group,
        "version": "v1",
        "groupPriorityMinimum": 100,
        "versionPriority": 100,
        "insecureSkipTLSVerify": True,
        "service": {"namespace": NAMESPACE, "name": svc, "port": 443},
    }
    obj = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name},
        "spec": spec,
    }
    server.kubectl("create", "-f", "-", input=json.dumps(obj))
    try:

        def reason() -> str:
            c = condition(server, name)
            return str(c.get("reason", "")) if c.get("status") == "False" else ""

        assert wait_for(lambda: reason() == "ServiceNotFound", message="ServiceNotFound")
        r = server.http().get(f"{server.url}/apis/{group}/v1", timeout=30)
        assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable"
        meta = {"name": svc, "namespace": NAMESPACE}
        ports = [{"name": "https", "port": 443, "targetPort": 1}]
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": ports},
        }
        server.kubectl("create", "-f", "-", input=json.dumps(service))
        wait_for(lambda: reason() == "EndpointsNotFound", message="EndpointsNotFound")
        subset = {
            "notReadyAddresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": 1}],
        }
        eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": [subset]}
        server.kubectl("create", "-f", "-", input=json.dumps(eps))
        wait_for(lambda: reason() == "MissingEndpoints", message="MissingEndpoints")
        groups = json.loads(server.kubectl("get", "--raw", "/apis").stdout)["groups"]
        assert group in [g["name"] for g in groups]
    finally:
        server.kubectl("delete", "apiservice", name, check=False)
        server.kubectl("delete", "-n", NAMESPACE, "service,endpoints", svc, check=False)

    def gone() -> bool:
        groups = json.loads(server.kubectl("get", "--raw", "/apis").stdout)["groups"]
        return group not in [g["name"] for g in groups]

    wait_for(gone, message=f"{group} to leave discovery")
    assert server.http().get(f"{server.url}/apis/{group}/v1", timeout=30).status_code == 404


def test_backend_down_then_up(server: Server, backend: Backend) -> None:
    """Last in the module: the backend stops (its group turns 503, nothing else does) and
    comes back on the same port."""
    http = server.http()
    backend.stop()
    try:
        wait_for(
            lambda: condition(server, APISERVICE).get("status") == "False",
            60,
            message="Available=False",
        )
        assert condition(server, APISERVICE)["reason"] == "FailedDiscoveryCheck"
        r = http.get(f"{server.url}{BASE}/whoamis", timeout=30)
        assert r.status_code == 503
        assert r.json()["kind"] == "Status" and r.json()["reason"] == "ServiceUnavailable"
        assert server.kubectl("get", "namespaces", "-o", "name").stdout.count("namespace/") >= 4
        assert http.get(f"{server.url}/apis/apps/v1/deployments", timeout=30).status_code == 200
        listed = server.kubectl("api-resources", "-o", "name").stdout.split()
        assert "deployments.apps" in listed  # aggregated discovery marks the group Stale:
        assert f"greetings.{GROUP}" not in listed  # kubectl leaves it out
    finally:
        backend.start()
    wait_for(
        lambda: condition(server, APISERVICE).get("status") == "True",
        60,
        message="Available=True again",
    )
    assert http.get(f"{server.url}{BASE}/whoamis", timeout=30).status_code == 200
