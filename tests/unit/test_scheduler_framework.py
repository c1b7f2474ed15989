"""Unit tests of the scheduling framework: statuses and kube-scheduler's `0/N nodes are
available` message, profiles (merging onto defaults, multiPoint expansion, weights), the
runtime's extension points (skip, pre-filter node sets, chunked filtering equal to per-node
filtering, node sampling, weighted scores, ties, reserve/permit/bind), the cache (assume,
confirm, forget, expire, zone interleaving) and the package's exported names."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

import kybern.scheduler
from kybern.scheduler import framework as fw
from kybern.scheduler import plugins
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.nodevalues import num_feasible_nodes_to_find
from kybern.scheduler.profile import PluginSet, PluginSpec, Profile, expand
from kybern.scheduler.runtime import Framework, NoNodesAvailable
from kybern.scheduler.scheduler import node_change, pod_updated


def node(name: str, cpu: str = "4", labels: dict[str, str] | None = None) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": "8Gi", "pods": "110"}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": alloc},
    }


def pod(name: str = "p", cpu: str = "", **spec: Any) -> PodInfo:
    c: dict[str, Any] = {"name": "c"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    return PodInfo(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"containers": [c], **spec},
        }
    )


def cluster(n: int, cpu: str = "4") -> Cache:
    cache = Cache()
    for i in range(n):
        cache.add_node(node(f"n{i}", cpu))
    return cache


def framework(
    cache: Cache, profile: Profile | None = None, reg: fw.Registry | None = None
) -> Framework:
    return Framework(profile or Profile(), reg or plugins.in_tree(), fw.Handle(snapshot=cache))


# ---- statuses and messages ----------------------------------------------------------------------


def test_fit_error_message_is_kube_schedulers() -> None:
    d = fw.Diagnosis()
    d.node_to_status = {
        "a": fw.unschedulable("Insufficient cpu"),
        "b": fw.unschedulable("Insufficient cpu", "Insufficient memory"),
        "c": fw.unresolvable("node(s) had untolerated taint {k: v}"),
    }
    err = fw.FitError(pod(), 3, d)
    assert str(err) == (
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint "
        "{k: v}, 2 Insufficient cpu."
    )
    d.post_filter_msg = "preemption: 0/3 nodes are available: 3 No preemption victims found"
    assert str(err).endswith(
        ". preemption: 0/3 nodes are available: 3 No preemption victims found."
    )
    pre = fw.Diagnosis(pre_filter_msg="node(s) didn't satisfy plugin(s) [NodeAffinity]")
    assert str(fw.FitError(pod(), 5, pre)) == (
        "0/5 nodes are available: node(s) didn't satisfy plugin(s) [NodeAffinity]."
    )


def test_status_helpers() -> None:
    assert fw.is_success(None) and fw.is_success(fw.Status())
    st = fw.unschedulable("a", "b")
    assert st.message == "a, b" and st.is_rejected() and not st.is_success()
    assert st.with_plugin("X").plugin == "X" and st.plugin == ""
    assert fw.as_status(ValueError("boom")).code == fw.Code.ERROR
    s = fw.CycleState()
    s.write("k", [1])
    c = s.clone()
    assert c.read("k") == [1]
    with pytest.raises(KeyError):
        fw.CycleState().read("k")


# ---- profiles -----------------------------------------------------------------------------------


def _implements(points: Mapping[str, set[str]]) -> Any:
    return lambda name, point: name in points.get(point, set())


def test_default_profile_expands_to_kube_order_and_weights() -> None:
    fwk = framework(cluster(1))
    assert fwk.points["queueSort"] == ["PrioritySort"]
    assert fwk.points["filter"] == [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "PodTopologySpread",
        "InterPodAffinity",
    ]
    assert fwk.points["bind"] == ["DefaultBinder"]
    assert fwk.weights == {
        "TaintToleration": 3,
        "NodeAffinity": 2,
        "NodeResourcesFit": 1,
        "PodTopologySpread": 2,
        "InterPodAffinity": 2,
        "NodeResourcesBalancedAllocation": 1,
    }


def test_profile_from_config_merges_like_kube() -> None:
    prof = Profile.from_config(
        {
            "schedulerName": "mine",
            "plugins": {
                "multiPoint": {"disabled": [{"name": "InterPodAffinity"}]},
                "score": {
                    "enabled": [{"name": "NodeResourcesFit", "weight": 5}],
                    "disabled": [{"name": "NodeResourcesBalancedAllocation"}],
                },
            },
            "pluginConfig": [
                {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "MostAllocated"}}}
            ],
            "percentageOfNodesToScore": 30,
        }
    )
    fwk = framework(cluster(1), prof)
    assert prof.scheduler_name == "mine" and prof.percentage_of_nodes_to_score == 30
    assert "InterPodAffinity" not in fwk.plugins
    # explicitly enabled at score: it overrides the multiPoint entry and comes first
    assert fwk.points["score"][0] == "NodeResourcesFit"
    assert "NodeResourcesBalancedAllocation" not in fwk.points["score"]
    assert fwk.weights["NodeResourcesFit"] == 5
    assert fwk.plugins["NodeResourcesFit"].strategy == "MostAllocated"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown extension points"):
        Profile.from_config({"plugins": {"nope": {}}})


def test_expand_disable_all_and_errors() -> None:
    impl = _implements({"filter": {"A", "B"}, "score": {"A"}})
    prof = Profile(
        plugins={
            "multiPoint": PluginSet([PluginSpec("A", 2), PluginSpec("B")]),
            "filter": PluginSet(disabled=["*"]),
        }
    )
    points, weights = expand(prof, impl)
    assert points["filter"] == [] and points["score"] == ["A"] and weights == {"A": 2}
    bad = Profile(plugins={"filter": PluginSet([PluginSpec("C")])})
    with pytest.raises(ValueError, match="does not extend"):
        expand(bad, impl)


# ---- the runtime --------------------------------------------------------------------------------


def test_num_feasible_nodes_to_find() -> None:
    assert num_feasible_nodes_to_find(0, 50) == 50
    assert num_feasible_nodes_to_find(0, 1000) == 420  # 50% - 1000/125
    assert num_feasible_nodes_to_find(0, 5000) == 500  # 10%
    assert num_feasible_nodes_to_find(0, 100000) == 5000  # at least 5%
    assert num_feasible_nodes_to_find(10, 500) == 100  # never fewer than 100
    assert num_feasible_nodes_to_find(100, 500) == 500


def test_schedule_pod_picks_a_fitting_node_and_reports_why_others_do_not() -> None:
    cache = cluster(3, cpu="1")
    cache.add_node(node("big", cpu="8"))
    fwk = framework(cache)
    result = fwk.schedule_pod(fw.CycleState(), pod(cpu="2"), cache)
    assert result.suggested_host == "big" and result.feasible_nodes == 1
    with pytest.raises(fw.FitError) as e:
        fwk.schedule_pod(fw.CycleState(), pod(cpu="16"), cache)
    assert str(e.value) == "0/4 nodes are available: 4 Insufficient cpu."
    assert e.value.diagnosis.unschedulable_plugins == {"NodeResourcesFit"}
    with pytest.raises(NoNodesAvailable):
        fwk.schedule_pod(fw.CycleState(), pod(), Cache())


def test_sampling_rotates_over_the_nodes() -> None:
    cache = cluster(1000)
    fwk = framework(cache)
    firsts = []
    for _ in range(3):
        state = fw.CycleState()
        feasible = fwk.find_nodes_that_fit(state, pod(), cache.node_infos(), fw.Diagnosis())
        assert len(feasible) == 420
        firsts.append(feasible[0].name)
    assert firsts == ["n0", "n420", "n840"]  # each cycle starts where the last one stopped


class _Recorder:
    """A test plugin at every extension point, recording the calls."""

    name: ClassVar[str] = "Recorder"

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.calls: list[str] = []
        self.reject = set(args.get("reject") or ())
        self.permit_status: fw.Status | None = args.get("permit")
        self.bind_status: fw.Status | None = args.get("bind", fw.SKIP)

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        self.calls.append(f"filter:{node.name}")
        return fw.unschedulable("rejected by test") if node.name in self.reject else None

    def score(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return 100 if node.name == "n2" else 0

    def reserve(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> fw.Status | None:
        self.calls.append("reserve")
        return None

    def unreserve(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> None:
        self.calls.append("unreserve")

    def permit(
        self, state: fw.CycleState, pod: PodInfo, node_name: str
    ) -> tuple[fw.Status | None, float]:
        return self.permit_status, 5.0

    async def bind(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> fw.Status | None:
        self.calls.append(f"bind:{node_name}")
        return self.bind_status


def _with_recorder(cache: Cache, **args: Any) -> tuple[Framework, _Recorder]:
    reg = plugins.in_tree()
    reg.register("Recorder", lambda a, h: _Recorder(a))
    prof = Profile.from_config(
        {
            "plugins": {
                "multiPoint": {"enabled": [{"name": "Recorder", "weight": 10}]},
                "bind": {"enabled": [{"name": "Recorder"}]},
            }
        }
    )
    prof.plugin_config["Recorder"] = args
    fwk = framework(cache, prof, reg)
    rec = fwk.plugins["Recorder"]
    assert isinstance(rec, _Recorder)
    return fwk, rec


def test_custom_plugin_filters_scores_with_weight_and_binds_first() -> None:
    cache = cluster(3)
    fwk, rec = _with_recorder(cache, reject=["n0"])
    assert fwk.points["bind"] == ["Recorder", "DefaultBinder"]
    result = fwk.schedule_pod(fw.CycleState(), pod(), cache)
    assert result.suggested_host == "n2"  # weight 10 x 100 beats everything else
    assert sorted(c for c in rec.calls if c.startswith("filter")) == [
        "filter:n0",
        "filter:n1",
        "filter:n2",
    ]
    with pytest.raises(fw.FitError) as e:
        _with_recorder(cache, reject=["n0", "n1", "n2"])[0].schedule_pod(
            fw.CycleState(), pod(), cache
        )
    assert str(e.value) == "0/3 nodes are available: 3 rejected by test."
    assert e.value.diagnosis.unschedulable_plugins == {"Recorder"}


def test_chunked_filtering_equals_per_node_filtering() -> None:
    cache = Cache()
    for i in range(300):
        cache.add_node(node(f"n{i}", cpu="1" if i % 3 else "8"))
    fwk = framework(cache)
    p = pod(cpu="2")
    diagnosis = fw.Diagnosis()
    feasible = fwk.find_nodes_that_fit(fw.CycleState(), p, cache.node_infos(), diagnosis)
    state = fw.CycleState()
    fwk.run_pre_filter(state, p, cache.node_infos())
    expected = [n for n in cache.node_infos() if fwk.run_filter(state, p, n) is None]
    assert [n.name for n in feasible] == [n.name for n in expected]  # 100 < 120 sampled
    assert all(st.reasons == ("Insufficient cpu",) for st in diagnosis.node_to_status.values())


async def test_permit_wait_allow_reject_and_bind_chain() -> None:
    cache = cluster(2)
    fwk, rec = _with_recorder(cache, permit=fw.Status(fw.Code.WAIT), bind=None)
    p = pod("w")
    assert fwk.run_permit(fw.CycleState(), p, "n1") == fw.Status(
        fw.Code.WAIT, "one or more plugins asked to wait"
    )
    waiting = fwk.handle.get_waiting_pod("w")
    assert waiting is not None
    waiter = asyncio.create_task(fwk.wait_on_permit(p))
    await asyncio.sleep(0)
    assert not waiter.done()
    waiting.allow("Recorder")
    assert await asyncio.wait_for(waiter, 5) is None
    assert fwk.handle.get_waiting_pod("w") is None
    fwk.run_permit(fw.CycleState(), p, "n1")
    fwk.handle.waiting_pods["w"].reject("Recorder", "no")
    st = await fwk.wait_on_permit(p)
    assert st is not None and st.is_rejected() and st.message == "no"
    assert await fwk.run_bind(fw.CycleState(), p, "n1") is None
    assert rec.calls[-1] == "bind:n1"
    fwk.run_unreserve(fw.CycleState(), p, "n1")
    assert rec.calls[-1] == "unreserve"


def test_select_host_breaks_ties_at_random() -> None:
    cache = cluster(4)
    fwk = framework(cache)
    nodes = cache.node_infos()
    picks = {fwk.select_host(nodes, [5, 9, 9, 1]).name for _ in range(200)}
    assert picks == {"n1", "n2"}


# ---- the cache ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_assume_confirm_forget_and_expire() -> None:
    clock = Clock()
    cache = Cache(ttl=30.0, clock=clock)
    cache.add_node(node("n1"))
    p = pod("a", cpu="1")
    cache.assume_pod(p.with_node("n1"))
    n1 = cache.get("n1")
    assert n1 is not None and n1.requested.milli_cpu == 1000 and cache.is_assumed("ns/a")
    with pytest.raises(ValueError):
        cache.assume_pod(p.with_node("n1"))
    cache.forget_pod(p.with_node("n1"))
    assert n1.requested.milli_cpu == 0 and not cache.is_assumed("ns/a")
    # confirmed by the informer
    cache.assume_pod(p.with_node("n1"))
    cache.finish_binding(p.with_node("n1"))
    cache.add_pod(p.with_node("n1"))
    assert not cache.is_assumed("ns/a") and n1.requested.milli_cpu == 1000
    clock.now += 60
    assert cache.cleanup_assumed_pods() == []
    # never confirmed: expires ttl after the binding finished
    q = pod("b", cpu="1").with_node("n1")
    cache.assume_pod(q)
    clock.now += 100
    assert cache.cleanup_assumed_pods() == []  # binding not finished yet
    cache.finish_binding(q)
    clock.now += 29
    assert cache.cleanup_assumed_pods() == []
    clock.now += 2
    assert [x.key for x in cache.cleanup_assumed_pods()] == ["ns/b"]
    assert n1.requested.milli_cpu == 1000


def test_pods_before_their_node_and_node_removal() -> None:
    cache = Cache()
    cache.add_pod(pod("a", cpu="1").with_node("late"))
    assert cache.node_infos() == [] and cache.get("late") is None
    cache.add_node(node("late"))
    late = cache.get("late")
    assert late is not None and late.requested.milli_cpu == 1000
    cache.remove_node("late")
    assert cache.node_infos() == []
    cache.remove_pod("ns/a")
    assert cache.nodes == {}


def test_node_list_interleaves_zones() -> None:
    cache = Cache()
    for i, z in enumerate("aaabbc"):
        cache.add_node(node(f"n{i}", labels={"topology.kubernetes.io/zone": z}))
    assert [n.name for n in cache.node_infos()] == ["n0", "n3", "n5", "n1", "n4", "n2"]


def test_affinity_node_lists_follow_pods() -> None:
    cache = cluster(2)
    term = {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    assert cache.have_pods_with_affinity() == []
    cache.add_pod(pod("x", affinity=anti).with_node("n1"))
    assert [n.name for n in cache.have_pods_with_required_anti_affinity()] == ["n1"]
    cache.remove_pod("ns/x")
    assert cache.have_pods_with_affinity() == []


# ---- informer event helpers and the package -----------------------------------------------------


def test_pod_updated_ignores_status_and_resource_version() -> None:
    a = {"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"x": 1}, "status": {}}
    b = {
        "metadata": {"name": "p", "resourceVersion": "2"},
        "spec": {"x": 1},
        "status": {"phase": "X"},
    }
    assert not pod_updated(a, b)
    assert pod_updated(a, {**b, "spec": {"x": 2}})
    assert pod_updated(a, {**b, "metadata": {"name": "p", "labels": {"a": "b"}}})


def test_node_change_flags() -> None:
    a = node("n1")
    b = node("n1", cpu="8", labels={"x": "y"})
    flags = node_change(a, b)
    assert flags & fw.ActionType.UPDATE_NODE_ALLOCATABLE and flags & fw.ActionType.UPDATE_NODE_LABEL
    assert not node_change(a, node("n1"))
    c = node("n1")
    c["spec"]["unschedulable"] = True
    assert node_change(a, c) == fw.ActionType.UPDATE_NODE_TAINT


def test_exported_names() -> None:
    for name in kybern.scheduler.__all__:
        assert hasattr(kybern.scheduler, name), name
    assert "Scheduler" in kybern.scheduler.__all__
