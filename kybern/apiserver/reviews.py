"""APIs that are answered, not stored: SelfSubjectAccessReview, SubjectAccessReview and
LocalSubjectAccessReview (`kubectl auth can-i` — allowed until RBAC is enforced),
SelfSubjectRulesReview, SelfSubjectReview (`kubectl auth whoami`), TokenReview, and the
`serviceaccounts/token` subresource (TokenRequest, `kubectl create token`)."""

from __future__ import annotations

import datetime
from typing import Any

from kybern.api import errors, registry
from kybern.apiserver import tokens

Obj = dict[str, Any]
User = tuple[str, list[str]]

_AUTHZ = "authorization.k8s.io/v1"
_AUTHN = "authentication.k8s.io/v1"
VIRTUAL: tuple[registry.Resource, ...] = tuple(
    registry.Resource(
        group=gv.split("/")[0],
        version="v1",
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        verbs=("create",),
        has_spec=False,
        virtual=True,
    )
    for gv, kind, plural, namespaced in (
        (_AUTHZ, "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
        (_AUTHZ, "SubjectAccessReview", "subjectaccessreviews", False),
        (_AUTHZ, "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
        (_AUTHZ, "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
        (_AUTHN, "SelfSubjectReview", "selfsubjectreviews", False),
        (_AUTHN, "TokenReview", "tokenreviews", False),
    )
)


def answer(res: registry.Resource, body: Obj, user: User, issuer: tokens.TokenIssuer) -> Obj:
    """The created (never stored) review object with its status filled in."""
    out = dict(body)
    out["apiVersion"] = res.api_version
    out["kind"] = res.kind
    out.setdefault("metadata", {})
    spec = out.get("spec") or {}
    if res.kind.endswith("SubjectAccessReview"):
        if not (spec.get("resourceAttributes") or spec.get("nonResourceAttributes")):
            raise errors.invalid(
                res.kind,
                res.group,
                "",
                [
                    errors.required(
                        "spec.resourceAttributes",
                        "exactly one of nonResourceAttributes or resourceAttributes must be "
                        "specified",
                    )
                ],
            )
        out["status"] = {
            "allowed": True,
            "reason": "kybern allows every authenticated user until RBAC is enforced",
        }
    elif res.kind == "SelfSubjectRulesReview":
        out["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    elif res.kind == "SelfSubjectReview":
        out["status"] = {"userInfo": {"username": user[0], "groups": user[1]}}
    elif res.kind == "TokenReview":
        found = issuer.verify(str(spec.get("token") or ""))
        out["status"] = (
            {
                "authenticated": True,
                "user": {"username": found[0], "groups": found[1]},
                "audiences": spec.get("audiences") or [tokens.ISSUER],
            }
            if found
            else {"authenticated": False, "error": "invalid token"}
        )
    return out


def token_request(sa: Obj, body: Obj, issuer: tokens.TokenIssuer) -> Obj:
    """A TokenRequest for the service account `sa`, answered with a signed token."""
    spec = dict(body.get("spec") or {})
    seconds = int(spec.get("expirationSeconds") or 3600)
    if seconds < 600:
        raise errors.invalid(
            "TokenRequest",
            "authentication.k8s.io",
            "",
            [
                errors.invalid_value(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration less than 10 minutes",
                )
            ],
        )
    meta = sa["metadata"]
    token, exp = issuer.issue(
        meta["namespace"],
        meta["name"],
        meta.get("uid", ""),
        audiences=spec.get("audiences") or None,
        expiration_seconds=seconds,
        bound=spec.get("boundObjectRef"),
    )
    spec["expirationSeconds"] = seconds
    spec.setdefault("audiences", [tokens.ISSUER])
    spec.setdefault("boundObjectRef", None)
    when = datetime.datetime.fromtimestamp(exp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "creationTimestamp": None,
        },
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": when},
    }
