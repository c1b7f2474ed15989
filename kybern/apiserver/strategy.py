"""Per-kind behaviour of the generic store (what Kubernetes calls a strategy): the spec/status
split on update, which metadata a client may not change, the grace period of a deletion, and
kind-specific hooks such as service address allocation and namespace termination."""

from __future__ import annotations

import base64
import contextlib
import contextvars
from typing import Any, Protocol

from kybern.api import crdschema_check, defaults, errors, objects, registry, validation_more
from kybern.apiserver import allocators
from kybern.apiserver import cache as cachemod

Obj = dict[str, Any]
User = tuple[str, list[str]]

# The authenticated user of the request being served ((name, groups), None outside requests).
# The HTTP layer sets it per request (`REQUEST_USER.set(request.get("user"))`); what the
# strategy derives from the requester (a CSR's spec.username and groups) reads it.
REQUEST_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar(
    "kybern_request_user", default=None
)
_CSR = ("certificates.k8s.io", "CertificateSigningRequest")

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
    if (res.group, res.kind) == _CSR:
        return _prepare_csr_update(res, obj, old, subresource)
    if subresource == "status":
        new = objects.copy_json(old)
        if "status" in obj:
            new["status"] = obj["status"]
        else:
            new.pop("status", None)
        mf = obj.get("metadata", {}).get("managedFields")
        if mf is not None:
            new["metadata"]["managedFields"] = mf
        _keep_sent_uid(new["metadata"], (obj.get("metadata") or {}).get("uid"))
        return new
    new = obj
    new.setdefault("apiVersion", old.get("apiVersion"))
    new.setdefault("kind", old.get("kind"))
    meta = new.setdefault("metadata", {})
    ometa = old["metadata"]
    sent_uid = meta.get("uid")
    for f in _SERVER_META:
        if f in ometa:
            meta[f] = ometa[f]
        else:
            meta.pop(f, None)
    _keep_sent_uid(meta, sent_uid)
    meta["name"] = ometa["name"]
    if "namespace" in ometa:
        meta["namespace"] = ometa["namespace"]
    if res.has_status and subresource != "binding":  # binding also sets PodScheduled
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    return new


def _keep_sent_uid(meta: Obj, uid: Any) -> None:
    """A uid the client sent stays for validation to compare (BeforeUpdate copies the old uid
    only when none is given): a patch naming another object's uid is refused as immutable."""
    if uid:
        meta["uid"] = uid


_APPROVAL = ("Approved", "Denied")  # conditions only `/approval` changes


def _prepare_csr_update(res: registry.Resource, obj: Obj, old: Obj, subresource: str) -> Obj:
    """A CSR's spec never changes after create (edits are dropped, as Kubernetes does). The
    main resource changes metadata only, `/status` the status except the Approved/Denied
    conditions (the certificate, Failed), `/approval` the conditions only."""
    if subresource in ("status", "approval"):
        new = objects.copy_json(old)
        mf = obj.get("metadata", {}).get("managedFields")
        if mf is not None:
            new["metadata"]["managedFields"] = mf
        sent: Obj = obj["status"] if isinstance(obj.get("status"), dict) else {}
        status = dict(old.get("status") or {})
        if subresource == "status":  # a signer's: the certificate, Failed and other conditions
            status = {k: v for k, v in sent.items() if k != "conditions"}
            approval = [
                c
                for c in (old.get("status") or {}).get("conditions") or []
                if c.get("type") in _APPROVAL
            ]
            others = [c for c in sent.get("conditions") or [] if c.get("type") not in _APPROVAL]
            if approval or others:
                status["conditions"] = approval + others
        elif sent.get("conditions") is not None:
            status["conditions"] = sent["conditions"]
        else:
            status.pop("conditions", None)
        if status:
            new["status"] = status
        else:
            new.pop("status", None)
        return new
    new = prepare_update(_PLAIN_STATUS, obj, old, subresource)
    if "spec" in old:
        new["spec"] = old["spec"]
    else:
        new.pop("spec", None)
    return new


# the CSR's own strategy falls back on the generic spec/status split for the main resource
_PLAIN_STATUS = registry.Resource(
    group="", version="v1", kind="", plural="", namespaced=False, subresources=frozenset({"status"})
)


def _csr_requester(obj: Obj) -> None:
    """`spec.username`, `uid`, `groups` and `extra` are the requester's, whatever was sent."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    user = REQUEST_USER.get()
    if user is not None:
        if user[0]:
            spec["username"] = user[0]
        if user[1]:
            spec["groups"] = list(user[1])


class Hooks:
    """Kind-specific behaviour; the base class is what every kind gets."""

    def prepare_create(self, res: registry.Resource, obj: Obj) -> None:
        if res.has_status and res.kind not in ("Pod", "Namespace", "Node"):
            obj.pop("status", None)
        if (res.group, res.kind) == _CSR:
            _csr_requester(obj)

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


class _Creator(Protocol):
    def peek(self, res: registry.Resource, namespace: str, name: str) -> Any: ...

    async def create(self, res: registry.Resource, namespace: str, obj: Obj) -> Obj: ...


_PRIORITY_CLASSES = next(r for r in registry.BUILTIN if r.kind == "PriorityClass")
_SYSTEM_PRIORITY_DESCRIPTIONS = {
    "system-node-critical": "Used for system critical pods that must not be moved from their "
    "current node.",
    "system-cluster-critical": "Used for system critical pods that must run in the cluster, "
    "but can be moved to another node if necessary.",
}


def system_priority_classes() -> list[Obj]:
    """The two PriorityClasses kube-apiserver creates at start (`scheduling/rest`)."""
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "globalDefault": False,
            "description": _SYSTEM_PRIORITY_DESCRIPTIONS[name],
        }
        for name, value in sorted(
            validation_more.SYSTEM_PRIORITY_CLASSES.items(), key=lambda kv: kv[1]
        )
    ]


async def bootstrap(store: _Creator) -> None:
    """The objects the strategies expect to exist once the server runs: the system
    PriorityClasses (kept when they exist; created again when deleted, at the next start)."""
    for pc in system_priority_classes():
        if store.peek(_PRIORITY_CLASSES, "", pc["metadata"]["name"]) is None:
            with contextlib.suppress(errors.StatusError):
                await store.create(_PRIORITY_CLASSES, "", pc)
