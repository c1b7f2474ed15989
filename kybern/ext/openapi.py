"""A minimal OpenAPI v3 document for an extension API server's group version: the get, list
and watch operations of each resource (with the `x-kubernetes-action` and
`x-kubernetes-group-version-kind` extensions kubectl reads) and a schema per kind — the
resource's own, or an object with apiVersion, kind and metadata that keeps unknown fields."""

from __future__ import annotations

from typing import Any

from kybern.ext.resources import Resource

Obj = dict[str, Any]


def schema_name(group: str, version: str, kind: str) -> str:
    """`io.k8s.metrics.v1beta1.NodeMetrics` for metrics.k8s.io/v1beta1 NodeMetrics."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _op(action: str, op_id: str, ref: str, gvk: Obj, params: list[str]) -> Obj:
    return {
        "operationId": op_id,
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}
                },
            },
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }


def document(group: str, version: str, resources: list[Resource]) -> Obj:
    root = f"/apis/{group}/{version}"
    paths: Obj = {}
    schemas: Obj = {}
    selectors = ["labelSelector", "fieldSelector", "resourceVersion", "watch", "timeoutSeconds"]
    for r in resources:
        gvk = {"group": group, "version": version, "kind": r.kind}
        name, list_name = (
            schema_name(group, version, r.kind),
            schema_name(group, version, r.kind + "List"),
        )
        base = r.schema or {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
        schemas[name] = {**base, "x-kubernetes-group-version-kind": [gvk]}
        schemas[list_name] = {
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            },
            "x-kubernetes-group-version-kind": [{**gvk, "kind": r.kind + "List"}],
        }
        op = f"{r.kind}{version.capitalize()}"
        scopes = [(f"{root}/{r.plural}", "ForAllNamespaces" if r.namespaced else "")]
        if r.namespaced:
            scopes = [(f"{root}/namespaces/{{namespace}}/{r.plural}", "Namespaced"), *scopes]
        for path, suffix in scopes:
            paths[path] = {"get": _op("list", f"list{op}{suffix}", list_name, gvk, selectors)}
        item_path = f"{scopes[0][0]}/{{name}}"
        paths[item_path] = {"get": _op("get", f"read{op}", name, gvk, [])}
    return {
        "openapi": "3.0.0",
        "info": {"title": f"{group}/{version}", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
