"""Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`)
built from the registry and cached until the registry changes (CRDs come and go). Groups served
by extension API servers join through `Remote` (the aggregator): they are listed in `/apis` and
in aggregated discovery with the resources their servers reported, and groups are ordered by
their APIServices' `groupPriorityMinimum` when the aggregator knows it."""

from __future__ import annotations

from typing import Any, Protocol

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
    "approval": ("", "", "", ["get", "patch", "update"]),  # certificatesigningrequests
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
    "log": ("", "", "Pod", ["get"]),
    "exec": ("", "", "PodExecOptions", ["create", "get"]),
    "attach": ("", "", "PodAttachOptions", ["create", "get"]),
    "portforward": ("", "", "PodPortForwardOptions", ["create", "get"]),
}


class Remote(Protocol):
    """What discovery needs from the aggregator (service-backed APIServices)."""

    generation: int  # changes whenever anything below changes

    def group_priority(self, group: str) -> int | None: ...

    def remote_versions(self) -> dict[str, list[str]]:
        """group -> its service-backed versions, by versionPriority (highest first)."""
        ...

    def remote_resources(self, group: str, version: str) -> tuple[list[Any], bool] | None:
        """(the backend's APIResourceList `resources`, fresh?) or None if never fetched."""
        ...


class Discovery:
    def __init__(self, reg: registry.Registry) -> None:
        self.registry = reg
        self.remote: Remote | None = None
        self._generation = (-1, -1)
        self._docs: dict[str, bytes] = {}

    def _group_versions(self) -> dict[str, list[str]]:
        gvs = self.registry.group_versions()
        if self.remote is not None:
            for g, versions in self.remote.remote_versions().items():
                gvs[g] = [*versions, *(v for v in gvs.get(g, []) if v not in versions)]
        return gvs

    def _is_remote(self, group: str, version: str) -> bool:
        return self.remote is not None and version in self.remote.remote_versions().get(group, ())

    def _group_key(self, g: str) -> tuple[int, str]:
        prio = self.remote.group_priority(g) if self.remote is not None else None
        return _group_key(g) if prio is None else (-prio, g)

    def _refresh(self) -> None:
        generation = (self.registry.generation, self.remote.generation if self.remote else 0)
        if self._generation == generation:
            return
        docs: dict[str, bytes] = {}
        gvs = self._group_versions()
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
        for g in sorted((g for g in gvs if g), key=self._group_key):
            versions: list[dict[str, str]] = [
                {"groupVersion": f"{g}/{v}", "version": v} for v in gvs[g]
            ]
            group = {"name": g, "versions": versions, "preferredVersion": versions[0]}
            groups.append(group)
            docs[f"/apis/{g}"] = orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **group})
        docs["/apis"] = orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for g, served in gvs.items():
            for v in served:
                if self._is_remote(g, v):
                    continue  # served by its extension API server, through the aggregator
                path = f"/apis/{g}/{v}" if g else f"/api/{v}"
                docs[path] = orjson.dumps(self._resource_list(g, v))
        self._docs = docs
        self._generation = generation

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
            gvs = self._group_versions()
            groups = [""] if path == "/api" else sorted((g for g in gvs if g), key=self._group_key)
            items = []
            for g in groups:
                versions = []
                for v in gvs.get(g, []):
                    entry = self._aggregated_version(g, v)
                    if entry is not None:
                        versions.append(entry)
                if versions:
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

    def _aggregated_version(self, group: str, version: str) -> dict[str, Any] | None:
        if self.remote is None or not self._is_remote(group, version):
            resources = self._aggregated_resources(group, version)
            return {"version": version, "resources": resources, "freshness": "Current"}
        found = self.remote.remote_resources(group, version)
        if found is None:
            return None  # never reached its server: not listed (kubectl would report it)
        legacy, fresh = found
        return {
            "version": version,
            "resources": to_aggregated(group, version, legacy),
            "freshness": "Current" if fresh else "Stale",
        }

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


def to_aggregated(group: str, version: str, legacy: list[Any]) -> list[dict[str, Any]]:
    """An APIResourceList's `resources` (from an extension server) as aggregated discovery
    (`apidiscovery.k8s.io/v2` APIResourceDiscovery) entries, subresources nested."""
    out: dict[str, dict[str, Any]] = {}
    subs: list[dict[str, Any]] = []
    for r in legacy:
        if not isinstance(r, dict) or not r.get("name"):
            continue
        name = str(r["name"])
        kind = {
            "group": r.get("group", group),
            "version": r.get("version", version),
            "kind": r.get("kind", ""),
        }
        if "/" in name:
            parent, sub = name.split("/", 1)
            subs.append(
                {
                    "parent": parent,
                    "subresource": sub,
                    "responseKind": kind,
                    "verbs": r.get("verbs") or [],
                }
            )
            continue
        entry: dict[str, Any] = {
            "resource": name,
            "responseKind": kind,
            "scope": "Namespaced" if r.get("namespaced") else "Cluster",
            "singularResource": r.get("singularName") or str(r.get("kind", "")).lower(),
            "verbs": r.get("verbs") or [],
        }
        for key in ("shortNames", "categories"):
            if r.get(key):
                entry[key] = r[key]
        out[name] = entry
    for item in subs:
        owner = out.get(item.pop("parent"))
        if owner is not None:
            owner.setdefault("subresources", []).append(item)
    return list(out.values())


def _group_key(g: str) -> tuple[int, str]:
    try:
        return (_GROUP_ORDER.index(g), g)
    except ValueError:
        return (len(_GROUP_ORDER), g)
