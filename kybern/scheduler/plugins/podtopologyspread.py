"""`PodTopologySpread`: `topologySpreadConstraints` with `whenUnsatisfiable: DoNotSchedule` filter
nodes whose domain (the value of `topologyKey`) would exceed `maxSkew` over the least loaded
domain (counting pods in the namespace matching `labelSelector` plus `matchLabelKeys`; nodes
filtered by `nodeAffinityPolicy`/`nodeTaintsPolicy`; `minDomains` honoured); `ScheduleAnyway`
constraints score nodes by the matching pods in their domains (fewer is better), as
kube-scheduler's plugin does. A pod with no constraints of its own gets the default constraints
(args `defaultingType: System`, the default: hostname maxSkew 3 and zone maxSkew 5, both
`ScheduleAnyway`; `List`: args `defaultConstraints`) with the selector of its Services and its
controlling ReplicationController/ReplicaSet/StatefulSet (`helper.DefaultSelector`); none when
that selector is empty. As in kube-scheduler 1.32: only System defaults keep scoring nodes that
lack a constraint's key (a zoneless node is scored by hostname alone, yet adds a "" domain to the
zone weight and its pods count for nodes labelled zone=""); otherwise such nodes are filtered out,
or scored 0 and left out of the normalization. An empty `labelSelector` (`{}`) counts no pods,
and constraints sharing a topologyKey share its domains: a node counts for the last one
including it when filtering, and only the first sizes the domains for the score's weight."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kybern.api import registry, selectors
from kybern.client import informer
from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import HOSTNAME_LABEL, NodeInfo, PodInfo, find_untolerated
from kybern.scheduler.plugins.nodeaffinity import RequiredNodeAffinity

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = ERR_REASON_CONSTRAINTS_NOT_MATCH + " (missing required label)"
_FILTER_KEY = "PreFilterPodTopologySpread"
_SCORE_KEY = "PreScorePodTopologySpread"
ZONE_LABEL = "topology.kubernetes.io/zone"
SYSTEM_DEFAULT_CONSTRAINTS: tuple[dict[str, Any], ...] = (
    {"topologyKey": HOSTNAME_LABEL, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 3},
    {"topologyKey": ZONE_LABEL, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 5},
)
SERVICES, REPLICATION_CONTROLLERS, REPLICA_SETS, STATEFUL_SETS = (
    next(r for r in registry.BUILTIN if r.kind == kind)
    for kind in ("Service", "ReplicationController", "ReplicaSet", "StatefulSet")
)
_NS_INDEX = "namespace"


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: selectors.LabelSelector
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False
    # what counts the pods on nodes: None for an empty selector, which `countPodsMatchSelector`
    # counts as no pods (though it matches the incoming pod itself)
    counted: selectors.LabelSelector | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counted", None if self.selector.empty else self.selector)

    def includes(self, pod: PodInfo, node: NodeInfo, affinity: RequiredNodeAffinity) -> bool:
        """`matchNodeInclusionPolicies`: is `node` counted as part of the spread at all?"""
        if self.honor_affinity and not affinity.match(node):
            return False
        if self.honor_taints and node.filter_taints:
            tolerations = pod.spec.get("tolerations") or []
            if find_untolerated(node.filter_taints, tolerations) is not None:
                return False
        return True


def constraints_of(
    pod: PodInfo, action: str, specs: Any = None, selector: selectors.LabelSelector | None = None
) -> list[Constraint]:
    """The pod's own constraints for `action` (or those of `specs`, all with `selector`)."""
    out: list[Constraint] = []
    if specs is None:
        specs = pod.spec.get("topologySpreadConstraints") or ()
    for c in specs:
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != action:
            continue
        if selector is not None:
            sel = selector
            keys = []
        else:
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


def count_matching(node: NodeInfo, namespace: str, sel: selectors.LabelSelector | None) -> int:
    """`countPodsMatchSelector` with `Constraint.counted` (None: no pods)."""
    if sel is None:
        return 0
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

    def __init__(
        self,
        handle: fw.Handle,
        *,
        defaulting_type: str = "System",
        default_constraints: list[dict[str, Any]] | None = None,
    ) -> None:
        self.handle = handle
        if defaulting_type not in ("System", "List"):
            raise ValueError(f"defaultingType: Unsupported value: {defaulting_type!r}")
        if defaulting_type == "System" and default_constraints:
            raise ValueError("defaultConstraints: Invalid value: must be empty for System")
        self.system_defaulted = defaulting_type == "System"
        self.default_constraints: tuple[dict[str, Any], ...] = (
            SYSTEM_DEFAULT_CONSTRAINTS
            if self.system_defaulted
            else tuple(default_constraints or ())
        )
        self.services: informer.Informer | None = None
        self.rcs = self.rss = self.sss = self.services
        factory = handle.informer_factory
        if self.default_constraints and factory is not None:
            self.services = factory.informer(SERVICES)
            self.services.add_indexer(_NS_INDEX, _namespace_of)
            self.rcs = factory.informer(REPLICATION_CONTROLLERS)
            self.rss = factory.informer(REPLICA_SETS)
            self.sss = factory.informer(STATEFUL_SETS)

    def default_selector(self, pod: PodInfo) -> selectors.LabelSelector:
        """`helper.DefaultSelector`: the labels of the Services in the pod's namespace whose
        selector matches it, ANDed with the selector of its controlling RC/RS/StatefulSet."""
        merged: dict[str, str] = {}
        if self.services is not None:
            for svc in self.services.by_index(_NS_INDEX, pod.namespace):
                sel = (svc.get("spec") or {}).get("selector")
                if sel is None:  # a nil selector matches nothing
                    continue
                if all(pod.labels.get(k) == v for k, v in sel.items()):
                    merged.update(sel)
        extra: tuple[selectors.Requirement, ...] = ()
        owner = next(
            (r for r in pod.pod["metadata"].get("ownerReferences") or () if r.get("controller")),
            None,
        )
        if owner is not None:
            kind, api, name = owner.get("kind"), owner.get("apiVersion"), owner.get("name") or ""
            if kind == "ReplicationController" and api == "v1" and self.rcs is not None:
                rc = self.rcs.get(name, pod.namespace)
                if rc is not None:
                    merged.update((rc.get("spec") or {}).get("selector") or {})
            elif api == "apps/v1" and kind in ("ReplicaSet", "StatefulSet"):
                inf = self.rss if kind == "ReplicaSet" else self.sss
                ctl = inf.get(name, pod.namespace) if inf is not None else None
                if ctl is not None:
                    try:
                        sel = selectors.from_label_selector_object(
                            (ctl.get("spec") or {}).get("selector")
                        )
                    except Exception:  # an invalid selector adds nothing
                        sel = selectors.LabelSelector.nothing()
                    if not sel.matches_nothing:
                        extra = sel.requirements
        if not merged and not extra:
            return selectors.LabelSelector.everything()
        reqs = [selectors.Requirement(k, selectors.EQUALS, (v,)) for k, v in merged.items()]
        return selectors.LabelSelector([*reqs, *extra])

    def _constraints(self, pod: PodInfo, action: str) -> list[Constraint]:
        """`getConstraints`: the pod's own, else the defaults with the pod's default selector."""
        if pod.spec.get("topologySpreadConstraints") or not self.default_constraints:
            return constraints_of(pod, action)
        if not any(
            (c.get("whenUnsatisfiable") or "DoNotSchedule") == action
            for c in self.default_constraints
        ):
            return []
        sel = self.default_selector(pod)
        if sel.empty:
            return []
        return constraints_of(pod, action, self.default_constraints, sel)

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
        constraints = self._constraints(pod, "DoNotSchedule")
        if not constraints:
            return None, fw.SKIP
        affinity = RequiredNodeAffinity(pod)
        counts: dict[tuple[str, str], int] = {}
        # kube 1.32 sets a node's count per (key, value): of constraints sharing a key, the
        # last one including the node wins (kubernetes#129067, fixed in 1.33)
        shared = len({c.topology_key for c in constraints}) < len(constraints)
        order = constraints[::-1] if shared else constraints
        for node in self.handle.snapshot.node_infos():
            if not _has_keys(node, constraints):
                continue
            seen: set[str] | None = set() if shared else None
            for c in order:
                if not c.includes(pod, node, affinity):
                    continue
                if seen is not None:
                    if c.topology_key in seen:
                        continue
                    seen.add(c.topology_key)
                pair = (c.topology_key, node.labels[c.topology_key])
                counts[pair] = counts.get(pair, 0) + count_matching(node, pod.namespace, c.counted)
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
        constraints = self._constraints(pod, "ScheduleAnyway")
        if not constraints:
            return fw.SKIP
        # system defaults don't require every key: a node without a zone still spreads by host
        require_all = bool(pod.spec.get("topologySpreadConstraints")) or not self.system_defaulted
        ignored = {n.name for n in nodes if not _has_keys(n, constraints)} if require_all else set()
        counts: dict[tuple[str, str], int] = {}
        for n in nodes:
            if n.name in ignored:
                continue
            for c in constraints:
                if c.topology_key != HOSTNAME_LABEL:
                    counts.setdefault((c.topology_key, n.labels.get(c.topology_key, "")), 0)
        weights = []
        sized: set[str] = set()
        for c in constraints:
            if c.topology_key == HOSTNAME_LABEL:
                size = len(nodes) - len(ignored)
            elif c.topology_key in sized:
                size = 0  # kube 1.32: a shared (key, value) domain is sized for the first only
            else:
                sized.add(c.topology_key)
                size = sum(1 for k, _ in counts if k == c.topology_key)
            weights.append(math.log(size + 2))
        affinity = RequiredNodeAffinity(pod)
        for node in self.handle.snapshot.node_infos():
            if require_all and not _has_keys(node, constraints):
                continue
            for c in constraints:
                pair = (c.topology_key, node.labels.get(c.topology_key, ""))
                if pair not in counts or not c.includes(pod, node, affinity):
                    continue
                counts[pair] += count_matching(node, pod.namespace, c.counted)
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
                cnt = count_matching(node, pod.namespace, c.counted)
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


def _namespace_of(obj: dict[str, Any]) -> list[str]:
    return [obj["metadata"].get("namespace") or ""]


def new_pod_topology_spread(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return PodTopologySpread(
        handle,
        defaulting_type=args.get("defaultingType") or "System",
        default_constraints=list(args.get("defaultConstraints") or ()),
    )
