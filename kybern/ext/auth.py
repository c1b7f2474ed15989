"""Authentication of requests reaching an extension API server, as Kubernetes' delegated
authentication does it: the API server's aggregator connects with a client certificate signed
by the front-proxy CA (`requestheader-client-ca-file`) whose CN is an allowed name
(`requestheader-allowed-names`, any name when empty), and names the user in the request headers
(`X-Remote-User`, each `X-Remote-Group`, `X-Remote-Extra-<key>`; the header names come from the
`kube-system/extension-apiserver-authentication` ConfigMap too). Anything else — no
certificate, a certificate from another CA, a spoofed `X-Remote-User` over the cluster's own
client certificates — is refused, unless the server accepts direct client certificates from
`client-ca-file` (off by default). `AuthConfig.load` reads the ConfigMap; `Authenticator`
decides per request (signature checks are cached per certificate)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from multidict import MultiMapping

from kybern.api import errors, registry
from kybern.client import rest

CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
AUTHENTICATED = "system:authenticated"
_CONFIGMAPS = next(r for r in registry.BUILTIN if r.plural == "configmaps")
_CACHE_SIZE = 1024


@dataclass(frozen=True)
class User:
    """Who a request is from, as the API server authenticated them."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class AuthError(Exception):
    """Not authenticated: answered 401 Unauthorized with this message."""


def _list(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key, "")
    if not raw:
        return ()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


@dataclass(frozen=True)
class AuthConfig:
    """The request-header settings and CAs published by the API server."""

    client_ca: str  # PEM; signs clients' own certificates
    requestheader_ca: str  # PEM; signs the front proxy's client certificate
    allowed_names: tuple[str, ...] = ("front-proxy-client",)
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> AuthConfig:
        """From the ConfigMap's data (JSON-list values, as kube-apiserver writes them)."""
        return cls(
            client_ca=data.get("client-ca-file", ""),
            requestheader_ca=data.get("requestheader-client-ca-file", ""),
            allowed_names=_list(data, "requestheader-allowed-names"),
            username_headers=_list(data, "requestheader-username-headers"),
            group_headers=_list(data, "requestheader-group-headers"),
            extra_prefixes=_list(data, "requestheader-extra-headers-prefix"),
        )

    @classmethod
    async def load(cls, client: rest.Client) -> AuthConfig:
        """Read `kube-system/extension-apiserver-authentication` through `client`."""
        ns, name = CONFIGMAP
        cm = await client.get(_CONFIGMAPS, name, ns)
        cfg = cls.from_data(cm.get("data") or {})
        if not cfg.requestheader_ca:
            raise errors.StatusError(
                500, "InternalError", f"{ns}/{name} has no requestheader-client-ca-file"
            )
        return cfg

    def trusted_cas(self) -> str:
        """Every CA the TLS layer accepts client certificates from (the app decides which)."""
        return "\n".join(p.strip() for p in (self.requestheader_ca, self.client_ca) if p.strip())


def _certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


def _issued_by(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def _cn(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def unescape_extra_key(key: str) -> str:
    """A header's extra key back to the original (percent-decoded, lowercased)."""
    return urllib.parse.unquote(key).lower()


class Authenticator:
    """Decides who a request is from (see the module docstring)."""

    def __init__(self, cfg: AuthConfig, *, accept_client_certs: bool = False) -> None:
        self.cfg = cfg
        self.accept_client_certs = accept_client_certs
        self._proxy_cas = _certs(cfg.requestheader_ca)
        self._client_cas = _certs(cfg.client_ca)
        self._verdicts: dict[bytes, tuple[str, str, tuple[str, ...]]] = {}

    def _classify(self, der: bytes) -> tuple[str, str, tuple[str, ...]]:
        """("proxy" | "client" | "", CN, organizations) of a peer certificate."""
        verdict = self._verdicts.get(der)
        if verdict is None:
            cert = x509.load_der_x509_certificate(der)
            orgs = tuple(
                str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            )
            kind = ""
            if _issued_by(cert, self._proxy_cas):
                kind = "proxy"
            elif _issued_by(cert, self._client_cas):
                kind = "client"
            verdict = (kind, _cn(cert), orgs)
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[der] = verdict
        return verdict

    def authenticate(self, peer_der: bytes | None, headers: MultiMapping[str]) -> User:
        """The user of a request from the peer certificate (DER, already verified by TLS)
        and its headers; AuthError when the request did not come through the front proxy."""
        if not peer_der:
            raise AuthError("a client certificate from the API server's front proxy is required")
        kind, cn, orgs = self._classify(peer_der)
        if kind == "client" and self.accept_client_certs and cn:
            return User(cn, (*orgs, *(() if AUTHENTICATED in orgs else (AUTHENTICATED,))))
        if kind != "proxy":
            raise AuthError(
                "requests must come through the API server's aggregator: the client "
                "certificate is not signed by the front-proxy CA"
            )
        if self.cfg.allowed_names and cn not in self.cfg.allowed_names:
            raise AuthError(f"front-proxy client certificate CN {cn!r} is not an allowed name")
        return user_from_headers(self.cfg, headers)


def user_from_headers(cfg: AuthConfig, headers: MultiMapping[str]) -> User:
    """The user named by the request headers (AuthError without a user name)."""
    name = next((v for h in cfg.username_headers for v in headers.getall(h, []) if v.strip()), "")
    if not name:
        raise AuthError("no user name in the request headers")
    groups = [v for h in cfg.group_headers for v in headers.getall(h, [])]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    extra: dict[str, list[str]] = {}
    prefixes = [p.lower() for p in cfg.extra_prefixes]
    for k, v in headers.items():
        low = k.lower()
        for p in prefixes:
            if low.startswith(p) and len(low) > len(p):
                extra.setdefault(unescape_extra_key(k[len(p) :]), []).append(v)
                break
    return User(name, tuple(groups), {k: tuple(v) for k, v in extra.items()})
