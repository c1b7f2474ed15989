# ruff: noqa: E501
"""What the API server sends on the wire, byte for byte up to the values that differ per run
(dates, uids, timestamps, resource versions): status lines, header names, order and values,
and bodies of creates, gets, lists, watches, patches, bindings, events, errors, Tables and
protobuf, over one keep-alive TLS connection as real clients use it. The expected answers
were recorded from the server before its HTTP path was made cheaper, so any change in what a
client sees fails here."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
from typing import Any

import orjson
import pytest
from aiohttp import http as aiohttp_http
from conftest import Server, running_server

from kybern.api import protobuf

NS = "wire"
_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "labels": {"app": "wire"}},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ]
    },
}
_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
_PB = "application/vnd.kubernetes.protobuf,application/json"
_PB_ONLY = "application/vnd.kubernetes.protobuf"
_AGG = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
_BIG = 2000  # bodies longer than this are compared by digest


class Conn:
    """One HTTP/1.1 keep-alive connection over TLS, read by hand so that every byte counts."""

    def __init__(self, srv: Server, authenticated: bool = True) -> None:
        ctx = ssl.create_default_context(cafile=srv.ca_file)
        if authenticated:
            ctx.load_cert_chain(*srv.client_cert)
        host, port = srv.url.removeprefix("https://").rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=30)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.host = f"{host}:{port}"
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _head(self) -> tuple[str, list[tuple[str, str]]]:
        status = self._line().decode()
        headers: list[tuple[str, str]] = []
        while line := self._line():
            k, _, v = line.decode().partition(":")
            headers.append((k, v.strip()))
        return status, headers

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        length: int | None = None,
    ) -> dict[str, Any]:
        """One request and its answer (`length`: the Content-Length to claim, when it is not
        the body's)."""
        hs = {"Host": self.host, "User-Agent": "wire-test/1.0", **(headers or {})}
        if body is not None:
            hs["Content-Length"] = str(len(body) if length is None else length)
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        status, rh = self._head()
        interim = []
        while status.split()[1] == "100":
            interim.append(status)
            status, rh = self._head()
        names = {k.lower(): v for k, v in rh}
        chunks: list[bytes] = []
        if names.get("transfer-encoding") == "chunked":
            while size := int(self._line(), 16):
                chunks.append(self._take(size))
                self._line()
            self._line()
            data = b"".join(chunks)
        elif method == "HEAD":
            data = b""
        else:
            data = self._take(int(names.get("content-length", "0")))
            assert int(names.get("content-length", "0")) == len(data)
        return {"interim": interim, "status": status, "headers": rh, "body": data}


_VOLATILE = [
    (re.compile(rb'"uid":"[0-9a-f-]{36}"'), b'"uid":"<uid>"'),
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), b"<time>"),
    (re.compile(rb'"resourceVersion":"\d+"'), b'"resourceVersion":"<rv>"'),
    (re.compile(rb'"continue":"[^"]*"'), b'"continue":"<token>"'),
    (re.compile(rb"resourceVersion: \d+"), b"resourceVersion: <rv>"),
    (re.compile(rb'"ETag": "[^"]*"'), b'"ETag": "<etag>"'),
    # a table row's Age cell ("0s" or "1s" as the second turns between create and get)
    (re.compile(rb'(?<=,)"\d+[smhd]"(?=[,\]])'), b'"<age>"'),
]


def _scrub(data: bytes) -> bytes:
    for pattern, repl in _VOLATILE:
        data = pattern.sub(repl, data)
    return data


def _body(ctype: str, data: bytes) -> Any:
    if ctype.startswith(protobuf.MEDIA_TYPE) and "stream=watch" in ctype:
        return [
            [t, _scrub(orjson.dumps(o)).decode()] for t, o in protobuf.decode_watch_frames(data)
        ]
    if ctype.startswith(protobuf.MEDIA_TYPE):
        return ["protobuf", _scrub(orjson.dumps(protobuf.decode_object(data))).decode()]
    out = _scrub(data)
    if len(out) > _BIG:
        return ["sha256", hashlib.sha256(out).hexdigest(), len(out)]
    return out.decode("utf-8", "replace")


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    headers = []
    ctype = ""
    for k, v in r["headers"]:
        lk = k.lower()
        if lk == "date":
            v = "<date>"
        elif lk == "server":
            assert v == aiohttp_http.SERVER_SOFTWARE
            v = "<server>"
        elif lk == "content-length":
            v = "<length>"
        elif lk == "etag":
            v = "<etag>"
        elif lk == "content-type":
            ctype = v
        headers.append([k, v])
    return {
        "interim": r["interim"],
        "status": r["status"],
        "headers": headers,
        "body": _body(ctype, r["body"]),
    }


def _j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def capture(srv: Server) -> list[tuple[str, dict[str, Any]]]:
    """Send the fixed sequence of requests; the scrubbed answers, labelled."""
    out: list[tuple[str, dict[str, Any]]] = []
    c = Conn(srv)
    anon = Conn(srv, authenticated=False)
    pods = f"/api/v1/namespaces/{NS}/pods"
    json_h = {"Content-Type": "application/json", "Accept": "application/json"}

    def rec(label: str, conn: Conn, *args: Any, **kw: Any) -> dict[str, Any]:
        r = conn.send(*args, **kw)
        out.append((label, _summary(r)))
        return r

    try:
        rec("healthz", anon, "GET", "/healthz")
        rec("livez", anon, "GET", "/livez")
        rec("readyz", anon, "GET", "/readyz")
        rec("readyz verbose", anon, "GET", "/readyz?verbose")
        rec("version", anon, "GET", "/version")
        rec("version/", anon, "GET", "/version/")
        rec("head healthz", anon, "HEAD", "/healthz")
        rec("post healthz", anon, "POST", "/healthz", json_h, b"{}")
        rec("unauthenticated", anon, "GET", "/api/v1/namespaces")
        rec("not found root", c, "GET", "/foo")
        rec("slash", c, "GET", "/")
        rec("api", c, "GET", "/api")
        rec("apis", c, "GET", "/apis", {"Accept": "application/json"})
        rec("api/v1", c, "GET", "/api/v1")
        rec("apis/apps/v1", c, "GET", "/apis/apps/v1")
        rec("aggregated api", c, "GET", "/api", {"Accept": _AGG})
        rec("aggregated apis", c, "GET", "/apis", {"Accept": _AGG})
        rec("post api", c, "POST", "/api", json_h, b"{}")
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        rec("create namespace", c, "POST", "/api/v1/namespaces", json_h, _j(ns))
        before = orjson.loads(c.send("GET", pods)["body"])["metadata"]["resourceVersion"]
        rec("create pod", c, "POST", pods, json_h, _j(_POD))
        p2 = {**_POD, "metadata": {"name": "p2"}, "bogus": 1}
        rec("create pod warning", c, "POST", pods, json_h, _j(p2))
        p3 = {**_POD, "metadata": {"name": "p3"}, "bogus": 1}
        rec("create pod strict", c, "POST", pods + "?fieldValidation=Strict", json_h, _j(p3))
        rec("create pod bad fieldValidation", c, "POST", pods + "?fieldValidation=X", json_h, b"{}")
        p4 = {**_POD, "metadata": {"name": "p4"}}
        rec("create pod dry run", c, "POST", pods + "?dryRun=All", json_h, _j(p4))
        rec("create pod bad dry run", c, "POST", pods + "?dryRun=Some", json_h, _j(p4))
        rec("create pod exists", c, "POST", pods, json_h, _j(_POD))
        bad = {**_POD, "metadata": {"name": "Not_Valid"}}
        rec("create pod invalid", c, "POST", pods, json_h, _j(bad))
        rec("create pod broken json", c, "POST", pods, json_h, b'{"kind": ')
        rec("create pod array", c, "POST", pods, json_h, b"[]")
        rec("create pod empty", c, "POST", pods, json_h, b"")
        rec("create pod text/plain", c, "POST", pods, {"Content-Type": "text/plain"}, b"x")
        rec("create pod wrong kind", c, "POST", pods, json_h, _j({**_POD, "kind": "Service"}))
        other = {**_POD, "metadata": {"name": "p5", "namespace": "default"}}
        rec("create pod other namespace", c, "POST", pods, json_h, _j(other))
        p6 = {**_POD, "metadata": {"name": "p6"}}
        pb = protobuf.encode_object(p6)
        rec("create pod protobuf", c, "POST", pods, {"Content-Type": _PB_ONLY, "Accept": _PB}, pb)
        p7 = {**_POD, "metadata": {"name": "p7"}}
        yml = orjson.dumps(p7)  # JSON is YAML
        rec("create pod yaml", c, "POST", pods, {"Content-Type": "application/yaml"}, yml)
        p8 = {**_POD, "metadata": {"name": "p8"}}
        expect_h = {**json_h, "Expect": "100-continue"}
        rec("create pod expect", c, "POST", pods, expect_h, _j(p8))
        rec("get pod", c, "GET", pods + "/p1", {"Accept": "application/json"})
        rec("get pod no accept", c, "GET", pods + "/p1")
        rec("get pod protobuf", c, "GET", pods + "/p1", {"Accept": _PB})
        rec("get pod protobuf only", c, "GET", pods + "/p1", {"Accept": _PB_ONLY})
        rec("get pod table", c, "GET", pods + "/p1", {"Accept": _TABLE})
        rec("get pod yaml accept", c, "GET", pods + "/p1", {"Accept": "application/yaml"})
        rec("get pod missing", c, "GET", pods + "/nope")
        rec("get bogus resource", c, "GET", f"/api/v1/namespaces/{NS}/bogus")
        rec("get bogus subresource", c, "GET", pods + "/p1/bogus")
        rec("get too deep", c, "GET", pods + "/p1/status/x")
        rec("get pod status", c, "GET", pods + "/p1/status")
        rec("list pods", c, "GET", pods)
        rec("list pods limit", c, "GET", pods + "?limit=1")
        rec("list pods label", c, "GET", pods + "?labelSelector=app%3Dwire")
        rec("list pods field", c, "GET", pods + "?fieldSelector=spec.nodeName%3D")
        rec("list pods bad field", c, "GET", pods + "?fieldSelector=spec.bogus%3Dx")
        rec("list pods protobuf", c, "GET", pods, {"Accept": _PB})
        rec("list pods table", c, "GET", pods, {"Accept": _TABLE})
        rec("list all pods", c, "GET", "/api/v1/pods?labelSelector=app%3Dwire")
        rec("put collection", c, "PUT", pods, json_h, b"{}")
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p1", "namespace": NS},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
        }
        rec("bind", c, "POST", pods + "/p1/binding", json_h, _j(binding))
        rec("bind again", c, "POST", pods + "/p1/binding", json_h, _j(binding))
        rec("bind no target", c, "POST", pods + "/p2/binding", json_h, _j({"kind": "Binding"}))
        rec("get binding", c, "GET", pods + "/p1/binding")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "p1.17a", "namespace": NS},
            "involvedObject": {"kind": "Pod", "namespace": NS, "name": "p1", "apiVersion": "v1"},
            "reason": "Scheduled",
            "message": f"Successfully assigned {NS}/p1 to n1",
            "type": "Normal",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "firstTimestamp": "2024-01-01T00:00:00Z",
            "lastTimestamp": "2024-01-01T00:00:00Z",
            "count": 1,
        }
        rec("create event", c, "POST", f"/api/v1/namespaces/{NS}/events", json_h, _j(event))
        ev2 = {**event, "metadata": {"name": "p1.17b"}, "apiVersion": "events.k8s.io/v1"}
        ev2.pop("involvedObject")
        rec(
            "create event wrong group",
            c,
            "POST",
            f"/api/v1/namespaces/{NS}/events",
            json_h,
            _j(ev2),
        )
        merge = {"Content-Type": "application/merge-patch+json"}
        status = {
            "metadata": {"uid": "00000000-0000-0000-0000-000000000000"},
            "status": {"phase": "Running"},
        }
        rec("status patch uid mismatch", c, "PATCH", pods + "/p1/status", merge, _j(status))
        status = {
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}],
                "hostIP": "10.1.0.1",
                "startTime": "2024-01-01T00:00:00Z",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": "2024-01-01T00:00:00Z",
                    }
                ],
            }
        }
        rec("status patch", c, "PATCH", pods + "/p1/status", merge, _j(status))
        rec(
            "status patch protobuf",
            c,
            "PATCH",
            pods + "/p1/status",
            {**merge, "Accept": _PB},
            _j(status),
        )
        smp = {"Content-Type": "application/strategic-merge-patch+json"}
        labels = {"metadata": {"labels": {"extra": "yes"}}}
        rec("strategic patch", c, "PATCH", pods + "/p1?fieldManager=wirer", smp, _j(labels))
        jp = {"Content-Type": "application/json-patch+json"}
        ops = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
        rec("json patch", c, "PATCH", pods + "/p1", jp, _j(ops))
        rec("json patch object", c, "PATCH", pods + "/p1", jp, _j({"a": 1}))
        rec("patch bad type", c, "PATCH", pods + "/p1", json_h, _j(labels))
        rec("patch missing", c, "PATCH", pods + "/nope", merge, _j(labels))
        current = orjson.loads(c.send("GET", pods + "/p1")["body"])
        current["metadata"]["labels"]["put"] = "yes"
        rec("put pod", c, "PUT", pods + "/p1", json_h, _j(current))
        rec("put pod conflict", c, "PUT", pods + "/p1", json_h, _j(current))
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm"},
            "data": {"a": "1"},
        }
        apply_h = {"Content-Type": "application/apply-patch+yaml"}
        cms = f"/api/v1/namespaces/{NS}/configmaps"
        rec("apply create", c, "PATCH", cms + "/cm?fieldManager=wire", apply_h, _j(cm))
        cm["data"] = {"a": "2"}
        rec("apply update", c, "PATCH", cms + "/cm?fieldManager=wire", apply_h, _j(cm))
        rec("apply conflict", c, "PATCH", cms + "/cm?fieldManager=other", apply_h, _j(cm))
        rec("apply no manager", c, "PATCH", cms + "/cm", apply_h, _j(cm))
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "n1"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40},
        }
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
        rec("create lease", c, "POST", leases, json_h, _j(lease))
        renew = {"spec": {"holderIdentity": "n1", "renewTime": "2024-01-01T00:00:10.000000Z"}}
        rec("renew lease", c, "PATCH", leases + "/n1", merge, _j(renew))
        rec("get lease protobuf", c, "GET", leases + "/n1", {"Accept": _PB})
        rec("watch pods", c, "GET", f"{pods}?watch=1&resourceVersion={before}&timeoutSeconds=1")
        rec(
            "watch pods protobuf",
            c,
            "GET",
            f"{pods}?watch=true&resourceVersion={before}&timeoutSeconds=1",
            {"Accept": _PB},
        )
        rec(
            "watch pod by name",
            c,
            "GET",
            f"/api/v1/watch/namespaces/{NS}/pods/p2?resourceVersion={before}&timeoutSeconds=1",
        )
        rec("watch post", c, "POST", f"/api/v1/watch/namespaces/{NS}/pods", json_h, b"{}")
        rec("get scale", c, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/none/scale")
        rec("eviction missing", c, "POST", pods + "/nope/eviction", json_h, b"{}")
        rec(
            "token review",
            c,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json_h,
            _j(
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": "x"},
                }
            ),
        )
        rec("delete pod", c, "DELETE", pods + "/p2")
        rec("delete pod again", c, "DELETE", pods + "/p2")
        rec("delete configmap", c, "DELETE", cms + "/cm", json_h, _j({"gracePeriodSeconds": 0}))
        rec("delete bad propagation", c, "DELETE", cms + "/x?propagationPolicy=Nope")
        rec("delete collection", c, "DELETE", leases)
        rec("too large", c, "POST", pods, json_h, b"{", length=3 * 1024 * 1024 + 10)
        for label, method, path, headers in [  # odd requests, each on a connection of its own
            ("asterisk", "OPTIONS", "*", {}),
            ("double slashes", "GET", "//api//v1//namespaces", {}),
            ("encoded slash", "GET", "/version%2F", {}),
            ("encoded newline", "GET", "/api/v1/namespaces/a%0Ab", {}),
            ("head api", "HEAD", pods + "/p1", {}),
            ("unknown expect", "POST", pods, {**json_h, "Expect": "bogus"}),
        ]:
            odd = Conn(srv)
            try:
                rec(label, odd, method, path, headers, b"{}" if method == "POST" else None)
            finally:
                odd.close()
        for label, method, path in [
            ("anonymous asterisk", "OPTIONS", "*"),
            ("anonymous encoded slash", "GET", "/version%2F"),
            ("anonymous expect", "POST", "/api/v1/namespaces"),
        ]:
            odd = Conn(srv, authenticated=False)
            try:
                headers = {"Expect": "100-continue"} if method == "POST" else {}
                rec(label, odd, method, path, headers, b"{}" if method == "POST" else None)
            finally:
                odd.close()
    finally:
        c.close()
        anon.close()
    return out


@pytest.fixture(scope="module")
def wire_server() -> Any:
    with running_server() as srv:
        yield srv


def test_wire_answers_unchanged(wire_server: Server) -> None:
    got = capture(wire_server)
    assert [label for label, _ in got] == [label for label, _ in EXPECTED]
    for (label, answer), (_, expected) in zip(got, EXPECTED, strict=True):
        assert answer == expected, label


# recorded from the server before its HTTP path was made cheaper
EXPECTED: list[tuple[str, dict[str, Any]]] = [
    (
        "healthz",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "ok",
        },
    ),
    (
        "livez",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "ok",
        },
    ),
    (
        "readyz",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "ok",
        },
    ),
    (
        "readyz verbose",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\nreadyz check passed\n",
        },
    ),
    (
        "version",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"major":"1","minor":"32","gitVersion":"v1.32.0+kybern-0.1.0","gitCommit":"","gitTreeState":"clean","buildDate":"","goVersion":"python3.11.7","compiler":"cpython","platform":"linux/amd64"}',
        },
    ),
    (
        "version/",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"major":"1","minor":"32","gitVersion":"v1.32.0+kybern-0.1.0","gitCommit":"","gitTreeState":"clean","buildDate":"","goVersion":"python3.11.7","compiler":"cpython","platform":"linux/amd64"}',
        },
    ),
    (
        "head healthz",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "",
        },
    ),
    (
        "post healthz",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "unauthenticated",
        {
            "interim": [],
            "status": "HTTP/1.1 401 Unauthorized",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}',
        },
    ),
    (
        "not found root",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "slash",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "api",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:6443"}]}',
        },
    ),
    (
        "apis",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "a2f04f8a0b71c95860d04941cf46ad89ac9d0763b5d69b5360a7fe714b0a279a",
                3329,
            ],
        },
    ),
    (
        "api/v1",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "e80a73a928731fde911dbce310af943db3ca4bd97a1fa3b49eb1b3e83baee03f",
                5348,
            ],
        },
    ),
    (
        "apis/apps/v1",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "64ffa4008431337e0d8807c3650a9f10c3c298d3c7196c08274e572f32db52fc",
                2073,
            ],
        },
    ),
    (
        "aggregated api",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                [
                    "Content-Type",
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                ],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "dbfba1683bcf83b12a1c416bfc93f26fef07440eb60786233c49601c01da51c9",
                6467,
            ],
        },
    ),
    (
        "aggregated apis",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                [
                    "Content-Type",
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                ],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "709299c8bc913a200e84a96df2d62bdc96e5c023455d2d14ab75b23a9057b20a",
                16573,
            ],
        },
    ),
    (
        "post api",
        {
            "interim": [],
            "status": "HTTP/1.1 405 Method Not Allowed",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does not allow this method on the requested resource","reason":"MethodNotAllowed","code":405}',
        },
    ),
    (
        "create namespace",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"wire","uid":"<uid>","creationTimestamp":"<time>","labels":{"kubernetes.io/metadata.name":"wire"},"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:kubernetes.io/metadata.name":{},".":{}}}}}],"resourceVersion":"<rv>"},"status":{"phase":"Active"},"spec":{"finalizers":["kubernetes"]}}',
        },
    ),
    (
        "create pod",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "create pod warning",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Warning", '299 - "unknown field \\"bogus\\""'],
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p2","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "create pod strict",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod in version \\"v1\\" cannot be handled as a Pod: strict decoding error: unknown field \\"bogus\\"","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod bad fieldValidation",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"fieldValidation: Unsupported value: \\"X\\": supported values: \\"Ignore\\", \\"Strict\\", \\"Warn\\"","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod dry run",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p4","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}]},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "create pod bad dry run",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"dryRun: Unsupported value: \\"Some\\": supported values: \\"All\\"","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod exists",
        {
            "interim": [],
            "status": "HTTP/1.1 409 Conflict",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"p1\\" already exists","reason":"AlreadyExists","details":{"name":"p1","kind":"pods"},"code":409}',
        },
    ),
    (
        "create pod invalid",
        {
            "interim": [],
            "status": "HTTP/1.1 422 Unprocessable Entity",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \\"Not_Valid\\" is invalid: metadata.name: Invalid value: \\"Not_Valid\\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character (e.g. \'example.com\', regex used for validation is \'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\')","reason":"Invalid","details":{"name":"Not_Valid","kind":"Pod","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \\"Not_Valid\\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character (e.g. \'example.com\', regex used for validation is \'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\')","field":"metadata.name"}]},"code":422}',
        },
    ),
    (
        "create pod broken json",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the object provided is unrecognized: json parse error: unexpected end of data: line 1 column 10 (char 9)","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod array",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the object provided is unrecognized: expected a JSON object, got list","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod empty",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the body of the request was empty","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod text/plain",
        {
            "interim": [],
            "status": "HTTP/1.1 415 Unsupported Media Type",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got \\"text/plain\\")","reason":"UnsupportedMediaType","code":415}',
        },
    ),
    (
        "create pod wrong kind",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the kind in the data (Service) does not match the expected kind (Pod)","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod other namespace",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the namespace of the provided object does not match the namespace sent on the request","reason":"BadRequest","code":400}',
        },
    ),
    (
        "create pod protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p6","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
            ],
        },
    ),
    (
        "create pod yaml",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p7","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "create pod expect",
        {
            "interim": ["HTTP/1.1 100 Continue"],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p8","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "get pod",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "get pod no accept",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "get pod protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
            ],
        },
    ),
    (
        "get pod protobuf only",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
            ],
        },
    ),
    (
        "get pod table",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "e3f2b3889baefc16f0a2492346058e5751c15592fe54bbd10c429bb8dd41e0be",
                2723,
            ],
        },
    ),
    (
        "get pod yaml accept",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "get pod missing",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"nope\\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}',
        },
    ),
    (
        "get bogus resource",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "get bogus subresource",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "get too deep",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "get pod status",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "list pods",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "8257c36dc396864260554b6f3e6e21624014d4974e437d98d272373b9865eb65",
                6354,
            ],
        },
    ),
    (
        "list pods limit",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"<rv>","continue":"<token>","remainingItemCount":4},"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}]}',
        },
    ),
    (
        "list pods label",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"<rv>"},"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}]}',
        },
    ),
    (
        "list pods field",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "8257c36dc396864260554b6f3e6e21624014d4974e437d98d272373b9865eb65",
                6354,
            ],
        },
    ),
    (
        "list pods bad field",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"field label not supported: spec.bogus","reason":"BadRequest","code":400}',
        },
    ),
    (
        "list pods protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"<rv>"},"items":[{"metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}},{"metadata":{"name":"p2","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}},{"metadata":{"name":"p6","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}},{"metadata":{"name":"p7","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}},{"metadata":{"name":"p8","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}]}',
            ],
        },
    ),
    (
        "list pods table",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "3bbaa7d9fe48ba9a5209eb587e76cc9b137f545e96f6acccf4ad39fb271ee8d4",
                6071,
            ],
        },
    ),
    (
        "list all pods",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"<rv>"},"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}]}',
        },
    ),
    (
        "put collection",
        {
            "interim": [],
            "status": "HTTP/1.1 405 Method Not Allowed",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does not allow this method on the requested resource","reason":"MethodNotAllowed","code":405}',
        },
    ),
    (
        "bind",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}',
        },
    ),
    (
        "bind again",
        {
            "interim": [],
            "status": "HTTP/1.1 409 Conflict",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on pods/binding \\"p1\\": pod p1 is already assigned to node \\"n1\\"","reason":"Conflict","details":{"name":"p1","kind":"pods/binding"},"code":409}',
        },
    ),
    (
        "bind no target",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"name in URL does not match name in Binding object","reason":"BadRequest","code":400}',
        },
    ),
    (
        "get binding",
        {
            "interim": [],
            "status": "HTTP/1.1 405 Method Not Allowed",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does not allow this method on the requested resource","reason":"MethodNotAllowed","code":405}',
        },
    ),
    (
        "create event",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Event","metadata":{"name":"p1.17a","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:count":{},"f:firstTimestamp":{},"f:involvedObject":{},"f:lastTimestamp":{},"f:message":{},"f:reason":{},"f:reportingComponent":{},"f:source":{"f:component":{},".":{}},"f:type":{}}}],"resourceVersion":"<rv>"},"involvedObject":{"kind":"Pod","namespace":"wire","name":"p1","apiVersion":"v1"},"reason":"Scheduled","message":"Successfully assigned wire/p1 to n1","type":"Normal","source":{"component":"default-scheduler"},"reportingComponent":"default-scheduler","firstTimestamp":"<time>","lastTimestamp":"<time>","count":1}',
        },
    ),
    (
        "create event wrong group",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the API version in the data (events.k8s.io/v1) does not match the expected API version (v1)","reason":"BadRequest","code":400}',
        },
    ),
    (
        "status patch uid mismatch",
        {
            "interim": [],
            "status": "HTTP/1.1 422 Unprocessable Entity",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \\"p1\\" is invalid: metadata.uid: Invalid value: \\"00000000-0000-0000-0000-000000000000\\": field is immutable","reason":"Invalid","details":{"name":"p1","kind":"Pod","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \\"00000000-0000-0000-0000-000000000000\\": field is immutable","field":"metadata.uid"}]},"code":422}',
        },
    ),
    (
        "status patch",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
        },
    ),
    (
        "status patch protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
            ],
        },
    ),
    (
        "strategic patch",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "e2dda5128ce206c3cccb0ed574d056bc90b9331327be7b24e4ee6191fed32fab",
                2078,
            ],
        },
    ),
    (
        "json patch",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "454e05cf8fedb082e549ed31aed373603b56fe0e503b651459e7240161ac2f96",
                2136,
            ],
        },
    ),
    (
        "json patch object",
        {
            "interim": [],
            "status": "HTTP/1.1 400 Bad Request",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"json: cannot unmarshal object into Go value of type jsonpatch.Patch","reason":"BadRequest","code":400}',
        },
    ),
    (
        "patch bad type",
        {
            "interim": [],
            "status": "HTTP/1.1 415 Unsupported Media Type",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got \\"application/json\\")","reason":"UnsupportedMediaType","code":415}',
        },
    ),
    (
        "patch missing",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"nope\\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}',
        },
    ),
    (
        "put pod",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "79aac3f7e340ba14630e6e6679b4489d2ce36565f9150c0ea50654d24ced6b60",
                2159,
            ],
        },
    ),
    (
        "put pod conflict",
        {
            "interim": [],
            "status": "HTTP/1.1 409 Conflict",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on pods \\"p1\\": the object has been modified; please apply your changes to the latest version and try again","reason":"Conflict","details":{"name":"p1","kind":"pods"},"code":409}',
        },
    ),
    (
        "apply create",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","managedFields":[{"manager":"wire","operation":"Apply","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}}}}],"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","resourceVersion":"<rv>"},"data":{"a":"1"}}',
        },
    ),
    (
        "apply update",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire","operation":"Apply","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}}}}],"resourceVersion":"<rv>"},"data":{"a":"2"}}',
        },
    ),
    (
        "apply conflict",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"other","operation":"Apply","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}}}},{"manager":"wire","operation":"Apply","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{}}}}],"resourceVersion":"<rv>"},"data":{"a":"2"}}',
        },
    ),
    (
        "apply no manager",
        {
            "interim": [],
            "status": "HTTP/1.1 422 Unprocessable Entity",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"PatchOptions.meta.k8s.io \\"\\" is invalid: fieldManager: Required value: is required for apply patch","reason":"Invalid","details":{"group":"meta.k8s.io","kind":"PatchOptions","causes":[{"reason":"FieldValueRequired","message":"Required value: is required for apply patch","field":"fieldManager"}]},"code":422}',
        },
    ),
    (
        "create lease",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"coordination.k8s.io/v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"holderIdentity":"n1","leaseDurationSeconds":40}}',
        },
    ),
    (
        "renew lease",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"coordination.k8s.io/v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{},"f:renewTime":{}}}}],"resourceVersion":"<rv>"},"spec":{"holderIdentity":"n1","leaseDurationSeconds":40,"renewTime":"<time>"}}',
        },
    ),
    (
        "get lease protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "protobuf",
                '{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"n1","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"coordination.k8s.io/v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{},"f:renewTime":{}}}}],"resourceVersion":"<rv>"},"spec":{"holderIdentity":"n1","leaseDurationSeconds":40,"renewTime":"<time>"}}',
            ],
        },
    ),
    (
        "watch pods",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Transfer-Encoding", "chunked"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "210fb069e31f7d810904cbd73638ff187b901beb3e04124ec1d9178755c55406",
                16265,
            ],
        },
    ),
    (
        "watch pods protobuf",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/vnd.kubernetes.protobuf;stream=watch"],
                ["Transfer-Encoding", "chunked"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                [
                    "ADDED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
                ],
                [
                    "ADDED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p2","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
                ],
                [
                    "ADDED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p6","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
                ],
                [
                    "ADDED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p7","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
                ],
                [
                    "ADDED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p8","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
                ],
                [
                    "MODIFIED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Pending","qosClass":"Burstable","conditions":[{"type":"PodScheduled","status":"True","lastTransitionTime":"<time>"}]}}',
                ],
                [
                    "MODIFIED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
                ],
                [
                    "MODIFIED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire","extra":"yes"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"},{"manager":"wirer","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:extra":{}}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
                ],
                [
                    "MODIFIED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire","extra":"yes"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{"f:a":{},".":{}},"f:labels":{"f:app":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"},{"manager":"wirer","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:extra":{}}}}}],"annotations":{"a":"b"},"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
                ],
                [
                    "MODIFIED",
                    '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","labels":{"app":"wire","extra":"yes","put":"yes"},"namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":2,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{"f:a":{},".":{}},"f:labels":{"f:app":{},"f:put":{},".":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\\"type\\":\\"Ready\\"}":{"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{},".":{}}},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{"k:{\\"ip\\":\\"10.0.0.7\\"}":{"f:ip":{},".":{}},".":{}},"f:startTime":{}}},"subresource":"status"},{"manager":"wirer","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:extra":{}}}}}],"annotations":{"a":"b"},"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority","nodeName":"n1"},"status":{"phase":"Running","qosClass":"Burstable","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"<time>"}],"podIP":"10.0.0.7","podIPs":[{"ip":"10.0.0.7"}],"hostIP":"10.1.0.1","startTime":"<time>"}}',
                ],
            ],
        },
    ),
    (
        "watch pod by name",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Transfer-Encoding", "chunked"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p2","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}}\n',
        },
    ),
    (
        "watch post",
        {
            "interim": [],
            "status": "HTTP/1.1 405 Method Not Allowed",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does not allow this method on the requested resource","reason":"MethodNotAllowed","code":405}',
        },
    ),
    (
        "get scale",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \\"none\\" not found","reason":"NotFound","details":{"name":"none","group":"apps","kind":"deployments"},"code":404}',
        },
    ),
    (
        "eviction missing",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"nope\\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}',
        },
    ),
    (
        "token review",
        {
            "interim": [],
            "status": "HTTP/1.1 201 Created",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"},"metadata":{},"status":{"authenticated":false,"error":"invalid token"}}',
        },
    ),
    (
        "delete pod",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p2","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","generation":1,"managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\\"name\\":\\"c\\"}":{"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{"f:requests":{"f:cpu":{},"f:memory":{},".":{}},".":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},".":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:preemptionPolicy":{},"f:priority":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}],"resourceVersion":"<rv>"},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","securityContext":{},"enableServiceLinks":true,"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}}',
        },
    ),
    (
        "delete pod again",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"p2\\" not found","reason":"NotFound","details":{"name":"p2","kind":"pods"},"code":404}',
        },
    ),
    (
        "delete configmap",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"cm","kind":"configmaps","uid":"<uid>"}}',
        },
    ),
    (
        "delete bad propagation",
        {
            "interim": [],
            "status": "HTTP/1.1 422 Unprocessable Entity",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"DeleteOptions \\"\\" is invalid: propagationPolicy: Unsupported value: \\"Nope\\": supported values: \\"Foreground\\", \\"Background\\", \\"Orphan\\"","reason":"Invalid","details":{"kind":"DeleteOptions","causes":[{"reason":"FieldValueNotSupported","message":"Unsupported value: \\"Nope\\": supported values: \\"Foreground\\", \\"Background\\", \\"Orphan\\"","field":"propagationPolicy"}]},"code":422}',
        },
    ),
    (
        "delete collection",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"LeaseList","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"<rv>"},"items":[{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1","namespace":"wire","uid":"<uid>","creationTimestamp":"<time>","managedFields":[{"manager":"wire-test","operation":"Update","apiVersion":"coordination.k8s.io/v1","time":"<time>","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{},"f:renewTime":{}}}}],"resourceVersion":"<rv>"},"spec":{"holderIdentity":"n1","leaseDurationSeconds":40,"renewTime":"<time>"}}]}',
        },
    ),
    (
        "too large",
        {
            "interim": [],
            "status": "HTTP/1.1 413 Request Entity Too Large",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Request entity too large: limit is 3145728","reason":"RequestEntityTooLarge","code":413}',
        },
    ),
    (
        "asterisk",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "404: Not Found",
        },
    ),
    (
        "double slashes",
        {
            "interim": [],
            "status": "HTTP/1.1 200 OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": [
                "sha256",
                "616d53f70db334da37f6a60917cab9e4895c0481ddd1382e38ce41ab24759f0b",
                2421,
            ],
        },
    ),
    (
        "encoded slash",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "encoded newline",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "404: Not Found",
        },
    ),
    (
        "head api",
        {
            "interim": [],
            "status": "HTTP/1.1 405 Method Not Allowed",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "",
        },
    ),
    (
        "unknown expect",
        {
            "interim": [],
            "status": "HTTP/1.1 417 Expectation Failed",
            "headers": [
                ["Content-Type", "text/plain; charset=utf-8"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": "Unknown Expect: bogus",
        },
    ),
    (
        "anonymous asterisk",
        {
            "interim": [],
            "status": "HTTP/1.1 401 Unauthorized",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}',
        },
    ),
    (
        "anonymous encoded slash",
        {
            "interim": [],
            "status": "HTTP/1.1 404 Not Found",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}',
        },
    ),
    (
        "anonymous expect",
        {
            "interim": ["HTTP/1.1 100 Continue"],
            "status": "HTTP/1.1 401 Unauthorized",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Length", "<length>"],
                ["Date", "<date>"],
                ["Server", "<server>"],
            ],
            "body": '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}',
        },
    ),
]
