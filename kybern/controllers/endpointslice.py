"""The EndpointSlice controller: for every Service with a selector, EndpointSlices (at most 100
endpoints each, one address type and one port list per slice) labelled
`kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io` and owned by the Service, with one endpoint per matching pod
that has an IP and the conditions ready/serving/terminating. Existing slices are updated in
place where their port list matches, extra ones deleted and missing ones created."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common, endpoints

Obj = dict[str, Any]
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS = 100


def _slice_key(s: Obj) -> list[str]:
    labels = s["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY) != CONTROLLER or not labels.get(SERVICE_NAME):
        return []
    return [f"{s['metadata'].get('namespace', '')}/{labels[SERVICE_NAME]}"]


def slice_endpoint(svc: Obj, pod: Obj) -> Obj:
    spec = pod.get("spec") or {}
    m = pod["metadata"]
    terminating = common.deleting(pod)
    ready = common.is_pod_ready(pod)
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: Obj = {
        "addresses": [(pod.get("status") or {}).get("podIP")],
        "conditions": {
            "ready": publish or (ready and not terminating),
            "serving": ready,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": m.get("namespace", ""),
            "name": m["name"],
            "uid": m.get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        ep["hostname"] = spec["hostname"]
    return ep


def desired_groups(svc: Obj, pods: list[Obj]) -> dict[tuple[str, str], tuple[list[Obj], list[Obj]]]:
    """(addressType, ports key) -> (ports, endpoints sorted by address)."""
    out: dict[tuple[str, str], tuple[list[Obj], list[Obj]]] = {}
    has_ports = bool((svc.get("spec") or {}).get("ports"))
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or common.is_pod_terminal(pod):
            continue
        ports = [
            {"name": p.get("name", ""), "port": p["port"], "protocol": p["protocol"]}
            | ({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})
            for p in endpoints.endpoint_ports(svc, pod)
        ]
        if has_ports and not ports:
            continue
        ports.sort(key=lambda p: (p["name"], p["port"], p["protocol"]))
        family = "IPv6" if ":" in ip else "IPv4"
        key = (family, repr(ports))
        group = out.setdefault(key, (ports, []))
        group[1].append(slice_endpoint(svc, pod))
    for _, eps in out.values():
        eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
    return out


def _ports_key(s: Obj) -> tuple[str, str]:
    ports = sorted(
        (
            {"name": p.get("name", ""), "port": p.get("port"), "protocol": p.get("protocol", "TCP")}
            | ({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})
            for p in s.get("ports") or []
        ),
        key=lambda p: (p["name"], p["port"] or 0, p["protocol"]),
    )
    return (s.get("addressType", "IPv4"), repr(ports))


class EndpointSliceController(common.Base):
    name = "endpointslice"
    component = "endpoint-slice-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.services = common.shared(ctx, common.SERVICES)
        self.pods = common.shared(ctx, common.PODS)
        self.slices = common.shared(ctx, common.SLICES)
        self.slices.add_indexer("service", _slice_key)
        self.services.add_handlers(
            informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        )
        self.pods.add_handlers(informer.Handlers(self._pod, self._pod_updated, self._pod))
        self.slices.add_handlers(
            informer.Handlers(on_update=lambda o, n: self._slice(n), on_delete=self._slice)
        )

    def _slice(self, s: Obj) -> None:
        for key in _slice_key(s):
            self.queue.add(key)

    def _pod(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for svc in self.services.by_index("namespace", pod["metadata"].get("namespace", "")):
            sel = endpoints.service_selector(svc)
            if sel is not None and sel.matches(labels):
                self.enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        self._pod(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod(old)

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        svc = self.services.get(name, ns)
        if svc is None or common.deleting(svc):
            return None  # the garbage collector removes the slices with their owner
        sel = endpoints.service_selector(svc)
        if sel is None:
            return None
        pods = [
            p
            for p in self.pods.by_index("namespace", ns)
            if sel.matches(p["metadata"].get("labels") or {})
        ]
        groups = desired_groups(svc, pods)
        existing: dict[tuple[str, str], list[Obj]] = {}
        for s in sorted(self.slices.by_index("service", key), key=lambda s: s["metadata"]["name"]):
            if common.owned_by(s, svc):
                existing.setdefault(_ports_key(s), []).append(s)
            else:  # left from an earlier service of that name
                await self._delete(s)
        labels = {
            **endpoints.service_labels(svc),
            SERVICE_NAME: name,
            MANAGED_BY: CONTROLLER,
        }
        placeholder = ("IPv4", "[]")
        if not groups:  # Kubernetes keeps one (empty) slice per service
            groups = {placeholder: ([], [])}
            if placeholder not in existing:
                reuse = next((ss for ss in existing.values() if ss), None)
                if reuse:
                    existing[placeholder] = [reuse.pop(0)]
        for gkey, (ports, eps) in groups.items():
            chunks = [eps[i : i + MAX_ENDPOINTS] for i in range(0, len(eps), MAX_ENDPOINTS)] or [[]]
            have = existing.pop(gkey, [])
            for i, chunk in enumerate(chunks):
                if i < len(have):
                    await self._update(have[i], labels, ports, chunk)
                else:
                    await self._create(svc, gkey[0], labels, ports, chunk)
            for s in have[len(chunks) :]:
                await self._delete(s)
        for leftover in existing.values():
            for s in leftover:
                await self._delete(s)
        return None

    async def _create(
        self, svc: Obj, family: str, labels: dict[str, str], ports: list[Obj], eps: list[Obj]
    ) -> None:
        m = svc["metadata"]
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{m['name']}-",
                "namespace": m["namespace"],
                "labels": labels,
                "ownerReferences": [common.new_controller_ref(svc, common.SERVICES)],
            },
            "addressType": family,
            "endpoints": eps,
            "ports": ports,
        }
        try:
            await self.client.create(common.SLICES, body)
        except errors.StatusError as e:
            if e.code != 403:  # the namespace is terminating
                raise

    async def _update(
        self, s: Obj, labels: dict[str, str], ports: list[Obj], eps: list[Obj]
    ) -> None:
        if (
            (s.get("endpoints") or []) == eps
            and (s.get("ports") or []) == ports
            and (s["metadata"].get("labels") or {}) == labels
        ):
            return
        new = copy.deepcopy(s)
        new["metadata"]["labels"] = labels
        new["endpoints"] = eps
        new["ports"] = ports
        await common.ignore_not_found(self.client.update(common.SLICES, new))

    async def _delete(self, s: Obj) -> None:
        m = s["metadata"]
        await common.ignore_not_found(
            self.client.delete(common.SLICES, m["name"], m["namespace"], uid=m.get("uid", ""))
        )
