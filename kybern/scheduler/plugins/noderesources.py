"""`NodeResourcesFit` (does the pod's effective request fit the node's allocatable minus what its
pods request: CPU, memory, ephemeral storage, pod slots and extended resources; scored
LeastAllocated or MostAllocated over weighted resources) and `NodeResourcesBalancedAllocation`
(prefer nodes whose CPU and memory fractions stay close). Messages are kube-scheduler's
(`Insufficient cpu`, `Too many pods`)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, ClassVar

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import CPU, EPHEMERAL_STORAGE, MEMORY, NodeInfo, PodInfo

LEAST_ALLOCATED, MOST_ALLOCATED = "LeastAllocated", "MostAllocated"
DEFAULT_RESOURCES: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))
MAX = fw.MAX_NODE_SCORE


def _resources(args: Mapping[str, Any]) -> list[tuple[str, int]]:
    res = args.get("resources")
    if not res:
        return list(DEFAULT_RESOURCES)
    return [(r["name"], int(r.get("weight") or 1)) for r in res]


def least_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX // capacity


class NodeResourcesFit:
    name: ClassVar[str] = "NodeResourcesFit"

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.ignored = set(args.get("ignoredResources") or ())
        self.ignored_groups = set(args.get("ignoredResourceGroups") or ())
        strategy = args.get("scoringStrategy") or {}
        self.strategy = strategy.get("type") or LEAST_ALLOCATED
        if self.strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
            raise ValueError(f"scoring strategy {self.strategy!r} is not supported")
        self.resources = _resources(strategy)
        self._scorer = (
            least_requested_score if self.strategy == LEAST_ALLOCATED else most_requested_score
        )

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [
            fw.ClusterEvent(
                fw.ASSIGNED_POD, fw.ActionType.DELETE | fw.ActionType.UPDATE_POD_SCALE_DOWN
            ),
            fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_ALLOCATABLE),
        ]

    def sign_pod(self, pod: PodInfo) -> Hashable:
        r = pod.requests
        scalar = tuple(sorted(r.scalar.items())) if r.scalar else ()
        return (
            r.milli_cpu,
            r.memory,
            r.ephemeral_storage,
            scalar,
            pod.non_zero_cpu,
            pod.non_zero_mem,
        )

    def _ignored(self, name: str) -> bool:
        if name in self.ignored:
            return True
        group = name.split("/", 1)[0] if "/" in name else ""
        return bool(group) and group in self.ignored_groups

    def insufficient(self, pod: PodInfo, node: NodeInfo) -> list[tuple[str, bool]]:
        """kube's `fitsRequest`: (reason, unresolvable) for each resource that does not fit;
        unresolvable when the request exceeds the node's allocatable outright."""
        out: list[tuple[str, bool]] = []
        alloc, used, req = node.allocatable, node.requested, pod.requests
        if used.allowed_pod_number + 1 > alloc.allowed_pod_number:
            out.append(("Too many pods", alloc.allowed_pod_number < 1))
        if not (req.milli_cpu or req.memory or req.ephemeral_storage or req.scalar):
            return out
        if req.milli_cpu and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
            out.append(("Insufficient cpu", req.milli_cpu > alloc.milli_cpu))
        if req.memory and req.memory > alloc.memory - used.memory:
            out.append(("Insufficient memory", req.memory > alloc.memory))
        if req.ephemeral_storage and (
            req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
        ):
            out.append(
                ("Insufficient ephemeral-storage", req.ephemeral_storage > alloc.ephemeral_storage)
            )
        for name, q in req.scalar.items():
            if not q or self._ignored(name):
                continue
            have = alloc.scalar.get(name, 0)
            if q > have - used.scalar.get(name, 0):
                out.append((f"Insufficient {name}", q > have))
        return out

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        alloc, used, req = node.allocatable, node.requested, pod.requests
        # the common case inline: pod slots, CPU and memory fit, nothing else requested
        if (
            used.allowed_pod_number < alloc.allowed_pod_number
            and req.milli_cpu <= alloc.milli_cpu - used.milli_cpu
            and req.memory <= alloc.memory - used.memory
            and not req.ephemeral_storage
            and not req.scalar
        ):
            return None
        bad = self.insufficient(pod, node)
        if not bad:
            return None
        code = (
            fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
            if any(u for _, u in bad)
            else fw.Code.UNSCHEDULABLE
        )
        return fw.Status(code, *(r for r, _ in bad))

    def filter_nodes(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, fw.Status]:
        req = pod.requests
        c, m = req.milli_cpu, req.memory
        suspects: Iterable[int]
        if req.ephemeral_storage or req.scalar:
            suspects = range(len(nodes))
        else:
            suspects = [
                i
                for i, n in enumerate(nodes)
                if n.requested.allowed_pod_number >= n.allocatable.allowed_pod_number
                or c > n.allocatable.milli_cpu - n.requested.milli_cpu
                or m > n.allocatable.memory - n.requested.memory
            ]
        out: dict[int, fw.Status] = {}
        for i in suspects:
            st = self.filter(state, pod, nodes[i])
            if st is not None:
                out[i] = st
        return out

    def _requested(self, pod: PodInfo, node: NodeInfo, name: str) -> tuple[int, int]:
        """(allocatable, requested incl. this pod) as scoring counts them (non-zero CPU and
        memory; an extended resource the pod does not request is not counted)."""
        if name == CPU:
            return node.allocatable.milli_cpu, node.non_zero_cpu + pod.non_zero_cpu
        if name == MEMORY:
            return node.allocatable.memory, node.non_zero_mem + pod.non_zero_mem
        if name == EPHEMERAL_STORAGE:
            return (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage + pod.requests.ephemeral_storage,
            )
        want = pod.requests.scalar.get(name, 0)
        if not want:
            return 0, 0
        return node.allocatable.scalar.get(name, 0), node.requested.scalar.get(name, 0) + want

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return self.score_nodes(state, pod, [node])[0]

    def score_nodes(self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        scorer = self._scorer
        if self.resources == list(DEFAULT_RESOURCES) and self.strategy == LEAST_ALLOCATED:
            return self._least_allocated_cpu_memory(pod, nodes)
        out = []
        for n in nodes:
            total = weights = 0
            for name, w in self.resources:
                cap, req = self._requested(pod, n, name)
                if cap == 0:
                    continue
                total += scorer(req, cap) * w
                weights += w
            out.append(total // weights if weights else 0)
        return out

    def _least_allocated_cpu_memory(self, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """The default scoring (LeastAllocated, CPU and memory weight 1), inlined."""
        pc, pm = pod.non_zero_cpu, pod.non_zero_mem
        out: list[int] = []
        append = out.append
        for n in nodes:
            a = n.allocatable
            cc, cm = a.milli_cpu, a.memory
            rc, rm = n.non_zero_cpu + pc, n.non_zero_mem + pm
            if cc and cm:
                sc = (cc - rc) * MAX // cc if rc <= cc else 0
                sm = (cm - rm) * MAX // cm if rm <= cm else 0
                append((sc + sm) // 2)
            else:
                append(least_requested_score(rc, cc) if cc else least_requested_score(rm, cm))
        return out


class BalancedAllocation:
    name: ClassVar[str] = "NodeResourcesBalancedAllocation"

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.resources = [name for name, _ in _resources(args)]

    def sign_pod(self, pod: PodInfo) -> Hashable:
        r = pod.requests
        scalar = tuple(sorted(r.scalar.items())) if r.scalar else ()
        return (r.milli_cpu, r.memory, r.ephemeral_storage, scalar)

    def pre_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> fw.Status | None:
        r = pod.requests
        if not (r.milli_cpu or r.memory or r.ephemeral_storage or any(r.scalar.values())):
            return fw.SKIP  # a best-effort pod changes no fraction
        return None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return self.score_nodes(state, pod, [node])[0]

    def score_nodes(self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        req = pod.requests
        if self.resources == [CPU, MEMORY]:
            return self._cpu_memory(req.milli_cpu, req.memory, nodes)
        out: list[int] = []
        for n in nodes:
            fractions: list[float] = []
            for name in self.resources:
                cap = n.allocatable.get(name)
                if not cap:
                    continue
                want = req.get(name)
                if name not in (CPU, MEMORY) and not want:
                    continue
                fractions.append(min((n.requested.get(name) + want) / cap, 1.0))
            if len(fractions) == 2:
                std = abs(fractions[0] - fractions[1]) / 2
            elif len(fractions) > 2:
                mean = sum(fractions) / len(fractions)
                std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
            else:
                std = 0.0
            out.append(int((1 - std) * MAX))
        return out

    @staticmethod
    def _cpu_memory(pc: int, pm: int, nodes: list[NodeInfo]) -> list[int]:
        """The default resources (CPU and memory): the std deviation of two fractions is half
        their distance."""
        out: list[int] = []
        append = out.append
        for n in nodes:
            a, r = n.allocatable, n.requested
            cc, cm = a.milli_cpu, a.memory
            if cc and cm:
                fc = (r.milli_cpu + pc) / cc
                fm = (r.memory + pm) / cm
                d = (fc if fc < 1.0 else 1.0) - (fm if fm < 1.0 else 1.0)
                append(int((1 - (d if d > 0 else -d) / 2) * MAX))
            else:
                append(MAX)
        return out


def new_fit(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return NodeResourcesFit(args)


def new_balanced_allocation(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return BalancedAllocation(args)
