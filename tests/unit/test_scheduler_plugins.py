"""Unit tests of the in-tree scheduler plugins about single nodes (requests, NodeResourcesFit,
BalancedAllocation, NodeAffinity, TaintToleration, NodeName, NodeUnschedulable, PrioritySort,
DefaultBinder, the registry): filter, score and normalize logic against hand-built NodeInfos
and PodInfos (no sockets), with kube-scheduler's messages, and the batch capabilities checked
against the per-node calls. Pod-to-pod plugins: test_scheduler_plugins_affinity.py."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.scheduler import framework as fw
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo, pod_requests
from kybern.scheduler.plugins import basic, in_tree
from kybern.scheduler.plugins.nodeaffinity import NodeAffinity, default_normalize_score
from kybern.scheduler.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from kybern.scheduler.plugins.tainttoleration import TaintToleration

GI = 1024**3


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: int = 110,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extra or {})}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": alloc, "capacity": alloc},
    }


def pod(
    name: str = "p",
    requests: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    namespace: str = "ns",
    node_name: str = "",
    **spec: Any,
) -> PodInfo:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if requests:
        c["resources"] = {"requests": requests}
    s: dict[str, Any] = {"containers": [c], **spec}
    if node_name:
        s["nodeName"] = node_name
    return PodInfo(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": name, "labels": labels or {}},
            "spec": s,
        }
    )


def ni(n: dict[str, Any], *pods: PodInfo) -> NodeInfo:
    info = NodeInfo(n["metadata"]["name"], n)
    for p in pods:
        info.add_pod(p)
    return info


def state() -> fw.CycleState:
    return fw.CycleState()


def reasons(st: fw.Status | None) -> tuple[str, ...]:
    return () if st is None else st.reasons


# ---- requests ------------------------------------------------------------------------------


def test_pod_requests_sum_containers_max_init_and_overhead() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m", "example.com/gpu": "1"}}},
        ],
        "initContainers": [
            {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}},
        ],
        "overhead": {"cpu": "50m", "memory": "1Mi"},
    }
    r, nz_cpu, nz_mem = pod_requests(spec)
    assert r.milli_cpu == 1000 + 50  # the init container dominates CPU
    assert r.memory == 64 * 2**20 + 2**20  # the containers dominate memory
    assert r.scalar == {"example.com/gpu": 1}
    assert nz_cpu == 1050
    assert nz_mem == max(64 * 2**20 + 200 * 2**20, 32 * 2**20) + 2**20  # b counts as 200Mi


def test_pod_requests_sidecars_add_to_containers_and_later_inits() -> None:
    spec = {
        "initContainers": [
            {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "init", "resources": {"requests": {"cpu": "2"}}},
        ],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}],
    }
    r, _, _ = pod_requests(spec)
    assert r.milli_cpu == 3000  # max(sidecar + init = 3, sidecar + container = 1.5)


def test_best_effort_pod_counts_non_zero_defaults_for_scoring() -> None:
    p = pod()
    assert p.requests.is_zero()
    assert (p.non_zero_cpu, p.non_zero_mem) == (100, 200 * 2**20)


# ---- NodeResourcesFit -------------------------------------------------------------------------


def test_fit_reports_every_insufficient_resource() -> None:
    fit = NodeResourcesFit({})
    n = ni(node("n1", cpu="1", memory="1Gi"), pod("a", {"cpu": "800m", "memory": "800Mi"}))
    st = fit.filter(state(), pod("b", {"cpu": "500m", "memory": "500Mi"}), n)
    assert st is not None and st.code == fw.Code.UNSCHEDULABLE
    assert st.reasons == ("Insufficient cpu", "Insufficient memory")
    assert fit.filter(state(), pod("c", {"cpu": "200m"}), n) is None


def test_fit_request_beyond_allocatable_is_unresolvable() -> None:
    st = NodeResourcesFit({}).filter(state(), pod("b", {"cpu": "8"}), ni(node("n1", cpu="4")))
    assert st is not None and st.code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert st.reasons == ("Insufficient cpu",)


def test_fit_pod_count_ephemeral_storage_and_extended_resources() -> None:
    fit = NodeResourcesFit({})
    full = ni(node("n1", pods=1), pod("a"))
    assert reasons(fit.filter(state(), pod("b"), full)) == ("Too many pods",)
    n = ni(node("n2", extra={"ephemeral-storage": "10Gi", "example.com/gpu": "2"}))
    assert (
        fit.filter(state(), pod("c", {"ephemeral-storage": "5Gi", "example.com/gpu": "2"}), n)
        is None
    )
    big = pod("d", {"ephemeral-storage": "20Gi", "example.com/gpu": "3", "example.com/fpga": "1"})
    assert reasons(fit.filter(state(), big, n)) == (
        "Insufficient ephemeral-storage",
        "Insufficient example.com/gpu",
        "Insufficient example.com/fpga",
    )
    ignoring = NodeResourcesFit({"ignoredResourceGroups": ["example.com"]})
    assert reasons(ignoring.filter(state(), big, n)) == ("Insufficient ephemeral-storage",)


def test_fit_least_and_most_allocated_scores() -> None:
    n = ni(node("n1", cpu="4", memory="8Gi"), pod("a", {"cpu": "1", "memory": "2Gi"}))
    p = pod("b", {"cpu": "1", "memory": "2Gi"})
    # requested after placing p: cpu 2/4, memory 4/8 -> 50 free each
    assert NodeResourcesFit({}).score(state(), p, n) == 50
    most = NodeResourcesFit({"scoringStrategy": {"type": "MostAllocated"}})
    assert most.score(state(), p, n) == 50
    weighted = NodeResourcesFit(
        {"scoringStrategy": {"resources": [{"name": "cpu", "weight": 3}, {"name": "memory"}]}}
    )
    empty = ni(node("n2", cpu="4", memory="8Gi"))
    # cpu (4000-1000)*100/4000 = 75 (w3); memory (8-2)/8 -> 75 (w1)
    assert weighted.score(state(), p, empty) == 75
    assert NodeResourcesFit({}).score(state(), p, empty) == 75
    with pytest.raises(ValueError):
        NodeResourcesFit({"scoringStrategy": {"type": "Bogus"}})


def test_fit_batch_filter_matches_per_node() -> None:
    fit = NodeResourcesFit({})
    nodes = [
        ni(node("a", cpu="1")),
        ni(node("b", cpu="1"), pod("x", {"cpu": "900m"})),
        ni(node("c", pods=1), pod("y")),
        ni(node("d", cpu="8")),
    ]
    p = pod("p", {"cpu": "500m"})
    per_node = {i: st for i, n in enumerate(nodes) if (st := fit.filter(state(), p, n))}
    assert fit.filter_nodes(state(), p, nodes) == per_node
    assert sorted(per_node) == [1, 2]


def test_balanced_allocation_prefers_even_fractions() -> None:
    ba = BalancedAllocation({})
    p = pod("p", {"cpu": "1", "memory": "1Gi"})
    even = ni(node("even", cpu="4", memory="4Gi"))  # 1/4 and 1/4
    skewed = ni(node("skewed", cpu="4", memory="16Gi"))  # 1/4 and 1/16
    assert ba.score(state(), p, even) == 100
    assert ba.score(state(), p, skewed) < 100
    assert ba.pre_score(state(), pod("best-effort"), [even]) == fw.SKIP
    assert ba.score_nodes(state(), p, [even, skewed]) == [
        ba.score(state(), p, even),
        ba.score(state(), p, skewed),
    ]


# ---- NodeAffinity -------------------------------------------------------------------------------


def _affinity(*terms: dict[str, Any], preferred: list[dict[str, Any]] | None = None) -> Any:
    na: dict[str, Any] = {}
    if terms:
        na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": list(terms)}
    if preferred:
        na["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": na}


def _run_filter(plugin: Any, p: PodInfo, n: NodeInfo) -> fw.Status | None:
    s = state()
    if hasattr(plugin, "pre_filter"):
        _, st = plugin.pre_filter(s, p, [n])
        if st is not None and st.is_skip():
            return None
        assert st is None, st
    return plugin.filter(s, p, n)


@pytest.mark.parametrize(
    ("expr", "labels", "ok"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"zone": "a"}, True),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {"zone": "c"}, False),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "c"}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "a"}, False),
        ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
        ({"key": "gpu", "operator": "Exists"}, {}, False),
        ({"key": "gpu", "operator": "DoesNotExist"}, {}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": "x"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "8"}, False),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "4"}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "x"}, False),
    ],
)
def test_node_affinity_operators(expr: dict[str, Any], labels: dict[str, str], ok: bool) -> None:
    p = pod(affinity=_affinity({"matchExpressions": [expr]}))
    st = _run_filter(NodeAffinity(), p, ni(node("n1", labels=labels)))
    if ok:
        assert st is None
    else:
        assert st is not None and st.code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert st.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_node_selector_and_terms_are_anded_terms_ored() -> None:
    p = pod(
        nodeSelector={"disk": "ssd"},
        affinity=_affinity(
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        ),
    )
    na = NodeAffinity()
    assert _run_filter(na, p, ni(node("n1", labels={"disk": "ssd", "zone": "b"}))) is None
    assert _run_filter(na, p, ni(node("n2", labels={"disk": "hdd", "zone": "b"}))) is not None
    assert _run_filter(na, p, ni(node("n3", labels={"disk": "ssd", "zone": "c"}))) is not None
    assert _run_filter(na, pod(affinity=_affinity({})), ni(node("n4"))) is not None  # empty term


def test_node_affinity_match_fields_restricts_nodes_at_pre_filter() -> None:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
    p = pod(affinity=_affinity(term))
    result, st = NodeAffinity().pre_filter(state(), p, [])
    assert st is None and result is not None and result.node_names == {"n2"}
    assert _run_filter(NodeAffinity(), p, ni(node("n1"))) is not None
    assert _run_filter(NodeAffinity(), p, ni(node("n2"))) is None
    assert NodeAffinity().pre_filter(state(), pod(), [])[1] == fw.SKIP


def test_node_affinity_preferred_scores_normalized() -> None:
    pref = [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
        {"weight": 30, "preference": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}},
    ]
    p = pod(affinity=_affinity(preferred=pref))
    nodes = [
        ni(node("x", labels={"a": "1"})),
        ni(node("y", labels={"a": "1", "b": "1"})),
        ni(node("z")),
    ]
    na, s = NodeAffinity(), state()
    assert na.pre_score(s, p, nodes) is None
    scores = [na.score(s, p, n) for n in nodes]
    assert scores == [10, 40, 0]
    na.normalize_score(s, p, nodes, scores)
    assert scores == [25, 100, 0]
    assert na.pre_score(state(), pod(), nodes) == fw.SKIP


def test_default_normalize_score() -> None:
    s = [0, 5, 10]
    default_normalize_score(s)
    assert s == [0, 50, 100]
    s = [0, 5, 10]
    default_normalize_score(s, reverse=True)
    assert s == [100, 50, 0]
    s = [0, 0]
    default_normalize_score(s, reverse=True)
    assert s == [100, 100]


# ---- TaintToleration ----------------------------------------------------------------------------

TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "value": "gpu"}, True),  # any effect, Equal by default
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # tolerates everything
        ({"key": "dedicated", "value": "cpu"}, False),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_taint_toleration_filter(toleration: dict[str, Any], ok: bool) -> None:
    st = TaintToleration().filter(
        state(), pod(tolerations=[toleration]), ni(node("n1", taints=[TAINT]))
    )
    if ok:
        assert st is None
    else:
        assert st is not None and st.code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert st.reasons == ("node(s) had untolerated taint {dedicated: gpu}",)


def test_taint_toleration_ignores_prefer_no_schedule_in_filter_and_scores_it() -> None:
    tt = TaintToleration()
    soft = {"key": "spot", "value": "", "effect": "PreferNoSchedule"}
    nodes = [
        ni(node("a", taints=[soft])),
        ni(node("b")),
        ni(node("c", taints=[soft, {**soft, "key": "x"}])),
    ]
    p = pod()
    assert all(tt.filter(state(), p, n) is None for n in nodes)
    s = state()
    tt.pre_score(s, p, nodes)
    scores = tt.score_nodes(s, p, nodes)
    assert scores == [1, 0, 2]
    tt.normalize_score(s, p, nodes, scores)
    assert scores == [50, 100, 0]
    tolerating = pod(
        tolerations=[{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}]
    )
    s = state()
    tt.pre_score(s, tolerating, nodes)
    assert tt.score_nodes(s, tolerating, nodes) == [0, 0, 1]


def test_taint_batch_filter_matches_per_node() -> None:
    tt = TaintToleration()
    nodes = [
        ni(node("a", taints=[TAINT])),
        ni(node("b")),
        ni(node("c", taints=[{**TAINT, "effect": "NoExecute"}])),
    ]
    p = pod()
    per_node = {i: st for i, n in enumerate(nodes) if (st := tt.filter(state(), p, n))}
    assert tt.filter_nodes(state(), p, nodes) == per_node
    assert sorted(per_node) == [0, 2]


# ---- NodeName, NodeUnschedulable, PrioritySort --------------------------------------------------


def test_node_name_and_node_unschedulable() -> None:
    nn = basic.NodeName()
    assert nn.filter(state(), pod(node_name="b"), ni(node("a"))) == fw.unresolvable(
        "node(s) didn't match the requested node name"
    )
    assert nn.filter(state(), pod(node_name="a"), ni(node("a"))) is None
    assert nn.pre_filter(state(), pod(), [])[1] == fw.SKIP
    nu = basic.NodeUnschedulable()
    cordoned = ni(node("a", unschedulable=True))
    assert reasons(nu.filter(state(), pod(), cordoned)) == ("node(s) were unschedulable",)
    tol = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
    assert nu.filter(state(), pod(tolerations=[tol]), cordoned) is None
    assert nu.filter_nodes(state(), pod(), [ni(node("b")), cordoned]).keys() == {1}


def test_priority_sort() -> None:
    ps = basic.PrioritySort()
    hi = fw.QueuedPodInfo(pod("hi", priority=10), timestamp=5.0)
    lo_early = fw.QueuedPodInfo(pod("lo1"), timestamp=1.0)
    lo_late = fw.QueuedPodInfo(pod("lo2"), timestamp=2.0)
    assert ps.less(hi, lo_early) and not ps.less(lo_early, hi)
    assert ps.less(lo_early, lo_late) and not ps.less(lo_late, lo_early)


def test_binding_object_shape() -> None:
    p = pod("web", namespace="prod")
    assert basic.binding_object(p, "n1") == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web", "namespace": "prod", "uid": "web"},
        "target": {"kind": "Node", "name": "n1"},
    }


# ---- the registry ------------------------------------------------------------------------------


def test_in_tree_registry_builds_every_plugin() -> None:
    reg = in_tree()
    handle = fw.Handle(snapshot=Cache())
    for name in reg.names():
        plugin = reg.factory(name)({}, handle)
        assert plugin.name == name
    with pytest.raises(ValueError, match="already exists"):
        reg.register("NodeName", basic.new_node_name)
    with pytest.raises(ValueError, match="not registered"):
        reg.factory("Nope")
