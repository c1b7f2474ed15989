"""Service account tokens: signed JWTs (ES256, the key in `pki/sa.key`) issued by the
`serviceaccounts/token` subresource (TokenRequest, `kubectl create token`) with Kubernetes'
claims, and verified as bearer tokens (user `system:serviceaccount:<ns>:<name>`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://kubernetes.default.svc.cluster.local"


class TokenIssuer:
    def __init__(self, key_file: Path, issuer: str = ISSUER) -> None:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
        bound: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """(token, expiry as unix time) for the service account `namespace/name`."""
        now = int(time.time())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if bound:
            k8s[bound["kind"].lower()] = {
                "name": bound.get("name", ""),
                "uid": bound.get("uid", ""),
            }
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": audiences or [self.issuer],
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
        }
        return jwt.encode(claims, self._key, algorithm="ES256"), exp

    def verify(self, token: str, audience: str = ISSUER) -> tuple[str, list[str]] | None:
        """(user, groups) for a valid token of ours, else None."""
        try:
            claims = jwt.decode(
                token, self._public, algorithms=["ES256"], audience=audience, issuer=self.issuer
            )
        except jwt.PyJWTError:
            return None
        ns = (claims.get("kubernetes.io") or {}).get("namespace", "")
        return str(claims["sub"]), [
            "system:serviceaccounts",
            f"system:serviceaccounts:{ns}",
            "system:authenticated",
        ]
