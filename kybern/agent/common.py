"""What every part of the node agent shares: the API resources it reads and writes, the CRI
labels and annotations a kubelet puts on sandboxes and containers (so that a restarted agent,
or any tool that knows kubelet's conventions, finds a pod's containers again), time formats
(Kubernetes' RFC 3339 seconds and CRI's nanoseconds), resource quantities and small pod
accessors. Pure: no I/O, imported by every other agent module."""

from __future__ import annotations

import datetime
import math
from decimal import Decimal
from typing import Any

from kybern.api import registry, validation

Obj = dict[str, Any]

_REG = registry.Registry()


def _res(group: str, version: str, plural: str) -> registry.Resource:
    r = _REG.lookup(group, version, plural)
    assert r is not None, plural
    return r


PODS = _res("", "v1", "pods")
NODES = _res("", "v1", "nodes")
CONFIGMAPS = _res("", "v1", "configmaps")
SECRETS = _res("", "v1", "secrets")
SERVICES = _res("", "v1", "services")
SERVICEACCOUNTS = _res("", "v1", "serviceaccounts")
LEASES = _res("coordination.k8s.io", "v1", "leases")

LEASE_NAMESPACE = "kube-node-lease"

# labels and annotations a kubelet sets on CRI objects (kubelet's `types` package)
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"
POD_DELETION_GRACE = "io.kubernetes.pod.deletionGracePeriod"
CONTAINER_PORTS = "io.kubernetes.container.ports"
CONTAINER_KIND = "io.kybern.container.kind"  # "init" or "app" (kubelet infers it)

# static pods (kubelet's config source annotations)
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
CONFIG_SEEN = "kubernetes.io/config.seen"


# ---- time ------------------------------------------------------------------------------------


def rfc3339(t: float) -> str:
    """Kubernetes' `metav1.Time`: seconds precision, UTC."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: float) -> str:
    """`metav1.MicroTime` (Lease renew times)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ns_to_rfc3339(ns: int) -> str:
    """A CRI timestamp (nanoseconds since the epoch) as `metav1.Time`."""
    return rfc3339(ns / 1e9)


# ---- quantities ------------------------------------------------------------------------------


def quantity(value: Any) -> Decimal:
    """A quantity's value (0 for a missing or malformed one)."""
    if value is None or value == "":
        return Decimal(0)
    try:
        return validation.parse_quantity(value)
    except ValueError:
        return Decimal(0)


def milli_cpu(value: Any) -> int:
    """CPU quantity in millicores, rounded up as Kubernetes' `MilliValue` does."""
    return math.ceil(quantity(value) * 1000)


def int_bytes(value: Any) -> int:
    """A byte quantity rounded up to an integer."""
    return math.ceil(quantity(value))


def resources(container: Obj) -> tuple[Obj, Obj]:
    """(requests, limits) of a container, each `{}` when absent."""
    res = container.get("resources") or {}
    return dict(res.get("requests") or {}), dict(res.get("limits") or {})


# ---- pods ------------------------------------------------------------------------------------


def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def spec(obj: Obj) -> Obj:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def status(obj: Obj) -> Obj:
    s = obj.get("status")
    return s if isinstance(s, dict) else {}


def pod_uid(pod: Obj) -> str:
    return str(meta(pod).get("uid") or "")


def pod_full_name(pod: Obj) -> str:
    """`name_namespace` as kubelet prints pods in messages."""
    m = meta(pod)
    return f"{m.get('name', '')}_{m.get('namespace', '')}"


def pod_key(pod: Obj) -> str:
    m = meta(pod)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def is_mirror(pod: Obj) -> bool:
    return CONFIG_MIRROR in (meta(pod).get("annotations") or {})


def is_static(pod: Obj) -> bool:
    return (meta(pod).get("annotations") or {}).get(CONFIG_SOURCE, "api") != "api"


def restart_policy(pod: Obj) -> str:
    return str(spec(pod).get("restartPolicy") or "Always")


def grace_period(pod: Obj) -> int:
    """The grace period the pod is (being) stopped with: the deletion's, else the spec's."""
    m = meta(pod)
    if m.get("deletionGracePeriodSeconds") is not None:
        return max(int(m["deletionGracePeriodSeconds"]), 0)
    value = spec(pod).get("terminationGracePeriodSeconds")
    return 30 if value is None else max(int(value), 0)


def host_network(pod: Obj) -> bool:
    return bool(spec(pod).get("hostNetwork"))


def is_terminal(pod: Obj) -> bool:
    return status(pod).get("phase") in ("Succeeded", "Failed")


def containers(pod: Obj, kind: str = "containers") -> list[Obj]:
    return [c for c in spec(pod).get(kind) or [] if isinstance(c, dict)]


def qos_class(pod: Obj) -> str:
    """BestEffort, Burstable or Guaranteed, as Kubernetes classifies a pod."""
    requests: set[str] = set()
    limits: set[str] = set()
    guaranteed = True
    for c in containers(pod) + containers(pod, "initContainers"):
        req, lim = resources(c)
        own_req = {k: quantity(v) for k, v in req.items() if k in ("cpu", "memory")}
        own_lim = {k: quantity(v) for k, v in lim.items() if k in ("cpu", "memory")}
        own_req = {k: v for k, v in own_req.items() if v != 0}
        own_lim = {k: v for k, v in own_lim.items() if v != 0}
        requests |= set(own_req)
        limits |= set(own_lim)
        if set(own_lim) != {"cpu", "memory"}:
            guaranteed = False
        elif any(own_req.get(k, own_lim[k]) != own_lim[k] for k in own_lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
