"""PodTopologySpread over a mixed cluster, some nodes without the zone label, with the scores
derived by hand from kube-scheduler 1.32's PreScore/Score/NormalizeScore: System defaults still
score zoneless nodes by hostname (their "" zone domain counting in the zone weight and for nodes
labelled zone=""), a pod's own or `List` constraints score them 0; an empty `labelSelector`
counts no pods; constraints sharing a topologyKey share its domains (1.32's pair-keyed maps)."""

from __future__ import annotations

from typing import Any

from test_spread_defaults import RS, pod, scores

from kybern.client import informer
from kybern.scheduler import framework as fw
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.plugins import podtopologyspread as pts

ZONE = pts.ZONE_LABEL
HOST = "kubernetes.io/hostname"


def cluster(
    zones: list[str | None], pods: list[list[dict[str, str]]], **args: Any
) -> tuple[pts.PodTopologySpread, Cache]:
    """Node `n<i>` in zone `zones[i]` (no zone label when None) runs a ReplicaSet-owned pod
    per label set in `pods[i]`; the plugin knows the ReplicaSet `web` (selector tier=fe)."""
    cache = Cache()
    for i, zone in enumerate(zones):
        labels = {HOST: f"n{i}", **({ZONE: zone} if zone is not None else {})}
        alloc = {"cpu": "8", "memory": "8Gi", "pods": "110"}
        cache.add_node(
            {"metadata": {"name": f"n{i}", "labels": labels}, "status": {"allocatable": alloc}}
        )
    for i, on_node in enumerate(pods):
        for j, labels in enumerate(on_node):
            cache.add_pod(pod(f"p{i}-{j}", labels, f"n{i}", owned=True))
    factory = informer.InformerFactory(None)  # type: ignore[arg-type]
    p = pts.new_pod_topology_spread(args, fw.Handle(snapshot=cache, informer_factory=factory))
    assert isinstance(p, pts.PodTopologySpread)
    factory.informer(RS[0])._apply("ADDED", RS[1])
    return p, cache


FE = {"tier": "fe"}


def soft(key: str, max_skew: int = 1, **sel: str) -> dict[str, Any]:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": sel or FE},
    }


def test_system_defaults_score_zoneless_nodes_by_hostname() -> None:
    # n3/n4 lack the zone label, n5 has zone="". Hostname weight ln(6+2); the zone weight counts
    # the domains a, b and "" (zoneless nodes included): ln(3+2). Zone counts: a=3, b=0, ""=1
    # (n3's pod: pods on zoneless nodes count toward zone=""). Raw (maxSkew 3 and 5):
    #   n0: 2*ln8+2 + 3*ln5+4 = 14.99 -> 15     n1: ln8+2 + 3*ln5+4 = 12.91 -> 13
    #   n2: 2 + 4 = 6                           n3: ln8+2 = 4.08 -> 4 (no zone term)
    #   n4: 2                                   n5: 2 + ln5+4 = 7.61 -> 8
    # normalized 100*(15+2-s)//15.
    p, cache = cluster(["a", "a", "b", None, None, ""], [[FE, FE], [FE], [], [FE], [], []])
    got = scores(p, cache, pod("new", FE, owned=True))
    assert got == {"n0": 13, "n1": 26, "n2": 73, "n3": 86, "n4": 100, "n5": 60}


def test_own_soft_constraints_score_nodes_missing_a_key_zero() -> None:
    # n3/n4 lack the zone: ignored, 0, out of min/max. Hostname weight ln(5-2+2), zone ln(2+2);
    # zone counts a=3, b=0 (the ignored nodes' pods are not counted). Raw:
    #   n0: 2*ln5 + 3*ln4 = 7.38 -> 7   n1: ln5 + 3*ln4 = 5.77 -> 6   n2: 0
    # normalized 100*(7+0-s)//7: 0, 14, 100.
    p, cache = cluster(["a", "a", "b", None, None], [[FE, FE], [FE], [], [FE], []])
    new = pod("new", FE, owned=True, topologySpreadConstraints=[soft(HOST), soft(ZONE)])
    got = scores(p, cache, new)
    assert got == {"n0": 0, "n1": 14, "n2": 100, "n3": 0, "n4": 0}


def test_list_defaults_require_every_key() -> None:
    # List defaults behave like the pod's own constraints: zoneless nodes are ignored. Hostname
    # weight ln(3+2), zone ln(2+2); raw n0: 2*ln5+2 + 3*ln4+4 = 13.38 -> 13, n1: 11.77 -> 12,
    # n2: 2+4 = 6; normalized 100*(13+6-s)//13: 46, 53, 100.
    defaults = [soft(HOST, 3), soft(ZONE, 5)]
    for d in defaults:
        del d["labelSelector"]
    p, cache = cluster(
        ["a", "a", "b", None, None],
        [[FE, FE], [FE], [], [FE], []],
        defaultingType="List",
        defaultConstraints=defaults,
    )
    got = scores(p, cache, pod("new", FE, owned=True))
    assert got == {"n0": 46, "n1": 53, "n2": 100, "n3": 0, "n4": 0}


def _filter(p: pts.PodTopologySpread, cache: Cache, new: PodInfo) -> dict[str, fw.Status | None]:
    st = fw.CycleState()
    nodes: list[NodeInfo] = list(cache.node_infos())
    _, status = p.pre_filter(st, new, nodes)
    assert status is None
    return {n.name: p.filter(st, new, n) for n in nodes}


def test_empty_label_selector_counts_no_pods() -> None:
    # `labelSelector: {}` selects everything, but countPodsMatchSelector counts nothing for an
    # empty selector: every domain has 0, the pod itself matches (skew 0+1-0 = 1 <= 1).
    p, cache = cluster(["a", "b", None], [[FE, FE, FE], [], []])
    hard = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}
    new = pod("new", FE, topologySpreadConstraints=[{**hard, "labelSelector": {}}])
    verdicts = _filter(p, cache, new)
    assert verdicts["n0"] is None and verdicts["n1"] is None
    assert verdicts["n2"] is not None and verdicts["n2"].reasons == (
        pts.ERR_REASON_NODE_LABEL_NOT_MATCH,
    )
    # scoring: every count 0, all raw scores 0 -> 100 each; the zoneless node is ignored
    new = pod("new", FE, topologySpreadConstraints=[{**soft(ZONE), "labelSelector": {}}])
    assert scores(p, cache, new) == {"n0": 100, "n1": 100, "n2": 0}


def test_constraints_sharing_a_key_filter() -> None:
    # Both on the zone: per node the last constraint (app=b) sets the (zone, value) count, so
    # zone a counts 0 app=b pods, not 2 app=a + 0: the app=a constraint sees skew 0+1-0 = 1.
    p, cache = cluster(["a", "b"], [[{"app": "a"}, {"app": "a"}], []])
    first = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}
    c1 = {**first, "labelSelector": {"matchLabels": {"app": "a"}}}
    c2 = {**first, "maxSkew": 5, "labelSelector": {"matchLabels": {"app": "b"}}}
    verdicts = _filter(p, cache, pod("new", {"app": "a"}, topologySpreadConstraints=[c1, c2]))
    assert verdicts == {"n0": None, "n1": None}
    # with a different key each, zone a counts the 2 app=a pods: 2+1-0 > 1
    c2 = {**c2, "topologyKey": HOST}
    verdicts = _filter(p, cache, pod("new", {"app": "a"}, topologySpreadConstraints=[c1, c2]))
    assert verdicts["n0"] is not None and verdicts["n1"] is None


def test_constraints_sharing_a_key_score() -> None:
    # Both on the zone: the counts add up per (zone, value) (a=2, b=1, c=0) and only the first
    # constraint sizes the 3 domains: weights ln(3+2) and ln(0+2). Raw:
    #   n0: 2*ln5 + 2*ln2 = 4.61 -> 5   n1: ln5 + ln2 = 2.30 -> 2   n2: 0
    # normalized 100*(5+0-s)//5: 0, 60, 100.
    a, b = {"app": "a"}, {"app": "b"}
    p, cache = cluster(["a", "b", "c"], [[a, a], [b], []])
    new = pod("new", a, topologySpreadConstraints=[soft(ZONE, app="a"), soft(ZONE, app="b")])
    assert scores(p, cache, new) == {"n0": 0, "n1": 60, "n2": 100}
