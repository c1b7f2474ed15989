"""Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`)
built from the registry and cached until the registry changes (CRDs come and go)."""

from __future__ import annotations

from typing import Any

import orjson

from kybern.api import registry

# group order in /apis, as kube-apiserver lists its built-in groups
_GROUP_ORDER = [
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
]

_SUBRESOURCES: dict[str, tuple[str, str, str, list[str]]] = {
    # name: (group, version, kind, verbs); empty group/version = the parent's
    "status": ("", "", "", ["get", "patch", "update"]),
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    "binding": ("", "", "Binding", ["create"]),
    "eviction": ("policy", "v1", "Eviction", ["create"]),
    "finalize": ("", "", "", ["update"]),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
    "log": ("", "", "Pod", ["get"]),
    "exec": ("", "", "PodExecOptions", ["create", "get"]),
    "attach": ("", "", "PodAttachOptions", ["create", "get"]),
    "portforward": ("", "", "PodPortForwardOptions", ["create", "get"]),
}


class Discovery:
    def __init__(self, reg: registry.Registry) -> None:
        self.registry = reg
        self._generation = -1
        self._docs: dict[str, bytes] = {}

    def _refresh(self) -> None:
        if self._generation == self.registry.generation:
            return
        docs: dict[str, bytes] = {}
        gvs = self.registry.group_versions()
        docs["/api"] = orjson.dumps(
            {
                "kind": "APIVersions",
                "versions": gvs.get("", ["v1"]),
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            }
        )
        groups = []
        for g in sorted((g for g in gvs if g), key=_group_key):
            versions: list[dict[str, str]] = [
                {"groupVersion": f"{g}/{v}", "version": v} for v in gvs[g]
            ]
            group = {"name": g, "versions": versions, "preferredVersion": versions[0]}
            groups.append(group)
            docs[f"/apis/{g}"] = orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **group})
        docs["/apis"] = orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for g, served in gvs.items():
            for v in served:
                path = f"/apis/{g}/{v}" if g else f"/api/{v}"
                docs[path] = orjson.dumps(self._resource_list(g, v))
        self._docs = docs
        self._generation = self.registry.generation

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for r in sorted(self.registry.resources_in(group, version), key=lambda r: r.plural):
            entry: dict[str, Any] = {
                "name": r.plural,
                "singularName": r.singular_name,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            out.append(entry)
            for sub in sorted(r.subresources):
                sg, sv, sk, verbs = _SUBRESOURCES[sub]
                se: dict[str, Any] = {
                    "name": f"{r.plural}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": sk or r.kind,
                    "verbs": verbs,
                }
                if sg:
                    se["group"], se["version"] = sg, sv
                out.append(se)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": out,
        }

    def aggregated(self, path: str, version: str) -> bytes | None:
        """`apidiscovery.k8s.io/<version>` APIGroupDiscoveryList for `/api` or `/apis`."""
        self._refresh()
        key = f"{path}#{version}"
        doc = self._docs.get(key)
        if doc is None:
            if path not in ("/api", "/apis"):
                return None
            gvs = self.registry.group_versions()
            groups = [""] if path == "/api" else sorted((g for g in gvs if g), key=_group_key)
            items = []
            for g in groups:
                versions = [
                    {
                        "version": v,
                        "resources": self._aggregated_resources(g, v),
                        "freshness": "Current",
                    }
                    for v in gvs.get(g, [])
                ]
                items.append({"metadata": {"name": g} if g else {}, "versions": versions})
            doc = orjson.dumps(
                {
                    "kind": "APIGroupDiscoveryList",
                    "apiVersion": f"apidiscovery.k8s.io/{version}",
                    "metadata": {},
                    "items": items,
                }
            )
            self._docs[key] = doc
        return doc

    def _aggregated_resources(self, group: str, version: str) -> list[dict[str, Any]]:
        out = []
        for r in sorted(self.registry.resources_in(group, version), key=lambda r: r.plural):
            entry: dict[str, Any] = {
                "resource": r.plural,
                "responseKind": {"group": group, "version": version, "kind": r.kind},
                "scope": "Namespaced" if r.namespaced else "Cluster",
                "singularResource": r.singular_name,
                "verbs": list(r.verbs),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            subs = []
            for sub in sorted(r.subresources):
                sg, sv, sk, verbs = _SUBRESOURCES[sub]
                subs.append(
                    {
                        "subresource": sub,
                        "responseKind": {
                            "group": sg if sg else group,
                            "version": sv if sg else version,
                            "kind": sk or r.kind,
                        },
                        "verbs": verbs,
                    }
                )
            if subs:
                entry["subresources"] = subs
            out.append(entry)
        return out

    def document(self, path: str) -> bytes | None:
        self._refresh()
        return self._docs.get(path.rstrip("/") or path)


def _group_key(g: str) -> tuple[int, str]:
    try:
        return (_GROUP_ORDER.index(g), g)
    except ValueError:
        return (len(_GROUP_ORDER), g)
