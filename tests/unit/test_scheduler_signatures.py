"""Per-node values kept per pod signature (`SignPlugin`) must not change any decision: a
framework over the cache (which logs node changes) and one over a plain snapshot (every plugin
on every node, every cycle) find the same feasible nodes, statuses, next start index and score
totals, through assumptions, forgotten pods, node updates, additions and removals."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kybern.scheduler import framework as fw
from kybern.scheduler import plugins
from kybern.scheduler.cache import CHANGE_LOG_LIMIT, Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.profile import Profile
from kybern.scheduler.runtime import Framework

Obj = dict[str, Any]


class Plain:
    """The cache's nodes without its change log."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def node_infos(self) -> list[NodeInfo]:
        return self.cache.node_infos()

    def get(self, name: str) -> NodeInfo | None:
        return self.cache.get(name)

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        return self.cache.have_pods_with_affinity()

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        return self.cache.have_pods_with_required_anti_affinity()


def node(rng: random.Random, i: int) -> Obj:
    taints = []
    if rng.random() < 0.1:
        taints.append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    if rng.random() < 0.2:
        taints.append({"key": "spot", "value": "yes", "effect": "PreferNoSchedule"})
    alloc = {
        "cpu": str(rng.choice([2, 4, 8])),
        "memory": f"{rng.choice([4, 8, 16])}Gi",
        "pods": str(rng.choice([5, 10, 20])),
    }
    if rng.random() < 0.2:
        alloc["example.com/gpu"] = "2"
    return {
        "metadata": {
            "name": f"n{i}",
            "labels": {
                "kubernetes.io/hostname": f"n{i}",
                "topology.kubernetes.io/zone": f"z{i % 3}",
                "disk": rng.choice(["ssd", "hdd"]),
            },
        },
        "spec": {"taints": taints, "unschedulable": rng.random() < 0.05},
        "status": {"allocatable": alloc},
    }


SHAPES: list[Obj] = [
    {"cpu": "100m", "memory": "128Mi"},
    {"cpu": "500m", "memory": "1Gi"},
    {"cpu": "1", "memory": "2Gi"},
    {},
    {"cpu": "250m", "memory": "256Mi", "example.com/gpu": "1"},
]


def pod(rng: random.Random, i: int) -> Obj:
    spec: Obj = {
        "containers": [{"name": "c", "resources": {"requests": rng.choice(SHAPES)}}],
    }
    r = rng.random()
    if r < 0.1:
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    elif r < 0.15:
        spec["tolerations"] = [{"operator": "Exists", "effect": "PreferNoSchedule"}]
    elif r < 0.2:
        spec["tolerations"] = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]
    r = rng.random()
    if r < 0.1:
        spec["nodeSelector"] = {"disk": "ssd"}
    elif r < 0.2:
        spec["affinity"] = {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {
                            "matchExpressions": [
                                {"key": "disk", "operator": "In", "values": ["hdd"]}
                            ]
                        },
                    }
                ]
            }
        }
    elif r < 0.25:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": rng.choice(["DoNotSchedule", "ScheduleAnyway"]),
                "labelSelector": {"matchLabels": {"app": "web"}},
            }
        ]
    return {
        "metadata": {
            "name": f"p{i}",
            "namespace": "default",
            "uid": f"u{i}",
            "labels": {"app": "web"},
        },
        "spec": spec,
    }


def frameworks(cache: Cache) -> tuple[Framework, Framework]:
    signed = Framework(Profile(), plugins.in_tree(), fw.Handle(snapshot=cache))
    plain = Framework(Profile(), plugins.in_tree(), fw.Handle(snapshot=Plain(cache)))
    return signed, plain


def test_in_tree_plugins_that_sign() -> None:
    signed, _ = frameworks(Cache())
    assert set(signed._signers) == {
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "NodeResourcesBalancedAllocation",
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_signed_values_decide_like_every_plugin_on_every_node(seed: int) -> None:
    rng = random.Random(seed)
    cache = Cache()
    count = 150  # above 100: a cycle samples a rotating part of the nodes
    for i in range(count):
        cache.add_node(node(rng, i))
    signed, plain = frameworks(cache)
    assumed: list[PodInfo] = []
    fits = misses = 0
    for i in range(700):
        pi = PodInfo(pod(rng, i))
        nodes = cache.node_infos()
        sa, sb = fw.CycleState(), fw.CycleState()
        da, db = fw.Diagnosis(), fw.Diagnosis()
        fa = signed.find_nodes_that_fit(sa, pi, nodes, da, cache)
        fb = plain.find_nodes_that_fit(sb, pi, nodes, db)
        assert [n.name for n in fa] == [n.name for n in fb]
        assert signed._next_start == plain._next_start
        for name, st in da.node_to_status.items():  # the plain path may filter a few more
            assert db.node_to_status[name] == st and db.node_to_status[name].plugin == st.plugin
        assert da.unschedulable_plugins <= db.unschedulable_plugins
        if not fa:
            misses += 1
            assert str(fw.FitError(pi, len(nodes), da)) == str(fw.FitError(pi, len(nodes), db))
        else:
            fits += 1
            ta = signed.run_score(sa, pi, fa, cache)
            tb = plain.run_score(sb, pi, fb)
            assert ta == tb
            host = fa[ta.index(max(ta))].name
            a = pi.with_node(host)
            cache.assume_pod(a)
            assumed.append(a)
        # the cluster changes meanwhile
        r = rng.random()
        if r < 0.1 and assumed:
            cache.forget_pod(assumed.pop(rng.randrange(len(assumed))))
        elif r < 0.15:
            cache.update_node(node(rng, rng.randrange(count)))
        elif r < 0.17:
            cache.add_node(node(rng, count))
            count += 1
        elif r < 0.18:
            cache.remove_node(f"n{rng.randrange(count)}")
    assert fits > 100 and misses > 0  # both outcomes were exercised
    assert signed._signed  # and the kept values were used


def test_signed_values_survive_a_restarted_change_log() -> None:
    rng = random.Random(7)
    cache = Cache()
    for i in range(120):
        cache.add_node(node(rng, i))
    signed, plain = frameworks(cache)
    p = pod(rng, 0)
    p["spec"] = {"containers": [{"name": "c", "resources": {"requests": SHAPES[0]}}]}
    first = PodInfo(p)
    for fwk, snap in ((signed, cache), (plain, None)):  # values kept for this signature
        st = fw.CycleState()
        feasible = fwk.find_nodes_that_fit(st, first, cache.node_infos(), fw.Diagnosis(), snap)
        fwk.run_score(st, first, feasible, snap)
    # more changes than the log keeps, none of them seen by the framework
    target = cache.node_infos()[0]
    for i in range(CHANGE_LOG_LIMIT + 10):
        q = PodInfo({**p, "metadata": {"name": f"q{i}", "namespace": "default", "uid": f"q{i}"}})
        cache.assume_pod(q.with_node(target.name if i % 2 else cache.node_infos()[1].name))
    for _ in range(3):
        sa, sb = fw.CycleState(), fw.CycleState()
        fa = signed.find_nodes_that_fit(sa, first, cache.node_infos(), fw.Diagnosis(), cache)
        fb = plain.find_nodes_that_fit(sb, first, cache.node_infos(), fw.Diagnosis())
        assert [n.name for n in fa] == [n.name for n in fb]
        assert signed.run_score(sa, first, fa, cache) == plain.run_score(sb, first, fb)


def plain_node(i: int, prefer: bool = False) -> Obj:
    """A node without taints unless `prefer` (a PreferNoSchedule taint, scored)."""
    taints = [{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}] if prefer else []
    return {
        "metadata": {"name": f"n{i}", "labels": {"kubernetes.io/hostname": f"n{i}"}},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "20"}},
    }


@pytest.mark.parametrize("seed", [4, 5])
def test_uniform_scores_and_confirmed_pods_decide_like_every_plugin(seed: int) -> None:
    """Raw scores equal on every node (no PreferNoSchedule taint anywhere, or all tolerated)
    skip normalizing; a node update that taints one ends that. Pods confirmed by the informer
    where they were assumed (`Cache.confirm_pod`) log no node change. Neither changes a
    decision."""
    rng = random.Random(seed)
    cache = Cache()
    count = 130
    tainted: set[int] = set()
    for i in range(count):
        cache.add_node(plain_node(i))
    signed, plain = frameworks(cache)
    assumed: list[tuple[PodInfo, Obj]] = []
    uniform_seen: set[bool | None] = set()
    confirmed = 0
    for i in range(600):
        p = pod(rng, i)
        p["spec"].pop("topologySpreadConstraints", None)
        pi = PodInfo(p)
        nodes = cache.node_infos()
        sa, sb = fw.CycleState(), fw.CycleState()
        fa = signed.find_nodes_that_fit(sa, pi, nodes, fw.Diagnosis(), cache)
        fb = plain.find_nodes_that_fit(sb, pi, nodes, fw.Diagnosis())
        assert [n.name for n in fa] == [n.name for n in fb]
        if fa:
            ta = signed.run_score(sa, pi, fa, cache)
            assert ta == plain.run_score(sb, pi, fb)
            uniform_seen |= {
                e.uniform
                for k, e in signed._signed.items()
                if isinstance(k, tuple) and k[:2] == ("score", "TaintToleration")
            }
            if rng.random() < 0.7:  # else only evaluated: the next cycle sees fewer changes
                a = pi.with_node(fa[ta.index(max(ta))].name)
                cache.assume_pod(a)
                assumed.append((a, p))
        r = rng.random()
        if r < 0.4 and assumed:  # the informer shows it bound where it was assumed
            a, raw = assumed.pop(rng.randrange(len(assumed)))
            seen = {**raw, "spec": {**raw["spec"], "nodeName": a.node_name}}
            seen["metadata"] = {**raw["metadata"], "resourceVersion": str(i)}
            again = a.rebound(seen)
            assert again is not None and cache.confirm_pod(again)
            confirmed += 1
        elif r < 0.45 and assumed:
            cache.forget_pod(assumed.pop(rng.randrange(len(assumed)))[0])
        elif r < 0.55:  # a node gains or loses its PreferNoSchedule taint
            j = rng.randrange(count)
            tainted ^= {j}
            cache.update_node(plain_node(j, prefer=j in tainted))
    assert confirmed > 80
    assert {True, False} <= uniform_seen  # both the uniform and the general path ran
