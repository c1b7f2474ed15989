"""The Endpoints controller: for every Service with a selector, an Endpoints object of the same
name listing the pods that match — ready ones under `addresses`, the others under
`notReadyAddresses` (all as ready with publishNotReadyAddresses) — with each service port's
targetPort resolved by number or by container port name, grouped into subsets of pods that
expose the same ports. Pods without an IP, terminal pods and terminating pods are left out.
Fed by the service, pod and endpoints informers; `resolve_port` is shared with EndpointSlices."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import errors, selectors
from kybern.client import informer
from kybern.controllers import common

Obj = dict[str, Any]
HEADLESS = "service.kubernetes.io/headless"


def service_selector(svc: Obj) -> selectors.LabelSelector | None:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel or (svc.get("spec") or {}).get("type") == "ExternalName":
        return None
    return selectors.selector_from_set(sel)


def resolve_port(pod: Obj, port: Obj) -> int | None:
    """FindPort: a service port's targetPort on `pod` (number, or container port name)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return int(p["containerPort"])
    return None


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        n = resolve_port(pod, sp)
        if n is None:
            continue
        ep: Obj = {"port": n, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("name"):
            ep["name"] = sp["name"]
        if sp.get("appProtocol"):
            ep["appProtocol"] = sp["appProtocol"]
        out.append(ep)
    return out


def pod_address(svc: Obj, pod: Obj) -> Obj:
    m = pod["metadata"]
    spec = pod.get("spec") or {}
    addr: Obj = {
        "ip": (pod.get("status") or {}).get("podIP"),
        "targetRef": {
            "kind": "Pod",
            "namespace": m.get("namespace", ""),
            "name": m["name"],
            "uid": m.get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        addr["hostname"] = spec["hostname"]
    return addr


def compute_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[str, Obj] = {}
    for pod in pods:
        if not (pod.get("status") or {}).get("podIP") or common.is_pod_terminal(pod):
            continue
        if common.deleting(pod) and not publish:
            continue
        ports = endpoint_ports(svc, pod)
        if (svc.get("spec") or {}).get("ports") and not ports:
            continue
        key = repr(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        subset = groups.setdefault(key, {"ports": ports})
        field = "addresses" if publish or common.is_pod_ready(pod) else "notReadyAddresses"
        subset.setdefault(field, []).append(pod_address(svc, pod))
    out = []
    for key in sorted(groups):
        s = groups[key]
        for field in ("addresses", "notReadyAddresses"):
            if field in s:
                s[field].sort(key=lambda a: (a["ip"], a["targetRef"]["name"]))
        s["ports"].sort(key=lambda p: (p.get("name", ""), p["port"], p["protocol"]))
        if not s["ports"]:
            del s["ports"]
        keys: tuple[str, ...] = ("addresses", "notReadyAddresses", "ports")
        out.append({k: s[k] for k in keys if k in s})
    return out


def service_labels(svc: Obj) -> dict[str, str]:
    labels = dict(svc["metadata"].get("labels") or {})
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


class EndpointsController(common.Base):
    name = "endpoints"
    component = "endpoint-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.services = common.shared(ctx, common.SERVICES)
        self.pods = common.shared(ctx, common.PODS)
        self.endpoints = common.shared(ctx, common.ENDPOINTS)
        self.services.add_handlers(
            informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        )
        self.pods.add_handlers(informer.Handlers(self._pod, self._pod_updated, self._pod))
        self.endpoints.add_handlers(
            informer.Handlers(
                on_update=lambda old, new: self._managed(new), on_delete=self._managed
            )
        )

    def _managed(self, ep: Obj) -> None:
        if self.services.get(ep["metadata"]["name"], ep["metadata"].get("namespace", "")):
            self.enqueue(ep)

    def _pod(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for svc in self.services.by_index("namespace", pod["metadata"].get("namespace", "")):
            sel = service_selector(svc)
            if sel is not None and sel.matches(labels):
                self.enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        self._pod(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod(old)

    def pods_for(self, svc: Obj) -> list[Obj]:
        sel = service_selector(svc)
        if sel is None:
            return []
        ns = svc["metadata"].get("namespace", "")
        return [
            p
            for p in self.pods.by_index("namespace", ns)
            if sel.matches(p["metadata"].get("labels") or {})
        ]

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        svc = self.services.get(name, ns)
        current = self.endpoints.get(name, ns)
        if svc is None:
            if current is not None:
                await common.ignore_not_found(self.client.delete(common.ENDPOINTS, name, ns))
            return None
        if service_selector(svc) is None:
            return None
        subsets = compute_subsets(svc, self.pods_for(svc))
        labels = service_labels(svc)
        if current is not None:
            if (current.get("subsets") or []) == subsets and (
                current["metadata"].get("labels") or {}
            ) == labels:
                return None
            new = copy.deepcopy(current)
            new["metadata"]["labels"] = labels
            if not labels:
                new["metadata"].pop("labels")
            new["subsets"] = subsets
            if not subsets:
                new.pop("subsets")
            try:
                await self.client.update(common.ENDPOINTS, new)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
            return None
        ep: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {})},
        }
        if subsets:
            ep["subsets"] = subsets
        try:
            await self.client.create(common.ENDPOINTS, ep)
        except errors.StatusError as e:
            if e.code not in (409, 403):
                raise
        return None
