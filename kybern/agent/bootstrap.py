"""The agent's serving certificate through the certificates API, as a kubelet with
`--rotate-server-certificates` gets it: the agent makes a key and a CertificateSigningRequest
for signer `kubernetes.io/kubelet-serving` (subject `system:node:<name>` in `system:nodes`, the
node's names and addresses, usages digital signature and server auth), logs the
`kubectl certificate approve` to run, and waits until the cluster's signer (kybern's
`csrsigning` controller) has issued it; a denied or failed request stops the agent with the
reason. The pair is kept in the cert dir and used again while it is current (issued by the
cluster CA for the same names, not close to its end), so a restart asks nothing."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable
from pathlib import Path

from kybern.agent import streaming_tls
from kybern.api import registry
from kybern.client import rest

log = logging.getLogger("kybern.agent")
SIGNER = "kubernetes.io/kubelet-serving"
USAGES = ["digital signature", "server auth"]
CERT_FILE = "agent-serving-bootstrap.crt"
KEY_FILE = "agent-serving-bootstrap.key"
_CSRS = registry.Registry().lookup("certificates.k8s.io", "v1", "certificatesigningrequests")


class BootstrapError(ValueError):
    """The certificate request was denied or failed."""


def _current(cert_dir: Path, ca: bytes, node_name: str, hosts: list[str]) -> bool:
    return (cert_dir / KEY_FILE).exists() and streaming_tls.is_current(
        cert_dir / CERT_FILE, ca, node_name, hosts
    )


async def ensure(
    client: rest.Client,
    node_name: str,
    hosts: Iterable[str],
    cert_dir: Path,
    ca: bytes,
    *,
    poll: float = 1.0,
) -> tuple[Path, Path]:
    """(cert file, key file) of a serving certificate issued through the API (`ca`: the
    cluster CA that must have issued it)."""
    assert _CSRS is not None
    names = list(hosts)
    cert_file, key_file = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    if await asyncio.to_thread(_current, cert_dir, ca, node_name, names):
        return cert_file, key_file
    csr_pem, key_pem = await asyncio.to_thread(streaming_tls.serving_request, node_name, names)
    created = await client.create(
        _CSRS,
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {
                "request": base64.b64encode(csr_pem).decode(),
                "signerName": SIGNER,
                "usages": USAGES,
            },
        },
    )
    name = created["metadata"]["name"]
    log.warning(
        "node %s waits for its serving certificate: kubectl certificate approve %s",
        node_name,
        name,
    )
    while True:
        status = (await client.get(_CSRS, name)).get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Denied", "Failed") and cond.get("status", "True") == "True":
                raise BootstrapError(
                    f"certificate request {name} {cond['type'].lower()}: "
                    f"{cond.get('reason', '')} {cond.get('message', '')}".strip()
                )
        if status.get("certificate"):
            cert = base64.b64decode(status["certificate"])
            await asyncio.to_thread(cert_dir.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(streaming_tls.write_file, key_file, key_pem, 0o600)
            await asyncio.to_thread(streaming_tls.write_file, cert_file, cert, 0o644)
            log.info("node %s: serving certificate issued (%s)", node_name, name)
            return cert_file, key_file
        await asyncio.sleep(poll)
