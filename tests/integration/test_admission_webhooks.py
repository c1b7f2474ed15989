"""Admission webhooks against a real `kybern server`: an HTTPS webhook server written here
(aiohttp on 127.0.0.1, a certificate from a test CA given as `caBundle`) registered by URL and
through a Service (Endpoints, or an EndpointSlice) pointing at 127.0.0.1; the real kubectl and
the PyPI kubernetes client as clients. Every configuration is scoped to the test's namespace
by a namespaceSelector and deleted afterwards."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import Server, unique, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s
from test_crd_support import create_crd, delete_crd

Obj = dict[str, Any]
ADM = "/apis/admissionregistration.k8s.io/v1"
SVC_NS, SVC, SLICE_SVC = "default", "admission-hooks", "admission-hooks-slice"
LABEL = "webhook.kybern.io/mutated"


def make_certs(tmp: Path) -> tuple[bytes, Path, Path]:
    """(CA PEM, cert file, key file): 127.0.0.1 and the two services' names."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admission-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    sans += [x509.DNSName(f"{s}.{SVC_NS}.svc") for s in (SVC, SLICE_SVC)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


class Hooks:
    """The webhook server: one behaviour per path, every review recorded."""

    def __init__(self, tmp: Path) -> None:
        self.ca, cert, key = make_certs(tmp)
        self.ca_b64 = base64.b64encode(self.ca).decode()
        self.reviews: list[tuple[str, Obj]] = []
        self._lock = threading.Lock()
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path}"

    def seen(self, path: str) -> list[Obj]:
        with self._lock:
            return [r for p, r in self.reviews if p == path]

    async def _handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        review = await request.json()
        with self._lock:
            self.reviews.append((kind, review))
        req = review["request"]
        resp: Obj = {"uid": req["uid"], "allowed": True}
        if kind == "mutate":
            ops = [{"op": "add", "path": "/metadata/labels", "value": {LABEL: "yes"}}]
            if (req["object"]["metadata"]).get("labels"):
                ops = [
                    {
                        "op": "add",
                        "path": "/metadata/labels/" + LABEL.replace("/", "~1"),
                        "value": "yes",
                    }
                ]
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        elif kind == "deny":
            resp["allowed"] = False
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": "no configmaps today"}
        elif kind == "deny-plain":
            resp["allowed"] = False
            resp["status"] = {"message": "plain no"}
        elif kind == "warn":
            resp["warnings"] = ["be careful with this one"]
        elif kind == "slow":
            await asyncio.sleep(3)
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}
        )


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    h = Hooks(tmp_path_factory.mktemp("hooks"))
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def services(server: Server, hooks: Hooks) -> Iterator[None]:
    """Two selector-less Services at the webhook server: one with Endpoints, one with an
    EndpointSlice only."""
    core = k8s.CoreV1Api(server.client())
    for name in (SVC, SLICE_SVC):
        core.create_namespaced_service(
            SVC_NS,
            {
                "metadata": {"name": name},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": hooks.port}]},
            },
        )
    core.create_namespaced_endpoints(
        SVC_NS,
        {
            "metadata": {"name": SVC},
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.1"}],
                    "ports": [{"name": "https", "port": hooks.port}],
                }
            ],
        },
    )
    k8s.DiscoveryV1Api(server.client()).create_namespaced_endpoint_slice(
        SVC_NS,
        {
            "metadata": {
                "name": f"{SLICE_SVC}-abc",
                "labels": {"kubernetes.io/service-name": SLICE_SVC},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": hooks.port}],
        },
    )
    yield


def webhook(
    name: str,
    ns: str,
    client_config: Obj,
    *,
    resources: tuple[str, ...] = ("configmaps",),
    operations: tuple[str, ...] = ("CREATE",),
    group: str = "",
    **extra: Any,
) -> Obj:
    hook: Obj = {
        "name": name,
        "clientConfig": client_config,
        "rules": [
            {
                "operations": list(operations),
                "apiGroups": [group],
                "apiVersions": ["*"],
                "resources": list(resources),
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    hook.update(extra)
    return hook


@contextlib.contextmanager
def configured(server: Server, kind: str, *hooks_: Obj) -> Iterator[str]:
    plural = (
        "mutatingwebhookconfigurations" if kind == "Mutating" else "validatingwebhookconfigurations"
    )
    name = unique("cfg")
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": f"{kind}WebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": list(hooks_),
    }
    http = server.http()
    r = http.post(f"{server.url}{ADM}/{plural}", json=body)
    assert r.status_code == 201, r.text
    try:
        yield name
    finally:
        if server.running:
            http.delete(f"{server.url}{ADM}/{plural}/{name}")


def by_url(hooks: Hooks, path: str) -> Obj:
    return {"url": hooks.url(path), "caBundle": hooks.ca_b64}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the tests ----------------------------------------------------------------------------------


def test_mutating_webhook_labels_the_object(server: Server, ns: str, hooks: Hooks) -> None:
    with configured(server, "Mutating", webhook("label.kybern.io", ns, by_url(hooks, "mutate"))):
        server.kubectl("create", "configmap", "m1", "-n", ns, "--from-literal=a=b")
        got = server.kubectl_json("get", "configmap", "m1", "-n", ns)
        assert got["metadata"]["labels"] == {LABEL: "yes"}
        # the python client sees it in the create response itself
        core = k8s.CoreV1Api(server.client())
        made = core.create_namespaced_config_map(
            ns, {"metadata": {"name": "m2", "labels": {"x": "1"}}}
        )
        assert made.metadata.labels == {"x": "1", LABEL: "yes"}
    review = next(r for r in hooks.seen("mutate") if r["request"].get("name") == "m1")
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    req = review["request"]
    assert req["operation"] == "CREATE" and req["namespace"] == ns
    assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert req["requestKind"] == req["kind"] and req["requestResource"] == req["resource"]
    assert "subResource" not in req and req["dryRun"] is False and req["uid"]
    assert req["object"]["data"] == {"a": "b"} and req["oldObject"] is None
    assert req["options"]["kind"] == "CreateOptions"
    assert req["options"]["apiVersion"] == "meta.k8s.io/v1"
    assert req["userInfo"]["username"] and "system:masters" in req["userInfo"]["groups"]


def test_create_reviews_see_the_object_before_the_registry_fills_it(
    server: Server, ns: str, hooks: Hooks
) -> None:
    """As kube-apiserver: mutating webhooks run before BeforeCreate, so a generateName object
    has no name yet (nor does the request), no uid, no generation and a null creationTimestamp;
    validating webhooks run after it and see them all (the request still names none)."""
    mutate = webhook("gen.kybern.io", ns, by_url(hooks, "mutate"), resources=("deployments",))
    mutate["rules"][0]["apiGroups"] = ["apps"]
    observe = webhook("see.kybern.io", ns, by_url(hooks, "observe"), resources=("deployments",))
    observe["rules"][0]["apiGroups"] = ["apps"]
    labels = {"app": "gen"}
    body = {
        "metadata": {"generateName": "gen-"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    with (
        configured(server, "Mutating", mutate),
        configured(server, "Validating", observe),
    ):
        made = k8s.AppsV1Api(server.client()).create_namespaced_deployment(ns, body)
    name = made.metadata.name
    assert name.startswith("gen-") and made.metadata.uid and made.metadata.generation == 1
    assert made.metadata.labels == {LABEL: "yes"}

    def mine(path: str) -> Obj:
        (review,) = [
            r["request"]
            for r in hooks.seen(path)
            if r["request"]["namespace"] == ns and r["request"]["kind"]["kind"] == "Deployment"
        ]
        return review

    seen = mine("mutate")
    assert "name" not in seen and seen["operation"] == "CREATE"  # (name is omitempty)
    meta = seen["object"]["metadata"]
    assert meta["generateName"] == "gen-" and meta["creationTimestamp"] is None
    assert not {"name", "uid", "generation", "resourceVersion"} & meta.keys()
    checked = mine("observe")
    assert "name" not in checked
    meta = checked["object"]["metadata"]
    assert (meta["name"], meta["uid"], meta["generation"]) == (name, made.metadata.uid, 1)
    assert meta["creationTimestamp"] and meta["labels"] == {LABEL: "yes"}


def test_validating_webhook_denies(server: Server, ns: str, hooks: Hooks) -> None:
    hook = webhook("deny.kybern.io", ns, by_url(hooks, "deny"))
    plain = webhook("plain.kybern.io", ns, by_url(hooks, "deny-plain"), operations=("UPDATE",))
    with configured(server, "Validating", hook, plain):
        p = server.kubectl("create", "configmap", "d1", "-n", ns, check=False)
        want = 'admission webhook "deny.kybern.io" denied the request: no configmaps today'
        assert p.returncode != 0 and want in p.stderr, p.stderr
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d1", "namespace": ns}}
        p = server.kubectl("apply", "-f", "-", input=json.dumps(cm), check=False)
        assert (
            p.returncode != 0
            and f'Error from server (Forbidden): error when creating "STDIN": {want}' in p.stderr
        ), p.stderr
        core = k8s.CoreV1Api(server.client())
        with pytest.raises(k8s.ApiException) as e:
            core.create_namespaced_config_map(ns, {"metadata": {"name": "d2"}})
        assert e.value.status == 403
        assert json.loads(e.value.body)["reason"] == "Forbidden"
        assert core.list_namespaced_config_map(ns).items == [] or all(
            c.metadata.name not in ("d1", "d2") for c in core.list_namespaced_config_map(ns).items
        )
    # a Status without code: 400, the message prefixed
    with configured(
        server, "Validating", webhook("plain.kybern.io", ns, by_url(hooks, "deny-plain"))
    ):
        r = server.http().post(
            f"{server.url}/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "d3"}}
        )
        assert r.status_code == 400, r.text
        assert (
            r.json()["message"]
            == 'admission webhook "plain.kybern.io" denied the request: plain no'
        )


def test_warning_reaches_kubectl(server: Server, ns: str, hooks: Hooks) -> None:
    with configured(server, "Validating", webhook("warn.kybern.io", ns, by_url(hooks, "warn"))):
        p = server.kubectl("create", "configmap", "w1", "-n", ns)
        assert "Warning: be careful with this one" in p.stderr, p.stderr


def test_failure_policy_with_the_server_gone(server: Server, ns: str, hooks: Hooks) -> None:
    gone = {"url": f"https://127.0.0.1:{closed_port()}/x", "caBundle": hooks.ca_b64}
    with configured(server, "Validating", webhook("fail.kybern.io", ns, gone)):
        r = server.http().post(
            f"{server.url}/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "f1"}}
        )
        assert r.status_code == 500, r.text
        st = r.json()
        assert st["reason"] == "InternalError"
        assert st["message"].startswith(
            'Internal error occurred: failed calling webhook "fail.kybern.io": failed to call '
            f'webhook: Post "{gone["url"]}?timeout=10s": dial tcp'
        ), st["message"]
        p = server.kubectl("create", "configmap", "f2", "-n", ns, check=False)
        assert p.returncode != 0 and 'failed calling webhook "fail.kybern.io"' in p.stderr
    with configured(
        server, "Validating", webhook("ignore.kybern.io", ns, gone, failurePolicy="Ignore")
    ):
        server.kubectl("create", "configmap", "f3", "-n", ns)


def test_timeout(server: Server, ns: str, hooks: Hooks) -> None:
    slow = webhook("slow.kybern.io", ns, by_url(hooks, "slow"), timeoutSeconds=1)
    with configured(server, "Validating", slow):
        t0 = time.monotonic()
        r = server.http().post(
            f"{server.url}/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "t1"}}
        )
        assert time.monotonic() - t0 < 2.8
        assert r.status_code == 500 and "context deadline exceeded" in r.json()["message"], r.text
        assert "?timeout=1s" in r.json()["message"]
    slow["failurePolicy"] = "Ignore"
    with configured(server, "Validating", slow):
        server.kubectl("create", "configmap", "t2", "-n", ns)


@pytest.mark.parametrize("service", [SVC, SLICE_SVC])
def test_service_reference(
    server: Server, ns: str, hooks: Hooks, services: None, service: str
) -> None:
    cc = {
        "service": {"namespace": SVC_NS, "name": service, "path": "/mutate"},
        "caBundle": hooks.ca_b64,
    }
    with configured(server, "Mutating", webhook("svc.kybern.io", ns, cc)):
        server.kubectl("create", "configmap", "s1", "-n", ns)
        assert server.kubectl_json("get", "configmap", "s1", "-n", ns)["metadata"]["labels"] == {
            LABEL: "yes"
        }
    bad = {"service": {"namespace": SVC_NS, "name": "nowhere"}, "caBundle": hooks.ca_b64}
    with configured(server, "Mutating", webhook("svc.kybern.io", ns, bad)):
        r = server.http().post(
            f"{server.url}/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "s2"}}
        )
        assert r.status_code == 500
        assert 'Post "https://nowhere.default.svc:443?timeout=10s"' in r.json()["message"]


def test_selectors(server: Server, ns: str, hooks: Hooks) -> None:
    core = k8s.CoreV1Api(server.client())
    other = unique("other")
    core.create_namespace({"metadata": {"name": other}})
    try:
        hook = webhook(
            "obj.kybern.io",
            ns,
            by_url(hooks, "deny"),
            objectSelector={"matchLabels": {"guarded": "yes"}},
        )
        with configured(server, "Validating", hook):
            # namespaceSelector does not match the other namespace
            core.create_namespaced_config_map(
                other, {"metadata": {"name": "n1", "labels": {"guarded": "yes"}}}
            )
            # objectSelector: unlabelled passes, labelled is denied
            core.create_namespaced_config_map(ns, {"metadata": {"name": "o1"}})
            with pytest.raises(k8s.ApiException) as e:
                core.create_namespaced_config_map(
                    ns, {"metadata": {"name": "o2", "labels": {"guarded": "yes"}}}
                )
            assert e.value.status == 403
    finally:
        core.delete_namespace(other)


def test_update_and_delete_reviews(server: Server, ns: str, hooks: Hooks) -> None:
    core = k8s.CoreV1Api(server.client())
    core.create_namespaced_config_map(ns, {"metadata": {"name": "u1"}, "data": {"v": "1"}})
    hook = webhook("seen.kybern.io", ns, by_url(hooks, "allow"), operations=("UPDATE", "DELETE"))
    with configured(server, "Validating", hook):
        core.patch_namespaced_config_map("u1", ns, {"data": {"v": "2"}})
        core.delete_namespaced_config_map("u1", ns, grace_period_seconds=0)
    reviews = [r["request"] for r in hooks.seen("allow") if r["request"].get("name") == "u1"]
    upd = next(r for r in reviews if r["operation"] == "UPDATE")
    assert upd["object"]["data"] == {"v": "2"} and upd["oldObject"]["data"] == {"v": "1"}
    assert upd["options"]["kind"] == "UpdateOptions"
    dele = next(r for r in reviews if r["operation"] == "DELETE")
    assert dele["object"] is None and dele["oldObject"]["data"] == {"v": "2"}
    assert dele["options"]["kind"] == "DeleteOptions"
    assert dele["options"]["gracePeriodSeconds"] == 0


def test_custom_resources(server: Server, ns: str, hooks: Hooks) -> None:
    g = f"{unique('adm')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{g}"},
        "spec": {
            "group": g,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
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
    create_crd(server, crd)
    try:
        hook = webhook(
            "crd.kybern.io", ns, by_url(hooks, "mutate"), resources=("widgets",), group=g
        )
        with configured(server, "Mutating", hook):
            obj = {"apiVersion": f"{g}/v1", "kind": "Widget", "metadata": {"name": "w1"}}
            r = server.http().post(f"{server.url}/apis/{g}/v1/namespaces/{ns}/widgets", json=obj)
            assert r.status_code == 201, r.text
            assert r.json()["metadata"]["labels"] == {LABEL: "yes"}
        req = next(r["request"] for r in hooks.seen("mutate") if r["request"].get("name") == "w1")
        assert req["kind"] == {"group": g, "version": "v1", "kind": "Widget"}
    finally:
        delete_crd(server, f"widgets.{g}")


def test_pod_status_subresource(server: Server, ns: str, hooks: Hooks) -> None:
    core = k8s.CoreV1Api(server.client())
    pod = {"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    core.create_namespaced_pod(ns, pod)
    hook = webhook(
        "status.kybern.io",
        ns,
        by_url(hooks, "deny"),
        resources=("pods/status",),
        operations=("UPDATE",),
    )
    with configured(server, "Validating", hook):
        core.patch_namespaced_pod("p1", ns, {"metadata": {"labels": {"a": "b"}}})  # not pods/status
        with pytest.raises(k8s.ApiException) as e:
            core.patch_namespaced_pod_status("p1", ns, {"status": {"message": "hi"}})
        assert e.value.status == 403
    req = next(
        r["request"] for r in hooks.seen("deny") if r["request"].get("subResource") == "status"
    )
    assert req["resource"]["resource"] == "pods" and req["requestSubResource"] == "status"
    assert req["kind"]["kind"] == "Pod" and req["object"]["status"]["message"] == "hi"


def test_dry_run_and_side_effects(server: Server, ns: str, hooks: Hooks) -> None:
    http = server.http()
    some = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": unique("some")},
        "webhooks": [webhook("some.kybern.io", ns, by_url(hooks, "allow"), sideEffects="Some")],
    }
    r = http.post(f"{server.url}{ADM}/validatingwebhookconfigurations", json=some)
    assert r.status_code == 422, r.text  # v1 allows only None and NoneOnDryRun
    assert r.json()["details"]["causes"][0]["field"] == "webhooks[0].sideEffects"
    hook = webhook("dry.kybern.io", ns, by_url(hooks, "allow"), sideEffects="NoneOnDryRun")
    with configured(server, "Validating", hook):
        server.kubectl("create", "configmap", "dry1", "-n", ns, "--dry-run=server")
    req = next(r["request"] for r in hooks.seen("allow") if r["request"].get("name") == "dry1")
    assert req["dryRun"] is True and req["options"]["dryRun"] == ["All"]


def test_configuration_validation(server: Server) -> None:
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": unique("bad")},
        "webhooks": [
            {"name": "a.b.c", "clientConfig": {"url": "https://x.example.com/"}},
            {
                "name": "a.b.c",
                "clientConfig": {},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            },
        ],
    }
    r = server.http().post(f"{server.url}{ADM}/mutatingwebhookconfigurations", json=body)
    assert r.status_code == 422, r.text
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert {
        "webhooks[0].sideEffects",
        "webhooks[0].admissionReviewVersions",
        "webhooks[1].name",
        "webhooks[1].clientConfig",
    } <= fields, fields
    p = server.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert p.returncode != 0 and "is invalid" in p.stderr


def test_no_webhooks_after_deletion(server: Server, ns: str, hooks: Hooks) -> None:
    with configured(server, "Validating", webhook("deny.kybern.io", ns, by_url(hooks, "deny"))):
        assert server.kubectl("create", "configmap", "z1", "-n", ns, check=False).returncode != 0
    wait_for(
        lambda: server.kubectl("create", "configmap", "z2", "-n", ns, check=False).returncode == 0,
        timeout=10,
        message="the webhook to be gone",
    )
