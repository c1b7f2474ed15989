"""Helpers of the CRD integration tests: a CRD body builder and a wait for Established."""

from __future__ import annotations

import copy
from typing import Any

from conftest import Server, wait_for

Obj = dict[str, Any]
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

WIDGET_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas <= self.maxReplicas", "message": "replicas above max"}
            ],
            "properties": {
                "replicas": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 10,
                    "default": 1,
                    "description": "How many widgets to run.",
                },
                "maxReplicas": {"type": "integer", "default": 5},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "size": {"type": "string", "default": "M"},
                "selector": {"type": "string"},
                "tags": {
                    "type": "array",
                    "maxItems": 100,
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "mode": {
                    "type": "string",
                    "x-kubernetes-validations": [
                        {"rule": "self == oldSelf", "message": "mode is immutable"}
                    ],
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}},
        },
    },
}


def crd_body(group: str, plural: str = "widgets", kind: str = "Widget", **extra: Any) -> Obj:
    version: Obj = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": copy.deepcopy(WIDGET_SCHEMA)},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".spec.selector",
            },
        },
        "additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ],
        "selectableFields": [{"jsonPath": ".spec.color"}],
    }
    version.update(extra.pop("version", {}))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [kind.lower()[:3] + "x"],
                "categories": ["kybern-test"],
            },
            "versions": extra.pop("versions", [version]),
            **extra,
        },
    }


def established(server: Server, name: str) -> None:
    http = server.http()

    def ready() -> bool:
        got = http.get(f"{server.url}{CRDS}/{name}").json()
        conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
        if conds.get("Established") != "True":
            return False
        group, version = got["spec"]["group"], got["spec"]["versions"][0]["name"]
        plural = got["spec"]["names"]["plural"]
        return http.get(f"{server.url}/apis/{group}/{version}/{plural}").status_code == 200

    wait_for(ready, message=f"CRD {name} to be Established and served")


def create_crd(server: Server, body: Obj) -> None:
    r = server.http().post(f"{server.url}{CRDS}", json=body)
    assert r.status_code == 201, r.text
    established(server, body["metadata"]["name"])


def delete_crd(server: Server, name: str) -> None:
    if server.running:
        server.http().delete(f"{server.url}{CRDS}/{name}")
