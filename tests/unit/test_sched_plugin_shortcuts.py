"""The in-tree plugins' shortcuts give what their general paths give: `NodeAffinity.pre_filter`
skips a pod without `nodeSelector` and `affinity` without building its `RequiredNodeAffinity`,
exactly when the built one would be empty (and so skip too); the `sign_pod` shortcuts for pods
without tolerations, node selector, node affinity or scalar requests return what the general
formulas return."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import PodInfo, tolerates
from kybern.scheduler.plugins.basic import UNSCHEDULABLE_TAINT, NodeUnschedulable
from kybern.scheduler.plugins.nodeaffinity import _STATE_KEY, NodeAffinity, RequiredNodeAffinity
from kybern.scheduler.plugins.noderesources import BalancedAllocation
from kybern.scheduler.plugins.tainttoleration import TaintToleration

REQ = "requiredDuringSchedulingIgnoredDuringExecution"
TERM = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
NODE_AFFINITIES: list[Any] = [
    None,
    {},
    {REQ: None},
    {REQ: {}},
    {REQ: {"nodeSelectorTerms": []}},
    {REQ: {"nodeSelectorTerms": [TERM]}},
    {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": TERM}]},
]


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c"}]}
    selector = draw(st.sampled_from([None, {}, {"disk": "ssd"}, "absent"]))
    if selector != "absent":
        spec["nodeSelector"] = selector
    tolerations = draw(
        st.sampled_from(
            [
                "absent",
                None,
                [],
                [{"operator": "Exists"}],
                [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
                [{"key": "a", "value": "b", "effect": "PreferNoSchedule"}],
            ]
        )
    )
    if tolerations != "absent":
        spec["tolerations"] = tolerations
    spec["containers"][0]["resources"] = draw(
        st.sampled_from(
            [
                {},
                {"requests": {"cpu": "100m", "memory": "1Gi"}},
                {"requests": {"cpu": "1", "example.com/gpu": "2", "x.io/y": "1"}},
            ]
        )
    )
    affinity = draw(st.sampled_from(["absent", None, {}, "node", "pod"]))
    if affinity == "node":
        spec["affinity"] = {"nodeAffinity": draw(st.sampled_from(NODE_AFFINITIES))}
    elif affinity == "pod":
        spec["affinity"] = {"podAffinity": {}}
    elif affinity != "absent":
        spec["affinity"] = affinity
    return spec


@settings(max_examples=300, deadline=None)
@given(specs())
def test_node_affinity_pre_filter_skips_as_the_built_affinity_says(spec: dict[str, Any]) -> None:
    pi = PodInfo({"metadata": {"name": "p", "namespace": "ns", "uid": "p"}, "spec": spec})
    state = fw.CycleState()
    result, status = NodeAffinity().pre_filter(state, pi, [])
    if RequiredNodeAffinity(pi).empty:
        assert (result, status) == (None, fw.SKIP)
    else:
        assert status is not fw.SKIP
        assert isinstance(state.get(_STATE_KEY), RequiredNodeAffinity)  # kept for the filter


@settings(max_examples=300, deadline=None)
@given(specs())
def test_sign_pod_shortcuts_are_the_general_formulas(spec: dict[str, Any]) -> None:
    pi = PodInfo({"metadata": {"name": "p", "namespace": "ns", "uid": "p"}, "spec": spec})
    s = pi.spec
    assert NodeUnschedulable().sign_pod(pi) == any(
        tolerates(t, UNSCHEDULABLE_TAINT) for t in s.get("tolerations") or ()
    )
    assert TaintToleration().sign_pod(pi) == fw.freeze(s.get("tolerations") or [])
    assert NodeAffinity().sign_pod(pi) == fw.freeze(
        [s.get("nodeSelector"), (s.get("affinity") or {}).get("nodeAffinity")]
    )
    r = pi.requests
    assert BalancedAllocation({}).sign_pod(pi) == (
        r.milli_cpu,
        r.memory,
        r.ephemeral_storage,
        tuple(sorted(r.scalar.items())),
    )
