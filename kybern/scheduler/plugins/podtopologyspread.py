"""`PodTopologySpread`: `topologySpreadConstraints` with `whenUnsatisfiable: DoNotSchedule` filter
nodes whose domain (the value of `topologyKey`) would exceed `maxSkew` over the least loaded
domain (counting pods in the namespace matching `labelSelector` plus `matchLabelKeys`; nodes
filtered by `nodeAffinityPolicy`/`nodeTaintsPolicy`; `minDomains` honoured); `ScheduleAnyway`
constraints score nodes by the matching pods in their domains (fewer is better), as
kube-scheduler's plugin does. The cluster-level default constraints are not applied."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kybern.api import selectors
from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import HOSTNAME_LABEL, NodeInfo, PodInfo, find_untolerated
from kybern.scheduler.plugins.nodeaffinity import RequiredNodeAffinity

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = ERR_REASON_CONSTRAINTS_NOT_MATCH + " (missing required label)"
_FILTER_KEY = "PreFilterPodTopologySpread"
_SCORE_KEY = "PreScorePodTopologySpread"


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: selectors.LabelSelector
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False

    def includes(self, pod: PodInfo, node: NodeInfo, affinity: RequiredNodeAffinity) -> bool:
        """`matchNodeInclusionPolicies`: is `node` counted as part of the spread at all?"""
        if self.honor_affinity and not affinity.match(node):
            return False
        if self.honor_taints and node.filter_taints:
            tolerations = pod.spec.get("tolerations") or []
            if find_untolerated(node.filter_taints, tolerations) is not None:
                return False
        return True


def constraints_of(pod: PodInfo, action: str) -> list[Constraint]:
    out: list[Constraint] = []
    for c in pod.spec.get("topologySpreadConstraints") or ():
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != action:
            continue
        sel = selectors.from_label_selector_object(c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or () if k in pod.labels]
        if keys and not sel.matches_nothing:
            extra = [selectors.Requirement(k, selectors.IN, (pod.labels[k],)) for k in keys]
            sel = selectors.LabelSelector([*sel.requirements, *extra])
        out.append(
            Constraint(
                max_skew=int(c.get("maxSkew") or 1),
                topology_key=c.get("topologyKey") or "",
                selector=sel,
                min_domains=int(c.get("minDomains") or 1),
                honor_affinity=(c.get("nodeAffinityPolicy") or "Honor") == "Honor",
                honor_taints=(c.get("nodeTaintsPolicy") or "Ignore") == "Honor",
            )
        )
    return out


def count_matching(node: NodeInfo, namespace: str, sel: selectors.LabelSelector) -> int:
    n = 0
    for p in node.pods.values():
        if p.namespace != namespace or p.pod["metadata"].get("deletionTimestamp"):
            continue
        if sel.matches(p.labels):
            n += 1
    return n


def _has_keys(node: NodeInfo, constraints: list[Constraint]) -> bool:
    return all(c.topology_key in node.labels for c in constraints)


@dataclass
class _FilterState:
    constraints: list[Constraint]
    counts: dict[tuple[str, str], int]
    min_counts: list[int]
    domains: list[int]


@dataclass
class _ScoreState:
    constraints: list[Constraint]
    ignored: set[str]
    counts: dict[tuple[str, str], int]
    weights: list[float]


class PodTopologySpread:
    name: ClassVar[str] = "PodTopologySpread"

    def __init__(self, handle: fw.Handle) -> None:
        self.handle = handle

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [
            fw.ClusterEvent(fw.ASSIGNED_POD, fw.ActionType.ALL),
            fw.ClusterEvent(
                fw.NODE,
                fw.ActionType.ADD
                | fw.ActionType.DELETE
                | fw.ActionType.UPDATE_NODE_LABEL
                | fw.ActionType.UPDATE_NODE_TAINT,
            ),
        ]

    def pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        constraints = constraints_of(pod, "DoNotSchedule")
        if not constraints:
            return None, fw.SKIP
        affinity = RequiredNodeAffinity(pod)
        counts: dict[tuple[str, str], int] = {}
        for node in self.handle.snapshot.node_infos():
            if not _has_keys(node, constraints):
                continue
            for c in constraints:
                if not c.includes(pod, node, affinity):
                    continue
                pair = (c.topology_key, node.labels[c.topology_key])
                counts[pair] = counts.get(pair, 0) + count_matching(node, pod.namespace, c.selector)
        min_counts: list[int] = []
        domains: list[int] = []
        for c in constraints:
            values = [n for (k, _), n in counts.items() if k == c.topology_key]
            domains.append(len(values))
            min_counts.append(min(values) if values else 0)
        state.write(_FILTER_KEY, _FilterState(constraints, counts, min_counts, domains))
        return None, None

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        s: _FilterState | None = state.get(_FILTER_KEY)
        if s is None:
            return None
        for i, c in enumerate(s.constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                return fw.unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH)
            min_match = s.min_counts[i] if s.domains[i] >= c.min_domains else 0
            self_match = 1 if c.selector.matches(pod.labels) else 0
            skew = s.counts.get((c.topology_key, value), 0) + self_match - min_match
            if skew > c.max_skew:
                return fw.unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
        return None

    def pre_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> fw.Status | None:
        constraints = constraints_of(pod, "ScheduleAnyway")
        if not constraints:
            return fw.SKIP
        ignored = {n.name for n in nodes if not _has_keys(n, constraints)}
        counts: dict[tuple[str, str], int] = {}
        for n in nodes:
            if n.name in ignored:
                continue
            for c in constraints:
                if c.topology_key != HOSTNAME_LABEL:
                    counts.setdefault((c.topology_key, n.labels[c.topology_key]), 0)
        weights = []
        for c in constraints:
            if c.topology_key == HOSTNAME_LABEL:
                size = len(nodes) - len(ignored)
            else:
                size = sum(1 for k, _ in counts if k == c.topology_key)
            weights.append(math.log(size + 2))
        affinity = RequiredNodeAffinity(pod)
        for node in self.handle.snapshot.node_infos():
            if not _has_keys(node, constraints):
                continue
            for c in constraints:
                pair = (c.topology_key, node.labels[c.topology_key])
                if pair not in counts or not c.includes(pod, node, affinity):
                    continue
                counts[pair] += count_matching(node, pod.namespace, c.selector)
        state.write(_SCORE_KEY, _ScoreState(constraints, ignored, counts, weights))
        return None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        s: _ScoreState | None = state.get(_SCORE_KEY)
        if s is None or node.name in s.ignored:
            return 0
        total = 0.0
        for i, c in enumerate(s.constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                continue
            if c.topology_key == HOSTNAME_LABEL:
                cnt = count_matching(node, pod.namespace, c.selector)
            else:
                cnt = s.counts.get((c.topology_key, value), 0)
            total += cnt * s.weights[i] + (c.max_skew - 1)
        return math.floor(total + 0.5)  # Go's math.Round for non-negative values

    def normalize_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]
    ) -> fw.Status | None:
        s: _ScoreState | None = state.get(_SCORE_KEY)
        if s is None:
            return None
        live = [sc for n, sc in zip(nodes, scores, strict=True) if n.name not in s.ignored]
        if not live:
            scores[:] = [0] * len(scores)
            return None
        lo, hi = min(live), max(live)
        for i, n in enumerate(nodes):
            if n.name in s.ignored:
                scores[i] = 0
            elif hi == 0:
                scores[i] = fw.MAX_NODE_SCORE
            else:
                scores[i] = fw.MAX_NODE_SCORE * (hi + lo - scores[i]) // hi
        return None


def new_pod_topology_spread(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return PodTopologySpread(handle)
