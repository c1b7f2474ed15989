"""TLS material of the API server, made with `cryptography`: `ensure_pki(dir, hosts=...)`
creates on first start, and reuses afterwards, a self-signed EC P-256 CA (10 years), a serving
certificate for the requested hosts plus the in-cluster `kubernetes.default.svc...` names and
loopback addresses (1 year; reissued when the host set changes, the CA changed or it nears
expiry), an admin client certificate (CN `kybern-admin`, O `system:masters`) and a random
static bearer token. Keys and the token are written atomically with mode 0600. `Pki` builds
the server `SSLContext` (client certificates optional but verified against the CA);
`user_from_cert` maps a verified peer certificate to (user, groups); `write_kubeconfig` writes
an admin kubeconfig with the credentials embedded; `issue_client_cert` signs further users.
`ensure_front_proxy` adds the aggregator's own CA (`front-proxy-ca`) and its client
certificate (CN `front-proxy-client`), as kubeadm lays them out."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "kybern-admin"
ADMIN_GROUPS = ("system:masters",)
AUTHENTICATED = "system:authenticated"
DEFAULT_SANS = (
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
FRONT_PROXY_CLIENT = "front-proxy-client"  # the aggregator's identity towards extension servers

SanName = x509.DNSName | x509.IPAddress


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the PKI files in `dir`, and what the server builds from them."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> Path:
        """The key that signs service account tokens (ES256)."""
        return self.dir / "sa.key"

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_ca_key(self) -> Path:
        return self.dir / "front-proxy-ca.key"

    @property
    def front_proxy_client_cert(self) -> Path:
        return self.dir / "front-proxy-client.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        return self.dir / "front-proxy-client.key"

    @property
    def token_file(self) -> Path:
        return self.dir / "token"

    @property
    def token(self) -> str:
        """The static bearer token that authenticates as the admin."""
        return self.token_file.read_text().strip()

    def server_ssl_context(self) -> ssl.SSLContext:
        """Serving context: client certificates are optional, and verified when presented."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_ssl_context(self, *, with_admin_cert: bool = True) -> ssl.SSLContext:
        """A client context trusting the CA, presenting the admin certificate if asked."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_admin_cert:
            ctx.load_cert_chain(self.admin_cert, self.admin_key)
        return ctx


# ---------------------------------------------------------------- files


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode`, all or nothing (fsynced). Blocking."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Any] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return cert, key


# ---------------------------------------------------------------- certificates


def _name(cn: str, orgs: tuple[str, ...] | list[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _new_ca(cn: str = "kybern-ca") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: Any,
    subject: x509.Name,
    *,
    server: bool,
    sans: list[SanName] | None = None,
    days: int = LEAF_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(subject, ca_cert.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _san(host: str) -> SanName | None:
    host = host.strip().strip("[]")
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host.lower())
    return None if ip.is_unspecified else x509.IPAddress(ip)


def _sans(hosts: list[str]) -> list[SanName]:
    out: list[SanName] = []
    for host in [*hosts, *DEFAULT_SANS]:
        san = _san(host)
        if san is not None and san not in out:
            out.append(san)
    return out


def _cert_sans(cert: x509.Certificate) -> set[SanName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value)


def _usable(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Signed by this CA and not about to expire."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def issue_client_cert(pki: Pki, cn: str, groups: list[str]) -> tuple[bytes, bytes]:
    """A client certificate (PEM) and its key (PEM) for user `cn` in `groups`, by the CA."""
    loaded = _load(pki.ca_cert, pki.ca_key)
    if loaded is None:
        raise FileNotFoundError(f"no CA in {pki.dir}")
    cert, key = _issue(*loaded, _name(cn, groups), server=False)
    return _cert_pem(cert), _key_pem(key)


def ensure_pki(dir: Path, *, hosts: list[str]) -> Pki:
    """Create or reuse the PKI in `dir` (see the module docstring) and return its paths."""
    pki = Pki(Path(dir))
    pki.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki.dir, 0o700)
    loaded = _load(pki.ca_cert, pki.ca_key)
    if loaded is None:
        ca_cert, ca_key = _new_ca()
        write_atomic(pki.ca_key, _key_pem(ca_key), 0o600)
        write_atomic(pki.ca_cert, _cert_pem(ca_cert), 0o644)
    else:
        ca_cert, ca_key = loaded
    sans = _sans(hosts)
    server = _load(pki.server_cert, pki.server_key)
    if server is None or not _usable(server[0], ca_cert) or _cert_sans(server[0]) != set(sans):
        cert, key = _issue(ca_cert, ca_key, _name("kybern-apiserver"), server=True, sans=sans)
        write_atomic(pki.server_key, _key_pem(key), 0o600)
        write_atomic(pki.server_cert, _cert_pem(cert), 0o644)
    admin = _load(pki.admin_cert, pki.admin_key)
    if admin is None or not _usable(admin[0], ca_cert):
        cert, key = _issue(ca_cert, ca_key, _name(ADMIN_USER, ADMIN_GROUPS), server=False)
        write_atomic(pki.admin_key, _key_pem(key), 0o600)
        write_atomic(pki.admin_cert, _cert_pem(cert), 0o644)
    if not pki.sa_key.exists():
        write_atomic(pki.sa_key, _key_pem(ec.generate_private_key(ec.SECP256R1())), 0o600)
    if not pki.token_file.exists() or not pki.token_file.read_text().strip():
        write_atomic(pki.token_file, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
    return pki


def ensure_front_proxy(pki: Pki) -> None:
    """Create or reuse the front-proxy CA and the aggregator's client certificate in `pki.dir`
    (reissued when missing, not signed by that CA, or near expiry)."""
    loaded = _load(pki.front_proxy_ca_cert, pki.front_proxy_ca_key)
    if loaded is None:
        ca_cert, ca_key = _new_ca("kybern-front-proxy-ca")
        write_atomic(pki.front_proxy_ca_key, _key_pem(ca_key), 0o600)
        write_atomic(pki.front_proxy_ca_cert, _cert_pem(ca_cert), 0o644)
    else:
        ca_cert, ca_key = loaded
    client = _load(pki.front_proxy_client_cert, pki.front_proxy_client_key)
    if client is None or not _usable(client[0], ca_cert):
        cert, key = _issue(ca_cert, ca_key, _name(FRONT_PROXY_CLIENT), server=False)
        write_atomic(pki.front_proxy_client_key, _key_pem(key), 0o600)
        write_atomic(pki.front_proxy_client_cert, _cert_pem(cert), 0o644)


# ---------------------------------------------------------------- authentication, kubeconfig


def _subject_from_der(der: bytes) -> tuple[str, list[str]]:
    subject = x509.load_der_x509_certificate(der).subject
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else "", [str(o.value) for o in orgs])


def user_from_cert(cert: dict[str, Any] | bytes | None) -> tuple[str, list[str]] | None:
    """(user, groups) of a peer certificate already verified by the TLS layer, given as the
    `getpeercert()` dict or DER bytes: CN is the user, each O a group, plus
    `system:authenticated`. None without a certificate or with an empty CN (as Kubernetes)."""
    if not cert:
        return None
    if isinstance(cert, bytes | bytearray):
        user, groups = _subject_from_der(bytes(cert))
    else:
        user, groups = "", []
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName" and not user:
                    user = value
                elif key == "organizationName":
                    groups.append(value)
    if not user:
        return None
    return user, [*groups, *([] if AUTHENTICATED in groups else [AUTHENTICATED])]


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, server_url: str, pki: Pki, context: str = "kybern", use_token: bool = False
) -> None:
    """Write (atomically, mode 0600) an admin kubeconfig for `server_url` with the CA and the
    admin client certificate embedded, or the static token when `use_token`."""
    user_name = f"{context}-admin"
    user: dict[str, str] = (
        {"token": pki.token}
        if use_token
        else {
            "client-certificate-data": _b64(pki.admin_cert),
            "client-key-data": _b64(pki.admin_key),
        }
    )
    cluster = {"server": server_url, "certificate-authority-data": _b64(pki.ca_cert)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": user_name, "namespace": "default"},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)
