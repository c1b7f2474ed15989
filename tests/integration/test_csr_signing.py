"""The csrsigning controller of `kybern server` with the real kubectl: an approved request of a
built-in signer gets a certificate from the cluster CA (client and kubelet-serving, with the
requested duration and names), a denied one gets none, and a kubelet-serving request without
names is marked Failed by the signer."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, running_server, unique, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kybern.agent import bootstrap
from kybern.api import registry
from kybern.client import rest
from kybern.controllers import manager

ONLY_SIGNING = (
    "--disable-controllers=" + ",".join(n for n in manager.NAMES if n != "csrsigning"),
    "--disable-scheduler",
)
Obj = dict[str, Any]
CSRS = registry.Registry().lookup("certificates.k8s.io", "v1", "certificatesigningrequests")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(args=ONLY_SIGNING) as srv:
        yield srv


def request_pem(
    cn: str, orgs: list[str], dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def submit(server: Server, pem: bytes, signer: str, usages: list[str], **spec: Any) -> str:
    name = unique("csr")
    obj = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": signer,
            "usages": usages,
            **spec,
        },
    }
    server.kubectl("create", "-f", "-", input=json.dumps(obj))
    return name


def issued(server: Server, name: str) -> x509.Certificate:
    def cert() -> str:
        return str(
            (server.kubectl_json("get", "csr", name).get("status") or {}).get("certificate") or ""
        )

    text = wait_for(cert, 30.0, message=f"a certificate for {name}")
    return x509.load_pem_x509_certificate(base64.b64decode(text))


def ca(server: Server) -> x509.Certificate:
    return x509.load_pem_x509_certificate((server.data_dir / "pki" / "ca.crt").read_bytes())


def test_approved_client_request_is_signed_by_the_cluster_ca(server: Server) -> None:
    name = submit(
        server, request_pem("alice", ["dev"]), "kubernetes.io/kube-apiserver-client",
        ["client auth", "digital signature"], expirationSeconds=3600,
    )  # fmt: skip
    server.kubectl("certificate", "approve", name)
    cert = issued(server, name)
    cert.verify_directly_issued_by(ca(server))
    assert cert.subject.rfc4514_string() == "CN=alice,O=dev"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(minutes=64) <= life <= dt.timedelta(minutes=66)  # 1 h + 5 min backdate


def test_kubelet_serving_certificate_keeps_its_names(server: Server) -> None:
    pem = request_pem("system:node:n1", ["system:nodes"], dns=("n1",), ips=("127.0.0.1",))
    name = submit(
        server, pem, "kubernetes.io/kubelet-serving",
        ["digital signature", "server auth"],
    )  # fmt: skip
    server.kubectl("certificate", "approve", name)
    cert = issued(server, name)
    cert.verify_directly_issued_by(ca(server))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_unapproved_and_denied_requests_get_nothing(server: Server) -> None:
    signer, usages = "kubernetes.io/kube-apiserver-client", ["client auth"]
    denied = submit(server, request_pem("bob", []), signer, usages)
    pending = submit(server, request_pem("carol", []), signer, usages)
    server.kubectl("certificate", "deny", denied)
    marker = submit(server, request_pem("dave", []), signer, usages)
    server.kubectl("certificate", "approve", marker)
    issued(server, marker)  # the controller has handled what came before it
    for name in (denied, pending):
        status = server.kubectl_json("get", "csr", name).get("status") or {}
        assert not status.get("certificate"), name


def test_serving_request_without_names_fails_validation(server: Server) -> None:
    name = submit(
        server, request_pem("system:node:n2", ["system:nodes"]), "kubernetes.io/kubelet-serving",
        ["digital signature", "server auth"],
    )  # fmt: skip
    server.kubectl("certificate", "approve", name)

    def failed() -> Obj | None:
        conds = (server.kubectl_json("get", "csr", name).get("status") or {}).get("conditions")
        return next((c for c in conds or [] if c["type"] == "Failed"), None)

    cond = wait_for(failed, 30.0, message="the Failed condition")
    assert cond["reason"] == "SignerValidationFailure"
    assert "DNS or IP subject alternative name" in cond["message"]
    assert not (server.kubectl_json("get", "csr", name).get("status") or {}).get("certificate")


async def _bootstrap(server: Server, dir: Path, approve: bool) -> tuple[Path, Path]:
    """The agent's bootstrap against the server; the test approves (or denies) its request."""
    cfg = await asyncio.to_thread(rest.load_kubeconfig, server.kubeconfig)
    async with rest.Client(cfg) as c:
        before = {i["metadata"]["name"] for i in (await c.list(CSRS)).get("items") or []}
        task = asyncio.create_task(
            bootstrap.ensure(c, "n9", ["127.0.0.1"], dir, cfg.ca_data, poll=0.1)
        )

        async def new_request() -> str:
            deadline = asyncio.get_running_loop().time() + 30.0
            while asyncio.get_running_loop().time() < deadline:
                assert not task.done(), task
                names = {i["metadata"]["name"] for i in (await c.list(CSRS)).get("items") or []}
                if names - before:
                    return (names - before).pop()
                await asyncio.sleep(0.1)
            raise AssertionError("no certificate request came")

        name = await new_request()
        verb = "approve" if approve else "deny"
        await asyncio.to_thread(server.kubectl, "certificate", verb, name)
        return await asyncio.wait_for(task, 30.0)


def test_agent_gets_its_serving_certificate_through_the_api(server: Server, tmp_path: Path) -> None:
    cert_file, key_file = asyncio.run(_bootstrap(server, tmp_path, approve=True))
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    cert.verify_directly_issued_by(ca(server))
    assert cert.subject.rfc4514_string() == "CN=system:node:n9,O=system:nodes"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    async def again() -> tuple[Path, Path]:  # current: used as it is, no new request
        cfg = await asyncio.to_thread(rest.load_kubeconfig, server.kubeconfig)
        async with rest.Client(cfg) as c:
            count = len((await c.list(CSRS)).get("items") or [])
            got = await bootstrap.ensure(c, "n9", ["127.0.0.1"], tmp_path, cfg.ca_data)
            assert len((await c.list(CSRS)).get("items") or []) == count
            return got

    assert asyncio.run(again()) == (cert_file, key_file)


def test_denied_bootstrap_stops_with_the_reason(server: Server, tmp_path: Path) -> None:
    with pytest.raises(bootstrap.BootstrapError, match="denied"):
        asyncio.run(_bootstrap(server, tmp_path, approve=False))
