"""PodTopologySpread's default constraints: the default selector from Services and the
controlling RC/ReplicaSet/StatefulSet, System defaults scoring a ReplicaSet's pods away from
their siblings, bare pods and pods with their own constraints unaffected, and `List`."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.client import informer
from kybern.scheduler import framework as fw
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.plugins import podtopologyspread as pts

NS = "default"
RS_OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "controller": True}


def _obj(kind_ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": kind_ns}, "spec": spec}


def pod(name: str, labels: dict[str, str], node: str = "", **spec: Any) -> PodInfo:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": name, "labels": labels}
    if spec.pop("owned", False):
        meta["ownerReferences"] = [RS_OWNER]
    return PodInfo({"metadata": meta, "spec": {"nodeName": node, **spec}})


def plugin(
    *objs: tuple[Any, dict[str, Any]], nodes: int = 3, **args: Any
) -> tuple[pts.PodTopologySpread, Cache]:
    cache = Cache()
    for i in range(nodes):
        name = f"n{i}"
        cache.add_node(
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {},
                "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}},
            }
        )
    factory = informer.InformerFactory(None)  # type: ignore[arg-type]
    p = pts.new_pod_topology_spread(args, fw.Handle(snapshot=cache, informer_factory=factory))
    assert isinstance(p, pts.PodTopologySpread)
    for res, o in objs:
        factory.informer(res)._apply("ADDED", o)
    return p, cache


def scores(p: pts.PodTopologySpread, cache: Cache, pi: PodInfo) -> dict[str, int] | None:
    nodes: list[NodeInfo] = list(cache.node_infos())
    st = fw.CycleState()
    if p.pre_score(st, pi, nodes) is fw.SKIP:
        return None
    out = [p.score(st, pi, n) for n in nodes]
    p.normalize_score(st, pi, nodes, out)
    return {n.name: s for n, s in zip(nodes, out, strict=True)}


SVC = (pts.SERVICES, _obj(NS, "svc", {"selector": {"app": "web"}}))
OTHER_SVC = (pts.SERVICES, _obj(NS, "other", {"selector": {"app": "db"}}))
NIL_SVC = (pts.SERVICES, _obj(NS, "headless", {}))
RS = (pts.REPLICA_SETS, _obj(NS, "web", {"selector": {"matchLabels": {"tier": "fe"}}}))


def test_default_selector_from_services_and_controller() -> None:
    p, _ = plugin(SVC, OTHER_SVC, NIL_SVC, RS)
    both = p.default_selector(pod("a", {"app": "web", "tier": "fe"}, owned=True))
    assert {r.key for r in both.requirements} == {"app", "tier"}
    assert both.matches({"app": "web", "tier": "fe"})
    assert not both.matches({"app": "web"})
    # a Service alone; no Service matching and no controller: empty
    assert str(p.default_selector(pod("b", {"app": "web"}))) == "app=web"
    assert p.default_selector(pod("c", {"app": "x"})).empty
    # the controller is looked up by name in the pod's namespace; a missing one adds nothing
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "name": "r", "controller": True}
    lone = pod("d", {"k": "v"})
    lone.pod["metadata"]["ownerReferences"] = [rc]
    assert p.default_selector(lone).empty
    p2, _ = plugin((pts.REPLICATION_CONTROLLERS, _obj(NS, "r", {"selector": {"k": "v"}})))
    assert str(p2.default_selector(lone)) == "k=v"


def test_replica_set_pod_prefers_node_with_fewer_siblings() -> None:
    p, cache = plugin(RS)
    for i, node in enumerate(["n0", "n0", "n1"]):
        cache.add_pod(pod(f"s{i}", {"tier": "fe"}, node, owned=True))
    got = scores(p, cache, pod("new", {"tier": "fe"}, owned=True))
    assert got is not None
    assert got["n2"] > got["n1"] > got["n0"]


def test_bare_pod_and_pod_with_own_constraints_get_no_defaults() -> None:
    p, cache = plugin(SVC, RS)
    cache.add_pod(pod("s", {"tier": "fe"}, "n0", owned=True))
    assert scores(p, cache, pod("bare", {"x": "y"})) is None
    own = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"tier": "fe"}},
        }
    ]
    # its own DoNotSchedule constraint only: nothing to score, no defaults added
    assert (
        scores(p, cache, pod("c", {"tier": "fe"}, owned=True, topologySpreadConstraints=own))
        is None
    )


def test_system_defaults_keep_nodes_without_zone() -> None:
    p, cache = plugin(RS)
    cache.add_pod(pod("s", {"tier": "fe"}, "n0", owned=True))
    got = scores(p, cache, pod("new", {"tier": "fe"}, owned=True))
    assert got is not None and got["n0"] < got["n1"] == got["n2"] > 0


def test_list_defaulting_uses_default_constraints() -> None:
    hard = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
    }
    p, cache = plugin(RS, defaultingType="List", defaultConstraints=[hard])
    cache.add_pod(pod("s", {"tier": "fe"}, "n0", owned=True))
    new = pod("new", {"tier": "fe"}, owned=True)
    assert scores(p, cache, new) is None  # no ScheduleAnyway defaults
    st = fw.CycleState()
    _, status = p.pre_filter(st, new, list(cache.node_infos()))
    assert status is None
    nodes = {n.name: n for n in cache.node_infos()}
    assert p.filter(st, new, nodes["n0"]) is not None
    assert p.filter(st, new, nodes["n1"]) is None
    # List with no defaultConstraints: nothing; System with some is invalid
    empty, _ = plugin(RS, defaultingType="List")
    assert empty.default_constraints == ()
    with pytest.raises(ValueError):
        plugin(defaultConstraints=[hard])
