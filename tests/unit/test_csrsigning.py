"""The csrsigning rules per signer (usages, node subjects, names) and the issued certificate's
life, checked with a CA made for the test."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kybern.controllers import csrsigning as cs

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make_ca(days: int = 3650) -> cs.CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cs.CA(cert, key)


def request(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if dns:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("signer", "pem", "usages", "message"),
    [
        (cs.CLIENT, request("u"), ["server auth"], "unsupported key usages: server auth"),
        (cs.CLIENT, request("u"), ["digital signature"], 'missing required usage: "client auth"'),
        (cs.KUBELET_CLIENT, request("u", ("system:nodes",)), ["client auth"], "common name"),
        (cs.KUBELET_CLIENT, request("system:node:n", ("x",)), ["client auth"], "organization"),
        (
            cs.KUBELET_CLIENT, request("system:node:n", ("system:nodes",), ("n",)),
            ["client auth"], "subject alternative names are not allowed",
        ),
        (
            cs.KUBELET_SERVING, request("system:node:n", ("system:nodes",)),
            ["server auth"], "DNS or IP",
        ),
    ],
)  # fmt: skip
def test_signer_rules(signer: str, pem: bytes, usages: list[str], message: str) -> None:
    with pytest.raises(cs.SignerError, match=message):
        cs.sign(make_ca(), signer, pem, usages, None, NOW)


def test_life_is_the_request_s_and_never_past_the_ca() -> None:
    ca = make_ca(days=10)
    pem = request("system:node:n", ("system:nodes",), ("n",))
    one_day = cs.sign(ca, cs.KUBELET_SERVING, pem, ["server auth"], 86400, NOW)
    cert = x509.load_pem_x509_certificate(one_day)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=1)
    assert cert.not_valid_before_utc == NOW - cs.BACKDATE
    default = x509.load_pem_x509_certificate(
        cs.sign(ca, cs.KUBELET_SERVING, pem, ["server auth"], None, NOW)
    )
    assert default.not_valid_after_utc == ca.cert.not_valid_after_utc  # a year, capped


def test_garbage_request_is_refused() -> None:
    with pytest.raises(cs.SignerError, match="unable to parse"):
        cs.sign(make_ca(), cs.CLIENT, b"not a csr", ["client auth"], None, NOW)
