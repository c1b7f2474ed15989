"""`NodeAffinity`: the pod's `nodeSelector` and required node affinity (terms ORed; inside a term
`matchExpressions` on labels with In/NotIn/Exists/DoesNotExist/Gt/Lt and `matchFields` on
`metadata.name` ANDed) filter nodes, and preferred terms score them by summed weight. Also
`default_normalize_score`, the scale-to-100 helper other score plugins share."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"
_STATE_KEY = "PreFilterNodeAffinity"
NO_NODE_AFFINITY_SIGNATURE = fw.freeze([None, None])  # `sign_pod` without selector or affinity
_SCORE_KEY = "PreScoreNodeAffinity"
NodeMatch = Callable[[NodeInfo], bool]


def _int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def _label_requirement(req: Mapping[str, Any]) -> NodeMatch:
    key, op = req.get("key") or "", req.get("operator")
    values = frozenset(req.get("values") or ())
    if op == "In":
        return lambda n: key in n.labels and n.labels[key] in values
    if op == "NotIn":
        return lambda n: n.labels.get(key) not in values if key in n.labels else True
    if op == "Exists":
        return lambda n: key in n.labels
    if op == "DoesNotExist":
        return lambda n: key not in n.labels
    if op in ("Gt", "Lt") and len(values) == 1:
        bound = _int(next(iter(values)))
        gt = op == "Gt"

        def compare(n: NodeInfo) -> bool:
            have = _int(n.labels[key]) if key in n.labels else None
            if have is None or bound is None:
                return False
            return have > bound if gt else have < bound

        return compare
    return lambda n: False  # an invalid requirement matches nothing, as kube's does


def _field_requirement(req: Mapping[str, Any]) -> NodeMatch:
    key, op = req.get("key"), req.get("operator")
    values = frozenset(req.get("values") or ())
    if key != "metadata.name":
        return lambda n: False
    if op == "In":
        return lambda n: n.name in values
    if op == "NotIn":
        return lambda n: n.name not in values
    return lambda n: False


def compile_term(term: Mapping[str, Any]) -> NodeMatch:
    """One `NodeSelectorTerm`; a term without requirements matches nothing."""
    checks = [_label_requirement(r) for r in term.get("matchExpressions") or ()]
    checks += [_field_requirement(r) for r in term.get("matchFields") or ()]
    if not checks:
        return lambda n: False
    if len(checks) == 1:
        return checks[0]
    return lambda n: all(c(n) for c in checks)


class RequiredNodeAffinity:
    """`nodeaffinity.RequiredNodeAffinity`: nodeSelector AND (any required term)."""

    __slots__ = ("_selector", "_terms")

    def __init__(self, pod: PodInfo) -> None:
        spec = pod.spec
        self._selector: list[tuple[str, str]] = list((spec.get("nodeSelector") or {}).items())
        na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        self._terms: list[NodeMatch] | None = (
            [compile_term(t) for t in req.get("nodeSelectorTerms") or ()]
            if isinstance(req, dict)
            else None
        )

    @property
    def empty(self) -> bool:
        return not self._selector and self._terms is None

    def match(self, node: NodeInfo) -> bool:
        labels = node.labels
        for k, v in self._selector:
            if labels.get(k) != v:
                return False
        if self._terms is None:
            return True
        return any(t(node) for t in self._terms)


def node_names_from_terms(pod: PodInfo) -> set[str] | None:
    """The node names every required term restricts to through `metadata.name In`, or None."""
    na = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = req.get("nodeSelectorTerms") or []
    if not terms:
        return None
    names: set[str] = set()
    for t in terms:
        fields = [
            f
            for f in t.get("matchFields") or ()
            if f.get("key") == "metadata.name" and f.get("operator") == "In"
        ]
        if not fields:
            return None
        term_names = set(fields[0].get("values") or ())
        for f in fields[1:]:
            term_names &= set(f.get("values") or ())
        names |= term_names
    return names


def default_normalize_score(scores: list[int], reverse: bool = False) -> None:
    """kube's `DefaultNormalizeScore`: scale to 0..100 by the maximum (reversed if asked)."""
    top = max(scores, default=0)
    if top == 0:
        if reverse:
            scores[:] = [fw.MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        s = fw.MAX_NODE_SCORE * s // top
        scores[i] = fw.MAX_NODE_SCORE - s if reverse else s


def default_normalize_uniform(score: int, reverse: bool = False) -> int:
    """What `default_normalize_score` makes of scores that are all `score`."""
    if score == 0:
        return fw.MAX_NODE_SCORE if reverse else 0
    return 0 if reverse else fw.MAX_NODE_SCORE


class NodeAffinity:
    name: ClassVar[str] = "NodeAffinity"

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_LABEL)]

    def sign_pod(self, pod: PodInfo) -> Hashable:
        spec = pod.spec
        if spec.get("nodeSelector") is None and not spec.get("affinity"):
            return NO_NODE_AFFINITY_SIGNATURE
        return fw.freeze(
            [spec.get("nodeSelector"), (spec.get("affinity") or {}).get("nodeAffinity")]
        )

    def pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        spec = pod.spec
        if not spec.get("nodeSelector") and not spec.get("affinity"):
            return None, fw.SKIP  # what `RequiredNodeAffinity(pod).empty` says, unbuilt
        required = RequiredNodeAffinity(pod)
        if required.empty:
            return None, fw.SKIP
        state.write(_STATE_KEY, required)
        names = node_names_from_terms(pod)
        if names is not None:
            if not names:
                return None, fw.unresolvable(ERR_REASON_POD)
            return fw.PreFilterResult(names), None
        return None, None

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        required: RequiredNodeAffinity | None = state.get(_STATE_KEY)
        if required is None:
            required = RequiredNodeAffinity(pod)
        if required.match(node):
            return None
        return fw.unresolvable(ERR_REASON_POD)

    def filter_nodes(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, fw.Status]:
        required: RequiredNodeAffinity | None = state.get(_STATE_KEY)
        if required is None:
            required = RequiredNodeAffinity(pod)
        match = required.match
        return {i: fw.unresolvable(ERR_REASON_POD) for i, n in enumerate(nodes) if not match(n)}

    def pre_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> fw.Status | None:
        na = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
        pref = na.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        terms = [
            (int(p.get("weight") or 0), compile_term(p.get("preference") or {}))
            for p in pref
            if p.get("weight")
        ]
        if not terms:
            return fw.SKIP
        state.write(_SCORE_KEY, terms)
        return None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        terms: list[tuple[int, NodeMatch]] = state.get(_SCORE_KEY) or []
        return sum(w for w, match in terms if match(node))

    def normalize_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]
    ) -> fw.Status | None:
        default_normalize_score(scores)
        return None

    def normalize_uniform(self, state: fw.CycleState, pod: PodInfo, score: int) -> int:
        return default_normalize_uniform(score)


def new_node_affinity(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return NodeAffinity()
