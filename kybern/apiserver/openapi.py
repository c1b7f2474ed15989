"""OpenAPI v3 documents (`/openapi/v3` index and `/openapi/v3/<group-version>`), generated from
the registry: every path and verb of every served resource, with
`x-kubernetes-group-version-kind`, `x-kubernetes-action` and the query parameters each verb
accepts (kubectl reads them to know that the server validates fields). Component schemas are
not published yet, so clients fall back to their built-in knowledge of the kinds."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from kybern.api import registry

_Q = {"in": "query", "schema": {"type": "string"}, "uniqueItems": True}
_WRITE_PARAMS = [
    {"name": "dryRun", **_Q},
    {"name": "fieldManager", **_Q},
    {"name": "fieldValidation", **_Q},
]
_LIST_PARAMS = [
    {"name": n, **_Q}
    for n in (
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    )
]
_JSON_BODY = {"content": {"*/*": {"schema": {"type": "object"}}}, "required": True}
_OK = {
    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
}


def _op(
    r: registry.Resource,
    action: str,
    params: list[dict[str, Any]],
    body: bool = False,
    sub: str = "",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{action}{r.kind}{sub.capitalize()}",
        "parameters": params,
        "responses": _OK,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    }
    if body:
        op["requestBody"] = _JSON_BODY
    return op


def group_version_document(reg: registry.Registry, group: str, version: str) -> dict[str, Any]:
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    for r in sorted(reg.resources_in(group, version), key=lambda r: r.plural):
        base = (
            f"{root}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{root}/{r.plural}"
        )
        paths[base] = {
            "get": _op(r, "list", _LIST_PARAMS),
            "post": _op(r, "post", _WRITE_PARAMS, body=True),
            "delete": _op(r, "deletecollection", _LIST_PARAMS + _WRITE_PARAMS),
        }
        paths[base + "/{name}"] = {
            "get": _op(r, "get", []),
            "put": _op(r, "put", _WRITE_PARAMS, body=True),
            "patch": _op(r, "patch", [*_WRITE_PARAMS, {"name": "force", **_Q}], body=True),
            "delete": _op(r, "delete", _WRITE_PARAMS),
        }
        for sub in sorted(r.subresources & {"status", "scale"}):
            paths[f"{base}/{{name}}/{sub}"] = {
                "get": _op(r, "get", [], sub=sub),
                "put": _op(r, "put", _WRITE_PARAMS, body=True, sub=sub),
                "patch": _op(r, "patch", _WRITE_PARAMS, body=True, sub=sub),
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


class OpenAPI:
    """Serves the v3 documents, rebuilt when the registry changes."""

    def __init__(self, reg: registry.Registry) -> None:
        self.registry = reg
        self._generation = -1
        self._docs: dict[str, bytes] = {}

    def document(self, path: str) -> bytes | None:
        if self._generation != self.registry.generation:
            docs: dict[str, bytes] = {}
            index: dict[str, Any] = {}
            for g, versions in self.registry.group_versions().items():
                for v in versions:
                    rel = f"apis/{g}/{v}" if g else f"api/{v}"
                    body = orjson.dumps(group_version_document(self.registry, g, v))
                    docs[f"/openapi/v3/{rel}"] = body
                    digest = hashlib.sha512(body).hexdigest()[:32].upper()
                    index[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
            docs["/openapi/v3"] = orjson.dumps({"paths": index})
            self._docs = docs
            self._generation = self.registry.generation
        return self._docs.get(path.rstrip("/"))
