"""Serving certificates for extension API servers: `self_signed(hosts)` makes a throw-away CA
(EC P-256) and a serving certificate for the given DNS names and IP addresses, whose CA is what
the APIService's `caBundle` carries, so the aggregator verifies the server it proxies to.
`ServingCert.load` reads an existing certificate/key (and CA) from files instead. Everything
here is pure computation or small file reads; callers run it off the event loop."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAYS = 365


@dataclass(frozen=True)
class ServingCert:
    """PEM material of a serving certificate: `ca_pem` goes into the APIService's caBundle."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    @classmethod
    def load(
        cls, cert_file: str | Path, key_file: str | Path, ca_file: str | Path = ""
    ) -> ServingCert:
        """From files; without a CA file the certificate is its own bundle (self-signed)."""
        cert = Path(cert_file).read_bytes()
        return cls(
            cert, Path(key_file).read_bytes(), Path(ca_file).read_bytes() if ca_file else cert
        )


def service_names(namespace: str, name: str) -> list[str]:
    """The DNS names the aggregator may verify for a service (`<name>.<namespace>.svc` first)."""
    return [
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc.cluster.local",
    ]


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def self_signed(hosts: list[str], *, cn: str = "kybern-extension-apiserver") -> ServingCert:
    """A new CA and a serving certificate for `hosts` (DNS names or IP addresses), plus
    localhost and 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cn}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in [*hosts, "localhost", "127.0.0.1"]:
        san = _san(h)
        if san not in sans:
            sans.append(san)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCert(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca.public_bytes(serialization.Encoding.PEM),
    )
