"""The agent's serving certificates: self-signed when no CA is at hand (kept across starts),
issued by the cluster CA when it is, and the choice of files and client CA for its server."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from kybern.agent import serving, streaming_tls
from kybern.apiserver import certs


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_self_signed_certificate_is_kept_while_current(tmp_path: Path) -> None:
    cert, key = streaming_tls.ensure_serving_cert(tmp_path, None, None, "n1", ["127.0.0.1"])
    c = load(cert)
    c.verify_directly_issued_by(c)
    assert c.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "n1" in sans.get_values_for_type(x509.DNSName)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    again, _ = streaming_tls.ensure_serving_cert(tmp_path, None, None, "n1", ["127.0.0.1"])
    assert load(again).serial_number == c.serial_number
    other, _ = streaming_tls.ensure_serving_cert(tmp_path, None, None, "n1", ["10.0.0.9"])
    assert load(other).serial_number != c.serial_number  # new hosts: a new certificate


def test_certificate_from_the_cluster_ca(tmp_path: Path) -> None:
    pki = certs.ensure_pki(tmp_path / "pki", hosts=[])
    cert, _ = streaming_tls.ensure_serving_cert(
        tmp_path / "agent", pki.ca_cert, pki.ca_key, "n1", ["127.0.0.1"]
    )
    load(cert).verify_directly_issued_by(load(pki.ca_cert))


def test_files_need_both_cert_and_key(tmp_path: Path) -> None:
    sc = serving.ServingConfig(cert_file=tmp_path / "c.crt")
    with pytest.raises(ValueError, match="both"):
        serving._files(sc, "n1", [], tmp_path, b"CA")


def test_client_ca_from_the_kubeconfig_or_refused(tmp_path: Path) -> None:
    sc = serving.ServingConfig()
    _, _, ca = serving._files(sc, "n1", [], tmp_path, b"-----CA-----\n")
    assert ca.read_bytes() == b"-----CA-----\n"
    given = serving.ServingConfig(client_ca_file=tmp_path / "mine.crt")
    assert serving._files(given, "n1", [], tmp_path, b"")[2] == tmp_path / "mine.crt"
    with pytest.raises(ValueError, match="--client-ca-file"):
        serving._files(sc, "n1", [], tmp_path / "other", b"")
