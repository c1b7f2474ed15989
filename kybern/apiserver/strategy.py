"""Per-kind behaviour of the generic store (what Kubernetes calls a strategy): the spec/status
split on update, which metadata a client may not change, the grace period of a deletion, and
kind-specific hooks such as service address allocation and namespace termination."""

from __future__ import annotations

import base64
from typing import Any

from kybern.api import crdschema_check, defaults, errors, objects, registry
from kybern.apiserver import allocators
from kybern.apiserver import cache as cachemod

Obj = dict[str, Any]

# metadata a client can never change through update/patch
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)


def prepare_update(res: registry.Resource, obj: Obj, old: Obj, subresource: str) -> Obj:
    """The object to store for an update of `old` with `obj` through `subresource`."""
    if subresource == "status":
        new = objects.copy_json(old)
        if "status" in obj:
            new["status"] = obj["status"]
        else:
            new.pop("status", None)
        mf = obj.get("metadata", {}).get("managedFields")
        if mf is not None:
            new["metadata"]["managedFields"] = mf
        return new
    new = obj
    new.setdefault("apiVersion", old.get("apiVersion"))
    new.setdefault("kind", old.get("kind"))
    meta = new.setdefault("metadata", {})
    ometa = old["metadata"]
    for f in _SERVER_META:
        if f in ometa:
            meta[f] = ometa[f]
        else:
            meta.pop(f, None)
    meta["name"] = ometa["name"]
    if "namespace" in ometa:
        meta["namespace"] = ometa["namespace"]
    if res.has_status and subresource != "binding":  # binding also sets PodScheduled
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    return new


class Hooks:
    """Kind-specific behaviour; the base class is what every kind gets."""

    def prepare_create(self, res: registry.Resource, obj: Obj) -> None:
        if res.has_status and res.kind not in ("Pod", "Namespace", "Node"):
            obj.pop("status", None)

    def prepare_update(self, res: registry.Resource, new: Obj, old: Obj) -> None:
        if not res.group and res.kind == "Secret":
            _merge_string_data(new)
        if _is_crd(res):
            crdschema_check.default_crd(new, old)

    def validate(
        self, res: registry.Resource, obj: Obj, old: Obj | None
    ) -> list[errors.FieldError]:
        errs: list[errors.FieldError] = []
        if _is_crd(res):  # structural schema, CEL rules, versions, ...
            errs += crdschema_check.validate_crd(obj, old)
        if old is not None and old["metadata"].get("deletionTimestamp"):
            before = set(old["metadata"].get("finalizers") or [])
            added = [f for f in obj["metadata"].get("finalizers") or [] if f not in before]
            if added:
                errs.append(
                    errors.forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted, found new "
                        f"finalizers {added!r}".replace("'", '"'),
                    )
                )
        return errs

    def before_write(self, res: registry.Resource, obj: Obj, old: Obj | None) -> None:
        pass

    def after_write(self, res: registry.Resource, obj: Obj) -> None:
        pass

    def grace_period(self, res: registry.Resource, obj: Obj, requested: int | None) -> int:
        return 0

    def mark_deleting(self, res: registry.Resource, obj: Obj) -> None:
        pass

    def blocks_deletion(self, res: registry.Resource, obj: Obj) -> bool:
        """True while something other than metadata.finalizers holds the object."""
        return False


class BuiltinHooks(Hooks):
    """Pods (graceful deletion), services (cluster IPs, node ports), namespaces (termination)."""

    def __init__(self, cacher: cachemod.Cacher, service_cidr: str) -> None:
        self.cacher = cacher
        self.ips = allocators.IPAllocator(service_cidr)
        self.ports = allocators.PortAllocator()
        self._services = registry.BUILTIN[3]

    def _used(self) -> tuple[list[str], list[int]]:
        ips: list[str] = []
        ports: list[int] = []
        for o in self.cacher.get(self._services.key_prefix).items():
            spec = o.obj.get("spec") or {}
            ips.extend(
                spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
            )
            ports.extend(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
        return ips, ports

    def prepare_create(self, res: registry.Resource, obj: Obj) -> None:
        super().prepare_create(res, obj)
        if res.group == "apiextensions.k8s.io" and res.kind == "CustomResourceDefinition":
            fins = obj["metadata"].setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in fins:
                fins.append("customresourcecleanup.apiextensions.k8s.io")
            crdschema_check.default_crd(obj)
        if res.group == "batch" and res.kind == "Job":
            defaults.generate_job_selector(obj)
        if res.group:
            return
        if res.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
            spec = obj.setdefault("spec", {})
            if "kubernetes" not in spec.setdefault("finalizers", []):
                spec["finalizers"].append("kubernetes")
        if res.kind == "Secret":
            _merge_string_data(obj)

    def before_write(self, res: registry.Resource, obj: Obj, old: Obj | None) -> None:
        if res.group or res.kind != "Service":
            return
        spec = obj.setdefault("spec", {})
        typ = spec.get("type", "ClusterIP")
        used_ips, used_ports = self._used()
        if old is not None:
            ospec = old.get("spec") or {}
            mine = set(ospec.get("clusterIPs") or [])
            used_ips = [ip for ip in used_ips if ip not in mine]
            oports = {p.get("nodePort") for p in ospec.get("ports") or []}
            used_ports = [p for p in used_ports if p not in oports]
            if ospec.get("clusterIP") and "clusterIP" not in spec:
                spec["clusterIP"] = ospec["clusterIP"]
                spec["clusterIPs"] = ospec.get("clusterIPs") or [ospec["clusterIP"]]
        if typ == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        else:
            ip = spec.get("clusterIP")
            if ip in (None, ""):
                ip = self.ips.allocate(used_ips)
            elif ip != "None" and (
                old is None or ip not in (old.get("spec") or {}).get("clusterIPs", [])
            ):
                if not self.ips.contains(ip):
                    raise errors.invalid(
                        "Service",
                        "",
                        obj["metadata"]["name"],
                        [
                            errors.invalid_value(
                                "spec.clusterIPs",
                                [ip],
                                "failed to allocate IP %s: the provided IP (%s) is "
                                "not in the valid range. The range of valid IPs "
                                "is %s" % (ip, ip, self.ips.network),
                            )
                        ],
                    )
                self.ips.reserve(ip, used_ips, obj["metadata"]["name"])
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
        if typ in ("NodePort", "LoadBalancer"):
            for i, p in enumerate(spec.get("ports") or []):
                if p.get("nodePort"):
                    if old is None or p["nodePort"] not in {
                        q.get("nodePort") for q in (old.get("spec") or {}).get("ports", [])
                    }:
                        self.ports.check(
                            int(p["nodePort"]),
                            used_ports,
                            f"spec.ports[{i}].nodePort",
                            obj["metadata"]["name"],
                        )
                else:
                    p["nodePort"] = self.ports.allocate(used_ports)
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)

    def after_write(self, res: registry.Resource, obj: Obj) -> None:
        if res.group or res.kind != "Service":
            return
        spec = obj.get("spec") or {}
        for ip in spec.get("clusterIPs") or []:
            self.ips.release(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.ports.release(p["nodePort"])

    def grace_period(self, res: registry.Resource, obj: Obj, requested: int | None) -> int:
        if res.group or res.kind != "Pod":
            return 0
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(int(requested), 0)
        return int(spec.get("terminationGracePeriodSeconds", 30) or 0)

    def mark_deleting(self, res: registry.Resource, obj: Obj) -> None:
        if not res.group and res.kind == "Namespace":
            obj.setdefault("status", {})["phase"] = "Terminating"

    def blocks_deletion(self, res: registry.Resource, obj: Obj) -> bool:
        if res.group:
            return False
        if res.kind == "Namespace":
            return bool((obj.get("spec") or {}).get("finalizers"))
        if res.kind == "Pod":
            return int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) > 0
        return False


def _is_crd(res: registry.Resource) -> bool:
    return res.group == "apiextensions.k8s.io" and res.kind == "CustomResourceDefinition"


def _merge_string_data(secret: Obj) -> None:
    """`stringData` is write-only: merged into `data` (base64), then dropped."""
    sd = secret.pop("stringData", None)
    if isinstance(sd, dict) and sd:
        data = secret.get("data") or {}
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        secret["data"] = data
