"""Conversion webhooks: a CRD with versions v1 (`spec.replicas`, the storage version) and v2
(`spec.count`) whose conversion is done by a webhook written here — an HTTPS server on 127.0.0.1
with a certificate from a self-signed CA given to the CRD as `caBundle` — answering
`ConversionReview` v1. Objects written in v2 are stored in v1 and read back in either version."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, unique
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_crd_support import create_crd, delete_crd

Obj = dict[str, Any]


def make_certs(tmp: Path) -> tuple[bytes, Path, Path]:
    """(CA PEM, server cert file, server key file) for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook-test-ca")])
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "converter")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
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


def convert(obj: Obj, desired: str) -> Obj:
    out = json.loads(json.dumps(obj))
    spec = out.setdefault("spec", {})
    if desired.endswith("/v2") and "replicas" in spec:
        spec["count"] = spec.pop("replicas")
    if desired.endswith("/v1") and "count" in spec:
        spec["replicas"] = spec.pop("count")
    out["apiVersion"] = desired
    return out


class Converter(BaseHTTPRequestHandler):
    reviews: list[Obj] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Converter.reviews.append(review)
        req = review["request"]
        resp = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "response": {
                "uid": req["uid"],
                "convertedObjects": [convert(o, req["desiredAPIVersion"]) for o in req["objects"]],
                "result": {"status": "Success"},
            },
        }
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    ca, cert, key = make_certs(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Converter)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/convert", ca
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def version(name: str, field: str, storage: bool) -> Obj:
    return {
        "name": name,
        "served": True,
        "storage": storage,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {field: {"type": "integer"}}}
                },
            }
        },
    }


def test_conversion_webhook(server: Server, ns: str, webhook: tuple[str, bytes]) -> None:
    url, ca = webhook
    g = f"{unique('w')}.example.com"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"dials.{g}"},
        "spec": {
            "group": g,
            "scope": "Namespaced",
            "names": {"plural": "dials", "kind": "Dial"},
            "versions": [version("v1", "replicas", True), version("v2", "count", False)],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": url, "caBundle": base64.b64encode(ca).decode()},
                },
            },
        },
    }
    create_crd(server, body)
    http = server.http()
    base = f"{server.url}/apis/{g}"
    try:
        obj = {"apiVersion": f"{g}/v2", "kind": "Dial", "metadata": {"name": "d"}}
        r = http.post(f"{base}/v2/namespaces/{ns}/dials", json={**obj, "spec": {"count": 3}})
        assert r.status_code == 201, r.text
        assert r.json()["spec"] == {"count": 3}
        v1 = http.get(f"{base}/v1/namespaces/{ns}/dials/d").json()
        assert v1["apiVersion"] == f"{g}/v1" and v1["spec"] == {"replicas": 3}
        listed = http.get(f"{base}/v2/namespaces/{ns}/dials").json()
        assert [(i["apiVersion"], i["spec"]) for i in listed["items"]] == [
            (f"{g}/v2", {"count": 3})
        ]
        r = http.patch(
            f"{base}/v2/namespaces/{ns}/dials/d",
            json={"spec": {"count": 5}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200 and r.json()["spec"] == {"count": 5}, r.text
        assert http.get(f"{base}/v1/namespaces/{ns}/dials/d").json()["spec"] == {"replicas": 5}
        desired = {rv["request"]["desiredAPIVersion"] for rv in Converter.reviews}
        assert desired == {f"{g}/v1", f"{g}/v2"}
        assert all(rv["apiVersion"] == "apiextensions.k8s.io/v1" for rv in Converter.reviews)
    finally:
        delete_crd(server, f"dials.{g}")


def test_conversion_webhook_failure_is_an_error(server: Server, ns: str) -> None:
    g = f"{unique('f')}.example.com"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"knobs.{g}"},
        "spec": {
            "group": g,
            "scope": "Namespaced",
            "names": {"plural": "knobs", "kind": "Knob"},
            "versions": [version("v1", "replicas", True), version("v2", "count", False)],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": "https://127.0.0.1:9/convert"},
                },
            },
        },
    }
    create_crd(server, body)
    try:
        r = server.http().post(
            f"{server.url}/apis/{g}/v2/namespaces/{ns}/knobs",
            json={"apiVersion": f"{g}/v2", "kind": "Knob", "metadata": {"name": "k"}},
        )
        assert r.status_code == 500
        assert f"conversion webhook for {g}/Knob failed" in r.json()["message"]
        assert server.is_ready()
    finally:
        delete_crd(server, f"knobs.{g}")
