"""The scheduler's precomputed views of pods and nodes (kube-scheduler's `framework/types.go`):
`Resource` vectors (milli-CPU, bytes, pod slots, extended resources), `PodInfo` (a pod's
effective requests with init containers, sidecars and overhead, its parsed affinity terms and
tolerations) and `NodeInfo` (a node's allocatable, the sum of its pods' requests, its taints and
the pods with affinity on it). The cache builds these once per object change so that filter and
score plugins only compare integers."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING
from functools import lru_cache
from typing import Any

from kybern.api import selectors, validation

Obj = dict[str, Any]

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
DEFAULT_MILLI_CPU_REQUEST = 100  # kube-scheduler's non-zero defaults used for scoring
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"


@lru_cache(maxsize=8192)
def _milli(q: str) -> int:
    try:
        return int((validation.parse_quantity(q) * 1000).to_integral_value(ROUND_CEILING))
    except (ValueError, ArithmeticError):
        return 0


@lru_cache(maxsize=8192)
def _whole(q: str) -> int:
    try:
        return int(validation.parse_quantity(q).to_integral_value(ROUND_CEILING))
    except (ValueError, ArithmeticError):
        return 0


def milli_value(q: Any) -> int:
    """A quantity in thousandths (`"250m"` -> 250, `1` -> 1000), rounded up; 0 if invalid."""
    return _milli(str(q))


def value(q: Any) -> int:
    """A quantity as a whole number (`"1Gi"` -> 1073741824), rounded up; 0 if invalid."""
    return _whole(str(q))


class Resource:
    """A resource vector: CPU in milli-cores, memory and ephemeral storage in bytes, pod slots,
    and every other (extended, hugepages) resource by name as an integer."""

    __slots__ = ("allowed_pod_number", "ephemeral_storage", "memory", "milli_cpu", "scalar")

    def __init__(
        self,
        milli_cpu: int = 0,
        memory: int = 0,
        ephemeral_storage: int = 0,
        allowed_pod_number: int = 0,
        scalar: dict[str, int] | None = None,
    ) -> None:
        self.milli_cpu = milli_cpu
        self.memory = memory
        self.ephemeral_storage = ephemeral_storage
        self.allowed_pod_number = allowed_pod_number
        self.scalar: dict[str, int] = scalar if scalar is not None else {}

    @classmethod
    def from_list(cls, rl: Mapping[str, Any] | None) -> Resource:
        """A `ResourceList` (`{"cpu": "500m", "memory": "1Gi", ...}`) as a vector."""
        r = cls()
        for name, q in (rl or {}).items():
            r.set(name, q)
        return r

    def set(self, name: str, q: Any) -> None:
        if name == CPU:
            self.milli_cpu = milli_value(q)
        elif name == MEMORY:
            self.memory = value(q)
        elif name == EPHEMERAL_STORAGE:
            self.ephemeral_storage = value(q)
        elif name == PODS:
            self.allowed_pod_number = value(q)
        else:
            self.scalar[name] = value(q)

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL_STORAGE:
            return self.ephemeral_storage
        if name == PODS:
            return self.allowed_pod_number
        return self.scalar.get(name, 0)

    def add(self, other: Resource) -> None:
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.ephemeral_storage += other.ephemeral_storage
        self.allowed_pod_number += other.allowed_pod_number
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + v

    def sub(self, other: Resource) -> None:
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.ephemeral_storage -= other.ephemeral_storage
        self.allowed_pod_number -= other.allowed_pod_number
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) - v

    def set_max(self, other: Resource) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, other.ephemeral_storage)
        for k, v in other.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def copy(self) -> Resource:
        return Resource(
            self.milli_cpu,
            self.memory,
            self.ephemeral_storage,
            self.allowed_pod_number,
            dict(self.scalar),
        )

    def is_zero(self) -> bool:
        return not (
            self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar.values())
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and (
            self.milli_cpu,
            self.memory,
            self.ephemeral_storage,
            self.allowed_pod_number,
            {k: v for k, v in self.scalar.items() if v},
        ) == (
            other.milli_cpu,
            other.memory,
            other.ephemeral_storage,
            other.allowed_pod_number,
            {k: v for k, v in other.scalar.items() if v},
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Resource(cpu={self.milli_cpu}m, memory={self.memory}, "
            f"ephemeral={self.ephemeral_storage}, pods={self.allowed_pod_number}, "
            f"scalar={self.scalar})"
        )


def _container_requests(c: Obj) -> Mapping[str, Any]:
    return (c.get("resources") or {}).get("requests") or {}


def pod_requests(spec: Obj) -> tuple[Resource, int, int]:
    """`resourcehelper.PodRequests`: (requests, non-zero milli-CPU, non-zero memory).

    Regular containers add up; restartable init containers (sidecars) add to that and to every
    later init container; each plain init container must fit alone, so the result is the max
    of the two; `spec.overhead` is added last. The non-zero pair counts a container without a
    CPU or memory request as 100m / 200Mi (what kube-scheduler scores with)."""
    total = Resource()
    nz_cpu = nz_mem = 0
    for c in spec.get("containers") or ():
        creq = _container_requests(c)
        cpu, mem = DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST
        for name, q in creq.items():  # what `total.add(Resource.from_list(creq))` adds
            if name == CPU:
                cpu = milli_value(q)
                total.milli_cpu += cpu
            elif name == MEMORY:
                mem = value(q)
                total.memory += mem
            elif name == EPHEMERAL_STORAGE:
                total.ephemeral_storage += value(q)
            elif name == PODS:
                total.allowed_pod_number += value(q)
            else:
                total.scalar[name] = total.scalar.get(name, 0) + value(q)
        nz_cpu += cpu
        nz_mem += mem
    inits = spec.get("initContainers") or ()
    if inits:
        sidecars = Resource()
        init_max = Resource()
        nz_side_cpu = nz_side_mem = nz_init_cpu = nz_init_mem = 0
        for c in inits:
            req: Resource = Resource.from_list(_container_requests(c))
            cpu = req.milli_cpu or DEFAULT_MILLI_CPU_REQUEST
            mem = req.memory or DEFAULT_MEMORY_REQUEST
            if c.get("restartPolicy") == "Always":
                sidecars.add(req)
                nz_side_cpu += cpu
                nz_side_mem += mem
                req = sidecars.copy()
                cpu, mem = nz_side_cpu, nz_side_mem
            else:
                req.add(sidecars)
                cpu += nz_side_cpu
                mem += nz_side_mem
            init_max.set_max(req)
            nz_init_cpu, nz_init_mem = max(nz_init_cpu, cpu), max(nz_init_mem, mem)
        total.add(sidecars)
        total.set_max(init_max)
        nz_cpu = max(nz_cpu + nz_side_cpu, nz_init_cpu)
        nz_mem = max(nz_mem + nz_side_mem, nz_init_mem)
    overhead = spec.get("overhead")
    if overhead:
        o = Resource.from_list(overhead)
        total.add(o)
        nz_cpu += o.milli_cpu
        nz_mem += o.memory
    return total, nz_cpu, nz_mem


class AffinityTerm:
    """A parsed `PodAffinityTerm`: which pods (namespaces + label selector) it selects and
    the topology key that groups nodes."""

    __slots__ = ("namespace_selector", "namespaces", "selector", "topology_key", "weight")

    def __init__(self, term: Obj, pod_namespace: str, weight: int = 0) -> None:
        self.topology_key: str = term.get("topologyKey") or ""
        self.selector = selectors.from_label_selector_object(term.get("labelSelector"))
        names = term.get("namespaces") or []
        ns_sel = term.get("namespaceSelector")
        self.namespaces = frozenset(names) if names or ns_sel is not None else {pod_namespace}
        self.namespace_selector = (
            selectors.from_label_selector_object(ns_sel) if ns_sel is not None else None
        )
        self.weight = weight

    def matches(self, pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if pod.namespace not in self.namespaces:
            sel = self.namespace_selector
            if sel is None:
                return False
            if not sel.empty and not sel.matches(ns_labels.get(pod.namespace)):
                return False
        return self.selector.matches(pod.labels)


class PodInfo:
    """A pod as the scheduler sees it; built once per pod object (affinity parsed lazily)."""

    __slots__ = (
        "_affinity",
        "key",
        "labels",
        "name",
        "namespace",
        "node_name",
        "non_zero_cpu",
        "non_zero_mem",
        "pod",
        "priority",
        "requests",
        "uid",
    )

    def __init__(self, pod: Obj) -> None:
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        self.pod = pod
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = meta.get("uid") or ""
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.priority: int = int(spec.get("priority") or 0)
        self.node_name: str = spec.get("nodeName") or ""
        self.requests, self.non_zero_cpu, self.non_zero_mem = pod_requests(spec)
        self._affinity: tuple[list[AffinityTerm], ...] | None = None

    @property
    def spec(self) -> Obj:
        spec: Obj = self.pod.get("spec") or {}
        return spec

    def with_node(self, node_name: str) -> PodInfo:
        """A copy placed on `node_name` (what the cache assumes before binding)."""
        return self._copy({**self.pod, "spec": {**self.spec, "nodeName": node_name}}, node_name)

    def _copy(self, pod: Obj, node_name: str) -> PodInfo:
        """This pod info for `pod` on `node_name`; everything else as it is."""
        pi = PodInfo.__new__(PodInfo)
        pi._affinity = self._affinity
        pi.key = self.key
        pi.labels = self.labels
        pi.name = self.name
        pi.namespace = self.namespace
        pi.node_name = node_name
        pi.non_zero_cpu = self.non_zero_cpu
        pi.non_zero_mem = self.non_zero_mem
        pi.pod = pod
        pi.priority = self.priority
        pi.requests = self.requests
        pi.uid = self.uid
        return pi

    def rebound(self, pod: Obj) -> PodInfo | None:
        """This (assumed) pod info for `pod`, the informer's copy of the same pod, without
        parsing it again: None unless `pod` has the same uid, spec (node included), labels
        and deletion state, i.e. unless `PodInfo(pod)` would equal this apart from `pod`."""
        meta = pod["metadata"]
        if (
            pod.get("spec") != self.pod.get("spec")
            or (meta.get("labels") or {}) != self.labels
            or (meta.get("uid") or "") != self.uid
            or bool(meta.get("deletionTimestamp"))
            != bool(self.pod["metadata"].get("deletionTimestamp"))
            or meta["name"] != self.name
            or (meta.get("namespace") or "") != self.namespace
        ):
            return None
        pi = self._copy(pod, (pod.get("spec") or {}).get("nodeName") or "")
        pi.labels = meta.get("labels") or {}
        return pi

    def _terms(self) -> tuple[list[AffinityTerm], ...]:
        if self._affinity is None:
            aff = self.spec.get("affinity") or {}
            pa, paa = aff.get("podAffinity") or {}, aff.get("podAntiAffinity") or {}
            ns = self.namespace
            req = "requiredDuringSchedulingIgnoredDuringExecution"
            pref = "preferredDuringSchedulingIgnoredDuringExecution"

            def weighted(part: Obj) -> list[AffinityTerm]:
                return [
                    AffinityTerm(w.get("podAffinityTerm") or {}, ns, int(w.get("weight") or 0))
                    for w in part.get(pref) or []
                ]

            self._affinity = (
                [AffinityTerm(t, ns) for t in pa.get(req) or []],
                [AffinityTerm(t, ns) for t in paa.get(req) or []],
                weighted(pa),
                weighted(paa),
            )
        return self._affinity

    @property
    def required_affinity_terms(self) -> list[AffinityTerm]:
        return self._terms()[0]

    @property
    def required_anti_affinity_terms(self) -> list[AffinityTerm]:
        return self._terms()[1]

    @property
    def preferred_affinity_terms(self) -> list[AffinityTerm]:
        return self._terms()[2]

    @property
    def preferred_anti_affinity_terms(self) -> list[AffinityTerm]:
        return self._terms()[3]

    @property
    def has_pod_affinity(self) -> bool:
        aff = self.spec.get("affinity")
        return bool(aff and (aff.get("podAffinity") or aff.get("podAntiAffinity")))

    @property
    def has_required_anti_affinity(self) -> bool:
        return self.has_pod_affinity and bool(self.required_anti_affinity_terms)

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, node={self.node_name!r})"


def _is_filter_taint(t: Obj) -> bool:
    return t.get("effect") in ("NoSchedule", "NoExecute")


class NodeInfo:
    """A node with the pods the scheduler knows are on it (bound or assumed)."""

    __slots__ = (
        "_changes",
        "allocatable",
        "filter_taints",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_mem",
        "pods",
        "pods_with_affinity",
        "pods_with_required_anti_affinity",
        "prefer_taints",
        "requested",
        "taints",
        "unschedulable",
    )

    def __init__(self, name: str, node: Obj | None = None) -> None:
        self.name = name
        self.node: Obj | None = None
        self.labels: dict[str, str] = {}
        self.taints: list[Obj] = []
        self.filter_taints: list[Obj] = []
        self.prefer_taints: list[Obj] = []
        self.unschedulable = False
        self.allocatable = Resource()
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.pods: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        # the owning cache's change log: every mutation appends this node, so per-node values
        # cached for a pod signature are recomputed for the changed nodes only
        self._changes: list[NodeInfo] | None = None
        if node is not None:
            self.set_node(node)

    def set_node(self, node: Obj) -> None:
        if self._changes is not None:
            self._changes.append(self)
        spec = node.get("spec") or {}
        self.node = node
        self.labels = (node.get("metadata") or {}).get("labels") or {}
        self.taints = list(spec.get("taints") or [])
        self.filter_taints = [t for t in self.taints if _is_filter_taint(t)]
        self.prefer_taints = [t for t in self.taints if t.get("effect") == "PreferNoSchedule"]
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = Resource.from_list((node.get("status") or {}).get("allocatable"))

    def add_pod(self, pi: PodInfo) -> None:
        if self._changes is not None:
            self._changes.append(self)
        old = self.pods.get(pi.key)
        if old is not None:
            self.remove_pod(old)
        self.pods[pi.key] = pi
        self.requested.add(pi.requests)
        self.requested.allowed_pod_number += 1
        self.non_zero_cpu += pi.non_zero_cpu
        self.non_zero_mem += pi.non_zero_mem
        if pi.has_pod_affinity:
            self.pods_with_affinity[pi.key] = pi
            if pi.required_anti_affinity_terms:
                self.pods_with_required_anti_affinity[pi.key] = pi

    def remove_pod(self, pi: PodInfo) -> bool:
        old = self.pods.pop(pi.key, None)
        if old is None:
            return False
        if self._changes is not None:
            self._changes.append(self)
        self.requested.sub(old.requests)
        self.requested.allowed_pod_number -= 1
        self.non_zero_cpu -= old.non_zero_cpu
        self.non_zero_mem -= old.non_zero_mem
        self.pods_with_affinity.pop(pi.key, None)
        self.pods_with_required_anti_affinity.pop(pi.key, None)
        return True

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)}, requested={self.requested})"


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """`Toleration.ToleratesTaint`: effect (empty matches all), key (empty with Exists matches
    all), then Exists or Equal on the value."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def find_untolerated(taints: list[Obj], tolerations: list[Obj]) -> Obj | None:
    """The first taint none of `tolerations` tolerates, or None."""
    for taint in taints:
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None
