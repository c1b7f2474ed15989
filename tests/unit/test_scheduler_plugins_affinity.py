"""Unit tests of the scheduler plugins that look at other pods — PodTopologySpread (max skew,
node inclusion policies, minDomains, ScheduleAnyway scoring) and InterPodAffinity (required
affinity, the first pod of a self-affine group, anti-affinity both ways, namespace selectors,
preferred terms) — over small caches built by hand, no sockets."""

from __future__ import annotations

from typing import Any

from kybern.scheduler import framework as fw
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import PodInfo
from kybern.scheduler.plugins.interpodaffinity import InterPodAffinity
from kybern.scheduler.plugins.podtopologyspread import PodTopologySpread


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    alloc = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": alloc},
    }


def pod(
    name: str = "p", labels: dict[str, str] | None = None, namespace: str = "ns", **spec: Any
) -> PodInfo:
    return PodInfo(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c"}], **spec},
        }
    )


def state() -> fw.CycleState:
    return fw.CycleState()


def reasons(st: fw.Status | None) -> tuple[str, ...]:
    return () if st is None else st.reasons


# ---- PodTopologySpread --------------------------------------------------------------------------


def _cluster(*nodes: tuple[dict[str, Any], list[PodInfo]]) -> Cache:
    cache = Cache()
    for n, pods in nodes:
        cache.add_node(n)
        for p in pods:
            cache.add_pod(p.with_node(n["metadata"]["name"]))
    return cache


def _spread(max_skew: int = 1, when: str = "DoNotSchedule", **extra: Any) -> dict[str, Any]:
    return {
        "maxSkew": max_skew,
        "topologyKey": "zone",
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def web(name: str) -> PodInfo:
    return pod(name, labels={"app": "web"})


def test_topology_spread_filter_max_skew() -> None:
    cache = _cluster(
        (node("a1", labels={"zone": "a"}), [web("w1"), web("w2")]),
        (node("b1", labels={"zone": "b"}), [web("w3")]),
        (node("c1", labels={"zone": "c"}), []),
        (node("x", labels={}), []),
    )
    plugin = PodTopologySpread(fw.Handle(snapshot=cache))
    p = pod("new", labels={"app": "web"}, topologySpreadConstraints=[_spread()])
    s = state()
    assert plugin.pre_filter(s, p, cache.node_infos()) == (None, None)
    verdicts = {n.name: plugin.filter(s, p, n) for n in cache.node_infos()}
    assert verdicts["c1"] is None  # 0 + 1 - 0 = 1
    assert reasons(verdicts["b1"]) == ("node(s) didn't match pod topology spread constraints",)
    assert verdicts["a1"] is not None
    assert (
        verdicts["x"] is not None and verdicts["x"].code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    )
    assert verdicts["x"].reasons == (
        "node(s) didn't match pod topology spread constraints (missing required label)",
    )
    assert plugin.pre_filter(state(), pod(), [])[1] == fw.SKIP


def test_topology_spread_honours_node_affinity_and_min_domains() -> None:
    cache = _cluster(
        (node("a1", labels={"zone": "a"}), [web("w1")]),
        (node("b1", labels={"zone": "b", "tier": "x"}), []),
    )
    plugin = PodTopologySpread(fw.Handle(snapshot=cache))
    # zone b is excluded by the pod's node selector: the only domain is a (min 1) -> skew 1
    p = pod(
        "new",
        labels={"app": "web"},
        nodeSelector={"tier": "y"},
        topologySpreadConstraints=[_spread()],
    )
    s = state()
    plugin.pre_filter(s, p, cache.node_infos())
    assert plugin.filter(s, p, cache.get("a1")) is None  # type: ignore[arg-type]
    # minDomains 3 > 2 domains: the global minimum is taken as 0
    p = pod("new", labels={"app": "web"}, topologySpreadConstraints=[_spread(minDomains=3)])
    s = state()
    plugin.pre_filter(s, p, cache.node_infos())
    assert plugin.filter(s, p, cache.get("a1")) is not None  # type: ignore[arg-type]
    assert plugin.filter(s, p, cache.get("b1")) is None  # type: ignore[arg-type]


def test_topology_spread_score_prefers_emptier_domains() -> None:
    cache = _cluster(
        (node("a1", labels={"zone": "a"}), [web("w1"), web("w2")]),
        (node("b1", labels={"zone": "b"}), [web("w3")]),
        (node("c1", labels={"zone": "c"}), []),
    )
    plugin = PodTopologySpread(fw.Handle(snapshot=cache))
    p = pod(
        "new", labels={"app": "web"}, topologySpreadConstraints=[_spread(when="ScheduleAnyway")]
    )
    nodes = cache.node_infos()
    s = state()
    assert plugin.pre_score(s, p, nodes) is None
    scores = [plugin.score(s, p, n) for n in nodes]
    plugin.normalize_score(s, p, nodes, scores)
    by_name = dict(zip([n.name for n in nodes], scores, strict=True))
    assert by_name["c1"] == 100 and by_name["c1"] > by_name["b1"] > by_name["a1"]


# ---- InterPodAffinity ---------------------------------------------------------------------------


def _term(labels: dict[str, str], key: str = "zone", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def _ipa(cache: Cache, ns_labels: dict[str, dict[str, str]] | None = None) -> InterPodAffinity:
    return InterPodAffinity({}, fw.Handle(snapshot=cache, namespace_labels=ns_labels or {}))


def _filter_all(plugin: InterPodAffinity, cache: Cache, p: PodInfo) -> dict[str, fw.Status | None]:
    s = state()
    _, st = plugin.pre_filter(s, p, cache.node_infos())
    if st is not None and st.is_skip():
        return {n.name: None for n in cache.node_infos()}
    return {n.name: plugin.filter(s, p, n) for n in cache.node_infos()}


def test_required_pod_affinity() -> None:
    cache = _cluster(
        (node("a1", labels={"zone": "a"}), [pod("db", labels={"app": "db"})]),
        (node("a2", labels={"zone": "a"}), []),
        (node("b1", labels={"zone": "b"}), []),
    )
    aff = {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "db"})]}
    }
    verdicts = _filter_all(_ipa(cache), cache, pod("web", affinity=aff))
    assert verdicts["a1"] is None and verdicts["a2"] is None  # same zone as the db pod
    assert reasons(verdicts["b1"]) == ("node(s) didn't match pod affinity rules",)
    assert verdicts["b1"] is not None
    assert verdicts["b1"].code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    # another namespace does not count
    other = pod("web", namespace="other", affinity=aff)
    assert all(v is not None for v in _filter_all(_ipa(cache), cache, other).values())
    # unless the term names it, or selects it by namespace labels
    aff_ns = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, namespaceSelector={"matchLabels": {"team": "x"}})]}}  # fmt: skip
    plugin = _ipa(cache, {"ns": {"team": "x"}})
    assert _filter_all(plugin, cache, pod("web", namespace="other", affinity=aff_ns))["a1"] is None


def test_first_pod_of_a_self_affine_group_may_go_anywhere() -> None:
    cache = _cluster((node("a1", labels={"zone": "a"}), []), (node("b1", labels={"zone": "b"}), []))
    aff = {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "web"})]}
    }
    verdicts = _filter_all(_ipa(cache), cache, pod("w", labels={"app": "web"}, affinity=aff))
    assert verdicts == {"a1": None, "b1": None}
    other = _filter_all(_ipa(cache), cache, pod("w", labels={"app": "x"}, affinity=aff))
    assert all(v is not None for v in other.values())


def test_required_anti_affinity_both_ways() -> None:
    hostname = "kubernetes.io/hostname"
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "web"}, hostname)]}}  # fmt: skip
    # the incoming pod's own anti-affinity
    cache = _cluster((node("n1"), [pod("w1", labels={"app": "web"})]), (node("n2"), []))
    verdicts = _filter_all(_ipa(cache), cache, pod("w2", labels={"app": "web"}, affinity=anti))
    assert reasons(verdicts["n1"]) == ("node(s) didn't match pod anti-affinity rules",)
    assert verdicts["n1"] is not None and verdicts["n1"].code == fw.Code.UNSCHEDULABLE
    assert verdicts["n2"] is None
    # the existing pod's anti-affinity against an incoming pod without any
    cache = _cluster(
        (node("n1"), [pod("w1", labels={"app": "web"}, affinity=anti)]), (node("n2"), [])
    )
    verdicts = _filter_all(_ipa(cache), cache, pod("plain", labels={"app": "web"}))
    assert reasons(verdicts["n1"]) == ("node(s) didn't satisfy existing pods anti-affinity rules",)
    assert verdicts["n2"] is None
    assert _filter_all(_ipa(cache), cache, pod("other", labels={"app": "db"})) == {
        "n1": None,
        "n2": None,
    }


def test_preferred_pod_affinity_scores() -> None:
    cache = _cluster(
        (node("a1", labels={"zone": "a"}), [pod("db", labels={"app": "db"})]),
        (node("b1", labels={"zone": "b"}), [pod("cache", labels={"app": "cache"})]),
        (node("c1", labels={"zone": "c"}), []),
    )
    aff = {
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": _term({"app": "db"})}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": _term({"app": "cache"})}]},
    }  # fmt: skip
    plugin, s, p = _ipa(cache), state(), pod("web", affinity=aff)
    nodes = cache.node_infos()
    assert plugin.pre_score(s, p, nodes) is None
    scores = [plugin.score(s, p, n) for n in nodes]
    assert scores == [50, -50, 0]
    plugin.normalize_score(s, p, nodes, scores)
    assert scores == [100, 0, 50]
    assert plugin.pre_score(state(), pod("plain"), nodes) == fw.SKIP
