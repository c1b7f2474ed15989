"""`InterPodAffinity` (basic): required pod affinity (every term must find a matching pod in the
node's topology domain, or the pod is the first of a self-affine group), required pod
anti-affinity (no matching pod in the domain) and the symmetric rule that existing pods'
required anti-affinity must not match the incoming pod; preferred affinity and anti-affinity
terms of both sides score topology domains, normalized to 0..100 as kube-scheduler does.
Term namespaces come from `namespaces`, `namespaceSelector` (namespace labels from the
handle) or the pod's own namespace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import AffinityTerm, NodeInfo, PodInfo

ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1
_FILTER_KEY = "PreFilterInterPodAffinity"
_SCORE_KEY = "PreScoreInterPodAffinity"
Pair = tuple[str, str]


@dataclass
class _FilterState:
    existing_anti: dict[Pair, int]
    affinity: dict[Pair, int]
    anti: dict[Pair, int]


def _bump(counts: dict[Pair, int], key: str, node: NodeInfo, n: int = 1) -> None:
    value = node.labels.get(key)
    if value is not None:
        pair = (key, value)
        counts[pair] = counts.get(pair, 0) + n


class InterPodAffinity:
    name: ClassVar[str] = "InterPodAffinity"

    def __init__(self, args: Mapping[str, Any], handle: fw.Handle) -> None:
        self.handle = handle
        self.hard_weight = int(args.get("hardPodAffinityWeight", HARD_POD_AFFINITY_WEIGHT))

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [
            fw.ClusterEvent(fw.ASSIGNED_POD, fw.ActionType.ALL),
            fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_LABEL),
        ]

    def pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        snap = self.handle.snapshot
        with_anti = snap.have_pods_with_required_anti_affinity()
        aff = pod.required_affinity_terms if pod.has_pod_affinity else []
        anti = pod.required_anti_affinity_terms if pod.has_pod_affinity else []
        if not aff and not anti and not with_anti:
            return None, fw.SKIP
        ns_labels = self.handle.namespace_labels
        s = _FilterState({}, {}, {})
        for node in with_anti:
            for p in node.pods_with_required_anti_affinity.values():
                for t in p.required_anti_affinity_terms:
                    if t.matches(pod, ns_labels):
                        _bump(s.existing_anti, t.topology_key, node)
        if aff or anti:
            for node in snap.node_infos():
                for p in node.pods.values():
                    if aff and all(t.matches(p, ns_labels) for t in aff):
                        for t in aff:
                            _bump(s.affinity, t.topology_key, node)
                    for t in anti:
                        if t.matches(p, ns_labels):
                            _bump(s.anti, t.topology_key, node)
        state.write(_FILTER_KEY, s)
        return None, None

    def _satisfies_affinity(self, s: _FilterState, pod: PodInfo, node: NodeInfo) -> bool:
        terms = pod.required_affinity_terms
        pods_exist = True
        for t in terms:
            value = node.labels.get(t.topology_key)
            if value is None:
                return False
            if s.affinity.get((t.topology_key, value), 0) <= 0:
                pods_exist = False
        if pods_exist:
            return True
        ns_labels = self.handle.namespace_labels
        return not s.affinity and all(t.matches(pod, ns_labels) for t in terms)

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        s: _FilterState | None = state.get(_FILTER_KEY)
        if s is None:
            return None
        for (key, value), n in s.existing_anti.items():
            if n > 0 and node.labels.get(key) == value:
                return fw.unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY)
        if not pod.has_pod_affinity:
            return None
        if pod.required_affinity_terms and not self._satisfies_affinity(s, pod, node):
            return fw.unresolvable(ERR_REASON_AFFINITY)
        for t in pod.required_anti_affinity_terms:
            v = node.labels.get(t.topology_key)
            if v is not None and s.anti.get((t.topology_key, v), 0) > 0:
                return fw.unschedulable(ERR_REASON_ANTI_AFFINITY)
        return None

    # ---- scoring ---------------------------------------------------------------------------

    def _score_pair(
        self, scores: dict[Pair, int], pod: PodInfo, existing: PodInfo, node: NodeInfo
    ) -> None:
        ns_labels = self.handle.namespace_labels
        terms: list[tuple[AffinityTerm, int]] = []
        if pod.has_pod_affinity:
            terms += [
                (t, t.weight)
                for t in pod.preferred_affinity_terms
                if t.matches(existing, ns_labels)
            ]
            terms += [
                (t, -t.weight)
                for t in pod.preferred_anti_affinity_terms
                if t.matches(existing, ns_labels)
            ]
        if existing.has_pod_affinity:
            if self.hard_weight > 0:
                terms += [
                    (t, self.hard_weight)
                    for t in existing.required_affinity_terms
                    if t.matches(pod, ns_labels)
                ]
            terms += [
                (t, t.weight)
                for t in existing.preferred_affinity_terms
                if t.matches(pod, ns_labels)
            ]
            terms += [
                (t, -t.weight)
                for t in existing.preferred_anti_affinity_terms
                if t.matches(pod, ns_labels)
            ]
        for t, w in terms:
            _bump(scores, t.topology_key, node, w)

    def pre_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> fw.Status | None:
        snap = self.handle.snapshot
        has_pref = pod.has_pod_affinity and bool(
            pod.preferred_affinity_terms or pod.preferred_anti_affinity_terms
        )
        with_affinity = snap.have_pods_with_affinity()
        if not has_pref and not with_affinity:
            return fw.SKIP
        scores: dict[Pair, int] = {}
        for node in snap.node_infos() if has_pref else with_affinity:
            existing = node.pods if has_pref else node.pods_with_affinity
            for p in existing.values():
                self._score_pair(scores, pod, p, node)
        if not any(scores.values()):
            return fw.SKIP
        state.write(_SCORE_KEY, scores)
        return None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[Pair, int] = state.get(_SCORE_KEY) or {}
        total = 0
        labels = node.labels
        for (key, value), w in scores.items():
            if labels.get(key) == value:
                total += w
        return total

    def normalize_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]
    ) -> fw.Status | None:
        if not scores:
            return None
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = fw.MAX_NODE_SCORE * (s - lo) // diff if diff > 0 else 0
        return None


def new_inter_pod_affinity(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return InterPodAffinity(args, handle)
