"""The csrsigning controller (kube-controller-manager's): signs approved CertificateSigningRequests
of the built-in signers with the cluster CA — `kubernetes.io/kube-apiserver-client` (any user),
`kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kubelet-serving` (a node's
`system:node:<name>` in group `system:nodes`) — after checking the request against the signer's
rules (usages, subject, subject alternative names), as Kubernetes does. The certificate goes
to `status.certificate` through the status subresource, valid for `spec.expirationSeconds`
(default a year, never past the CA's own end) from five minutes ago; a request the signer
refuses gets the condition `Failed` (reason `SignerValidationFailure`). Denied, failed and
already issued requests are left alone; so is everything when no CA was given."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common

log = logging.getLogger("kybern.controllers")
Obj = dict[str, Any]
CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
SIGNERS = (CLIENT, KUBELET_CLIENT, KUBELET_SERVING)
DEFAULT_DURATION = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)
_USAGES: dict[str, frozenset[str]] = {
    CLIENT: frozenset({"client auth", "digital signature", "key encipherment"}),
    KUBELET_CLIENT: frozenset({"client auth", "digital signature", "key encipherment"}),
    KUBELET_SERVING: frozenset({"server auth", "digital signature", "key encipherment"}),
}


class SignerError(ValueError):
    """The signer does not sign this request (its message goes into the Failed condition)."""


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: Any

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        return cls(
            x509.load_pem_x509_certificate(cert_pem),
            serialization.load_pem_private_key(key_pem, password=None),
        )


def _node_subject(req: x509.CertificateSigningRequest) -> None:
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    cns = [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if orgs != ["system:nodes"]:
        raise SignerError("subject organization is not system:nodes")
    if len(cns) != 1 or not str(cns[0]).startswith("system:node:"):
        raise SignerError('subject common name does not begin with "system:node:"')


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def check(signer: str, req: x509.CertificateSigningRequest, usages: list[str]) -> None:
    """Raise SignerError unless `signer` signs this request with these usages."""
    allowed = _USAGES[signer]
    bad = sorted(set(usages) - allowed)
    if bad:
        raise SignerError(f"unsupported key usages: {', '.join(bad)}")
    needed = "server auth" if signer == KUBELET_SERVING else "client auth"
    if needed not in usages:
        raise SignerError(f'missing required usage: "{needed}"')
    sans = _sans(req)
    if signer == KUBELET_CLIENT:
        _node_subject(req)
        if sans is not None and len(sans):
            raise SignerError("subject alternative names are not allowed")
    elif signer == KUBELET_SERVING:
        _node_subject(req)
        dns = sans.get_values_for_type(x509.DNSName) if sans else []
        ips = sans.get_values_for_type(x509.IPAddress) if sans else []
        if not dns and not ips:
            raise SignerError("at least one DNS or IP subject alternative name is required")
        if sans is not None and (
            sans.get_values_for_type(x509.RFC822Name)
            or sans.get_values_for_type(x509.UniformResourceIdentifier)
        ):
            raise SignerError("email and URI subject alternative names are not allowed")


def sign(
    ca: CA,
    signer: str,
    request_pem: bytes,
    usages: list[str],
    expiration_seconds: int | None,
    now: dt.datetime,
) -> bytes:
    """The PEM certificate for a CSR the signer accepts (SignerError otherwise)."""
    try:
        req = x509.load_pem_x509_csr(request_pem)
    except ValueError as e:
        raise SignerError(f"unable to parse the request: {e}") from None
    if not req.is_signature_valid:
        raise SignerError("the request's signature is not valid")
    check(signer, req, usages)
    duration = dt.timedelta(seconds=expiration_seconds) if expiration_seconds else DEFAULT_DURATION
    not_after = min(now + duration, ca.cert.not_valid_after_utc)
    ekus = [
        oid
        for usage, oid in (
            ("client auth", ExtendedKeyUsageOID.CLIENT_AUTH),
            ("server auth", ExtendedKeyUsageOID.SERVER_AUTH),
        )
        if usage in usages
    ]
    key_usage = x509.KeyUsage(
        digital_signature="digital signature" in usages,
        content_commitment=False,
        key_encipherment="key encipherment" in usages,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca.cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    sans = _sans(req)
    if sans is not None and len(sans):
        builder = builder.add_extension(sans, critical=False)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _condition(csr: Obj, kind: str) -> bool:
    conds = (csr.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conds)


class CSRSigningController(common.Base):
    name = "csrsigning"
    component = "certificate-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        material = ctx.options.signing_ca
        self.ca = CA.load(*material) if material is not None else None
        self.csrs = common.shared(ctx, common.CSRS)
        self.csrs.add_handlers(
            informer.Handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        )

    async def reconcile(self, key: str) -> common.Result | None:
        csr = self.csrs.get(key)
        if csr is None or self.ca is None:
            return None
        spec, status = csr.get("spec") or {}, csr.get("status") or {}
        signer = str(spec.get("signerName") or "")
        if (
            signer not in SIGNERS
            or status.get("certificate")
            or not _condition(csr, "Approved")
            or _condition(csr, "Denied")
            or _condition(csr, "Failed")
        ):
            return None
        now = dt.datetime.now(dt.UTC)
        new_status = dict(status)
        try:
            pem = sign(
                self.ca,
                signer,
                base64.b64decode(spec.get("request") or ""),
                list(spec.get("usages") or []),
                spec.get("expirationSeconds"),
                now,
            )
            new_status["certificate"] = base64.b64encode(pem).decode()
        except SignerError as e:
            stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            new_status["conditions"] = [
                *(status.get("conditions") or []),
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "SignerValidationFailure",
                    "message": str(e),
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp,
                },
            ]
        try:
            await self.client.update_status(common.CSRS, {**csr, "status": new_status})
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise  # a conflict: the queue retries with the newer object
        log.info("csrsigning: %s %s", key, "signed" if "certificate" in new_status else "failed")
        return None
