"""`TaintToleration`: a node with a `NoSchedule` or `NoExecute` taint the pod does not tolerate is
filtered out (`node(s) had untolerated taint {key: value}`); `PreferNoSchedule` taints the pod
does not tolerate lower the node's score (fewer is better)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo, find_untolerated, tolerates
from kybern.scheduler.plugins.nodeaffinity import (
    default_normalize_score,
    default_normalize_uniform,
)

_SCORE_KEY = "PreScoreTaintToleration"
NO_TOLERATIONS_SIGNATURE = fw.freeze([])  # `sign_pod` of a pod without tolerations


def untolerated_taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


class TaintToleration:
    name: ClassVar[str] = "TaintToleration"

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_TAINT)]

    def sign_pod(self, pod: PodInfo) -> Hashable:
        tolerations = pod.spec.get("tolerations")
        return fw.freeze(tolerations) if tolerations else NO_TOLERATIONS_SIGNATURE

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        taints = node.filter_taints
        if not taints:
            return None
        taint = find_untolerated(taints, pod.spec.get("tolerations") or [])
        if taint is None:
            return None
        return fw.unresolvable(untolerated_taint_reason(taint))

    def filter_nodes(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, fw.Status]:
        out: dict[int, fw.Status] = {}
        for i in [i for i, n in enumerate(nodes) if n.filter_taints]:
            st = self.filter(state, pod, nodes[i])
            if st is not None:
                out[i] = st
        return out

    def pre_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> fw.Status | None:
        tolerations = [
            t
            for t in pod.spec.get("tolerations") or []
            if t.get("effect") in (None, "", "PreferNoSchedule")
        ]
        state.write(_SCORE_KEY, tolerations)
        return None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return self.score_nodes(state, pod, [node])[0]

    def score_nodes(self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        tolerations: list[dict[str, Any]] = state.get(_SCORE_KEY) or []
        out = [0] * len(nodes)
        for i in [i for i, n in enumerate(nodes) if n.prefer_taints]:
            out[i] = sum(
                1
                for taint in nodes[i].prefer_taints
                if not any(tolerates(t, taint) for t in tolerations)
            )
        return out

    def normalize_score(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]
    ) -> fw.Status | None:
        default_normalize_score(scores, reverse=True)
        return None

    def normalize_uniform(self, state: fw.CycleState, pod: PodInfo, score: int) -> int:
        return default_normalize_uniform(score, reverse=True)


def new_taint_toleration(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return TaintToleration()
