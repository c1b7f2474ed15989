"""TLS of the agent's HTTPS server: `issue_serving_cert` signs a serving certificate for a node
(its name, addresses and loopback as SANs; EC P-256, one year) with the cluster CA, and
`ensure_serving_cert` keeps one in a directory (reissued when the CA, the hosts or the expiry
call for it) — what `kybern up` and tests do with the CA of the data dir, and what an operator
does once per node for a separate `kybern agent` (the CA key never has to leave the control
plane host: copy the two files); without a CA it keeps a self-signed one, as a kubelet without
`--tls-cert-file` does. `server_context` builds the serving `SSLContext` that asks for
client certificates and verifies them against the cluster CA; `peer_user` reads the verified
certificate's CN (the user) and O (groups)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
CERT_FILE = "agent-serving.crt"
KEY_FILE = "agent-serving.key"


def _sans(node_name: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in [node_name, *hosts, "localhost", "127.0.0.1", "::1"]:
        host = host.strip().strip("[]")
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            name: x509.GeneralName = x509.DNSName(host.lower())
        else:
            if ip.is_unspecified:
                continue
            name = x509.IPAddress(ip)
        if name not in out:
            out.append(name)
    return out


def _node_subject(node_name: str) -> x509.Name:
    """A kubelet's: CN `system:node:<name>`, O `system:nodes`."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _build(
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: Any,
    node_name: str,
    hosts: Iterable[str],
) -> tuple[bytes, bytes]:
    now = dt.datetime.now(dt.UTC)
    subject = _node_subject(node_name)
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(node_name, hosts)), critical=False)
        .sign(signer, hashes.SHA256())
    )
    key_pem = _key_pem(key)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def issue_serving_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, node_name: str, hosts: Iterable[str] = ()
) -> tuple[bytes, bytes]:
    """A serving certificate (PEM) and its key (PEM) for the agent of `node_name`, signed by
    the CA; CN `system:node:<name>`, O `system:nodes` (as a kubelet's)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key: Any = serialization.load_pem_private_key(ca_key_pem, password=None)
    return _build(
        ec.generate_private_key(ec.SECP256R1()), ca_cert.subject, ca_key, node_name, hosts
    )


def self_signed_serving_cert(node_name: str, hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """What a kubelet without `--tls-cert-file` serves with: the same certificate, signed by its
    own key (API servers then verify it only if told to trust it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _build(key, None, key, node_name, hosts)


def _current(cert_file: Path, ca_cert_pem: bytes, sans: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem))
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return fresh and set(ext.value) == set(sans)


def serving_request(node_name: str, hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """A certificate signing request (PEM) for the agent's serving certificate, and its key
    (PEM): the subject and names `issue_serving_cert` would give, for a CA elsewhere."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _node_subject(node_name)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(_sans(node_name, hosts)), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = _key_pem(key)
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def is_current(cert_file: Path, ca_cert_pem: bytes, node_name: str, hosts: Iterable[str]) -> bool:
    """Whether `cert_file` is issued by the CA for these names and far enough from its end.
    Blocking."""
    return _current(cert_file, ca_cert_pem, _sans(node_name, hosts))


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode`. Blocking."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_serving_cert(
    dir: Path,
    ca_cert_file: Path | None,
    ca_key_file: Path | None,
    node_name: str,
    hosts: Iterable[str] = (),
) -> tuple[Path, Path]:
    """(cert file, key file) in `dir`, issued by the CA (self-signed without one) unless a
    current one is there. Blocking."""
    dir.mkdir(parents=True, exist_ok=True)
    hosts = [*hosts, socket.gethostname()]
    cert_file, key_file = dir / CERT_FILE, dir / KEY_FILE
    sans = _sans(node_name, hosts)
    if ca_cert_file is not None and ca_key_file is not None:
        ca_pem = ca_cert_file.read_bytes()
        if not (key_file.exists() and _current(cert_file, ca_pem, sans)):
            cert, key = issue_serving_cert(ca_pem, ca_key_file.read_bytes(), node_name, hosts)
            write_file(key_file, key, 0o600)
            write_file(cert_file, cert, 0o644)
        return cert_file, key_file
    own = cert_file.read_bytes() if cert_file.exists() else b""
    if not (own and key_file.exists() and _current(cert_file, own, sans)):
        cert, key = self_signed_serving_cert(node_name, hosts)
        write_file(key_file, key, 0o600)
        write_file(cert_file, cert, 0o644)
    return cert_file, key_file


def server_context(
    cert_file: Path | str, key_file: Path | str, client_ca_file: Path | str
) -> ssl.SSLContext:
    """Serving context: asks for a client certificate and verifies it against the cluster CA
    (the handshake succeeds without one; the server then answers 401)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.load_verify_locations(cafile=str(client_ca_file))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def peer_user(cert: dict[str, Any] | None) -> tuple[str, list[str]] | None:
    """(CN, [O...]) of a verified peer certificate (`getpeercert()`), None without one."""
    if not cert:
        return None
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and not user:
                user = value
            elif key == "organizationName":
                groups.append(value)
    return (user, groups) if user else None
