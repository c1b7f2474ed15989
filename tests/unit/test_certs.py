"""PKI creation and reuse, serving-certificate SANs, file modes, the kubeconfig, and a real
TLS handshake on loopback in which the server reads the client certificate's user."""

from __future__ import annotations

import base64
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kybern.apiserver import certs


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(path: Path) -> tuple[list[str], list[str]]:
    ext = _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return ext.get_values_for_type(x509.DNSName), ips


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    return certs.ensure_pki(tmp_path_factory.mktemp("pki"), hosts=["10.0.0.5", "my.host"])


def test_files_and_modes(pki: certs.Pki) -> None:
    for path in (pki.ca_key, pki.server_key, pki.admin_key, pki.token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (pki.ca_cert, pki.server_cert, pki.admin_cert):
        assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert len(pki.token) >= 32
    assert not list(pki.dir.glob(".*.tmp"))


def test_server_sans(pki: certs.Pki) -> None:
    dns, ips = _sans(pki.server_cert)
    assert {"my.host", "localhost", "kubernetes", "kubernetes.default"} <= set(dns)
    assert {"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= set(dns)
    assert {"10.0.0.5", "127.0.0.1", "::1"} <= set(ips)


def test_ca_and_admin(pki: certs.Pki) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    years = (ca.not_valid_after_utc - ca.not_valid_before_utc).days / 365
    assert years > 9.9
    admin = _cert(pki.admin_cert)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kybern-admin"
    orgs = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    admin.verify_directly_issued_by(ca)
    _cert(pki.server_cert).verify_directly_issued_by(ca)


def test_reuse_and_host_change(tmp_path: Path) -> None:
    first = certs.ensure_pki(tmp_path, hosts=["a.example"])
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = certs.ensure_pki(tmp_path, hosts=["a.example"])
    assert again == first
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot
    certs.ensure_pki(tmp_path, hosts=["b.example", "0.0.0.0"])
    assert (tmp_path / "ca.crt").read_bytes() == snapshot["ca.crt"]
    assert (tmp_path / "admin.crt").read_bytes() == snapshot["admin.crt"]
    assert (tmp_path / "token").read_bytes() == snapshot["token"]
    dns, ips = _sans(tmp_path / "server.crt")
    assert "b.example" in dns and "a.example" not in dns
    assert "0.0.0.0" not in ips


def test_new_ca_reissues_leaves(tmp_path: Path) -> None:
    certs.ensure_pki(tmp_path, hosts=[])
    (tmp_path / "ca.key").unlink()
    pki = certs.ensure_pki(tmp_path, hosts=[])
    ca = _cert(pki.ca_cert)
    _cert(pki.server_cert).verify_directly_issued_by(ca)
    _cert(pki.admin_cert).verify_directly_issued_by(ca)


def test_kubeconfig(pki: certs.Pki, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "admin.kubeconfig"
    certs.write_kubeconfig(path, server_url="https://127.0.0.1:6443", pki=pki)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "kybern"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca_cert.read_bytes()
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == pki.admin_cert.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == pki.admin_key.read_bytes()
    context = config["contexts"][0]["context"]
    assert context["user"] == config["users"][0]["name"]
    certs.write_kubeconfig(path, server_url="https://x:1", pki=pki, context="c", use_token=True)
    assert yaml.safe_load(path.read_text())["users"][0]["user"] == {"token": pki.token}


def test_user_from_cert_forms(pki: certs.Pki) -> None:
    der = _cert(pki.admin_cert).public_bytes(serialization.Encoding.DER)
    groups = ["system:masters", "system:authenticated"]
    assert certs.user_from_cert(der) == ("kybern-admin", groups)
    peer = {"subject": ((("organizationName", "dev"),), (("commonName", "alice"),))}
    assert certs.user_from_cert(peer) == ("alice", ["dev", "system:authenticated"])
    assert certs.user_from_cert({}) is None
    assert certs.user_from_cert(None) is None
    assert certs.user_from_cert({"subject": ((("organizationName", "x"),),)}) is None


def _handshake(pki: certs.Pki, client_ctx: ssl.SSLContext, host: str) -> Any:
    """Serve one TLS connection on loopback; return what `user_from_cert` saw, or the error."""
    server_ctx = pki.server_ssl_context()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(1)
    listener.settimeout(5)
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["user"] = certs.user_from_cert(tls.getpeercert())
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(5)
        listener.close()
    return seen.get("user", seen.get("error"))


def test_handshake_admin_cert(pki: certs.Pki) -> None:
    user = _handshake(pki, pki.client_ssl_context(), "127.0.0.1")
    assert user == ("kybern-admin", ["system:masters", "system:authenticated"])


def test_handshake_without_client_cert(pki: certs.Pki) -> None:
    assert _handshake(pki, pki.client_ssl_context(with_admin_cert=False), "127.0.0.1") is None


def test_handshake_issued_client_cert(pki: certs.Pki, tmp_path: Path) -> None:
    cert_pem, key_pem = certs.issue_client_cert(pki, "bob", ["team-a", "team-b"])
    (tmp_path / "bob.crt").write_bytes(cert_pem)
    (tmp_path / "bob.key").write_bytes(key_pem)
    ctx = pki.client_ssl_context(with_admin_cert=False)
    ctx.load_cert_chain(tmp_path / "bob.crt", tmp_path / "bob.key")
    assert _handshake(pki, ctx, "127.0.0.1") == (
        "bob",
        ["team-a", "team-b", "system:authenticated"],
    )


def test_handshake_ipv6_loopback(pki: certs.Pki) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        user = _handshake(pki, pki.client_ssl_context(), "::1")
    except OSError as exc:  # loopback IPv6 disabled on this machine
        pytest.skip(str(exc))
    assert user[0] == "kybern-admin"
