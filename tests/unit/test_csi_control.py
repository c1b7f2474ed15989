"""Pure logic of the control-plane side of CSI: the PV binder's matching (class, default class,
modes, size, selector, node affinity, pre-binding, smallest fit, delayed binding), the
attach-detach controller's attachment names and which pods hold volumes, PVC protection's use
test, the sidecars' `csi.storage.k8s.io/*` secrets with templates, sizes and node ids, and the
scheduler's VolumeBinding plugin over in-memory informers: missing, deleting and unbound
Immediate claims, bound volumes' topology, WaitForFirstConsumer by static volume or by
provisioning onto nodes whose CSINode lists the driver."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pytest

from kybern.client import informer, rest
from kybern.controllers import attachdetach, pvcprotection
from kybern.controllers import persistentvolume_util as u
from kybern.csi_sidecars import common as c
from kybern.scheduler import framework as fw
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.plugins import volumebinding as vb

Obj = dict[str, Any]


def pvc(name: str = "c", size: str = "1Gi", cls: str | None = "fast", **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        body["storageClassName"] = cls
    body.update(spec)
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": body}


def pv(name: str, size: str = "1Gi", cls: str = "fast", **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": size}}
    body["storageClassName"] = cls
    body.update(spec)
    return {
        "metadata": {"name": name, "labels": {"tier": "gold"}},
        "spec": body,
        "status": {"phase": "Available"},
    }


def affinity(key: str, *values: str) -> Obj:
    expr = {"key": key, "operator": "In", "values": list(values)}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}


# ---- the binder ----------------------------------------------------------------------------


def test_default_class_and_claim_class() -> None:
    older = {
        "metadata": {
            "name": "a",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {u.ANN_DEFAULT_CLASS: "true"},
        }
    }
    newer = {
        "metadata": {
            "name": "b",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "annotations": {u.ANN_BETA_DEFAULT_CLASS: "true"},
        }
    }
    plain = {"metadata": {"name": "c"}}
    assert u.default_class([older, newer, plain]) is newer
    assert u.default_class([plain]) is None
    assert u.claim_class(pvc(cls=None), "b") == "b"
    assert u.claim_class(pvc(cls=""), "b") == ""
    assert u.claim_class(pvc(cls="x"), "b") == "x"


def test_find_best_match() -> None:
    claim = pvc(size="2Gi")
    small, big, huge = pv("small", "1Gi"), pv("big", "3Gi"), pv("huge", "10Gi")
    other = pv("other", "3Gi", cls="slow")
    taken = pv("taken", "2Gi", claimRef={"namespace": "ns", "name": "someone"})
    assert u.find_best_match(claim, [huge, small, big, other, taken], "fast") is big
    pre = pv("pre", "10Gi", claimRef={"namespace": "ns", "name": "c"})
    assert u.find_best_match(claim, [big, pre], "fast") is pre
    assert u.find_best_match(claim, [big], "fast", delayed=True) is None
    assert u.find_best_match(claim, [big, pre], "fast", delayed=True) is pre
    block = pvc(size="1Gi", volumeMode="Block")
    assert u.find_best_match(block, [big], "fast") is None
    rwx = pvc(accessModes=["ReadWriteMany"])
    assert u.find_best_match(rwx, [big], "fast") is None
    selected = pvc(selector={"matchLabels": {"tier": "silver"}})
    assert u.find_best_match(selected, [big], "fast") is None
    pinned = pv("pinned", "3Gi", nodeAffinity=affinity("zone", "a"))
    node_a = {"metadata": {"name": "n1", "labels": {"zone": "a"}}}
    node_b = {"metadata": {"name": "n2", "labels": {"zone": "b"}}}
    assert u.find_best_match(claim, [pinned], "fast", node=node_a) is pinned
    assert u.find_best_match(claim, [pinned], "fast", node=node_b) is None
    gone = pv("gone", "3Gi")
    gone["metadata"]["deletionTimestamp"] = "now"
    assert u.find_best_match(claim, [gone], "fast") is None


def test_affinity_operators() -> None:
    node = {"metadata": {"name": "n1", "labels": {"zone": "a", "size": "7"}}}

    def term(*exprs: Obj, fields: tuple[Obj, ...] = ()) -> Obj:
        t: Obj = {"matchExpressions": list(exprs)}
        if fields:
            t["matchFields"] = list(fields)
        return {"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [t]}}}}

    assert u.affinity_matches({"spec": {}}, node)
    assert u.affinity_matches(term({"key": "zone", "operator": "NotIn", "values": ["b"]}), node)
    assert u.affinity_matches(term({"key": "size", "operator": "Gt", "values": ["5"]}), node)
    assert not u.affinity_matches(term({"key": "size", "operator": "Lt", "values": ["5"]}), node)
    assert u.affinity_matches(term({"key": "gpu", "operator": "DoesNotExist"}), node)
    name = {"key": "metadata.name", "operator": "In", "values": ["n2"]}
    assert not u.affinity_matches(term(fields=(name,)), node)


def test_claim_ref_and_external() -> None:
    claim = pvc()
    ref = u.claim_ref(claim)
    assert ref["uid"] == "uid-c" and ref["kind"] == "PersistentVolumeClaim"
    assert u.claim_ref_matches(pv("x", claimRef=ref), claim)
    assert not u.claim_ref_matches(pv("x", claimRef={**ref, "uid": "other"}), claim)
    assert u.is_external(pv("x", csi={"driver": "d", "volumeHandle": "h"}))
    assert not u.is_external(pv("x", hostPath={"path": "/x"}))


# ---- attach-detach, protection, sidecar helpers --------------------------------------------


def test_attachment_names_and_holders() -> None:
    name = attachdetach.attachment_name("vol-1", "d.example.com", "node-1")
    assert name == "csi-" + hashlib.sha256(b"vol-1d.example.comnode-1").hexdigest()
    assert attachdetach.unique_volume_name("d", "h") == "kubernetes.io/csi/d^h"
    running = {"spec": {"nodeName": "n"}, "status": {"phase": "Running"}, "metadata": {}}
    assert attachdetach.holds_volumes(running)
    assert not attachdetach.holds_volumes({"spec": {}, "metadata": {}})
    done = {"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}, "metadata": {}}
    assert not attachdetach.holds_volumes(done)
    going = {
        "spec": {"nodeName": "n"},
        "metadata": {"deletionTimestamp": "t"},
        "status": {"containerStatuses": [{"state": {"running": {}}}]},
    }
    assert attachdetach.holds_volumes(going)
    going["status"]["containerStatuses"] = [{"state": {"terminated": {}}}]
    assert not attachdetach.holds_volumes(going)


def test_pvc_protection_use() -> None:
    p = {
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "n",
            "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "tmp", "ephemeral": {"volumeClaimTemplate": {}}},
            ],
        },
        "status": {"phase": "Running"},
    }
    assert pvcprotection.claims_of(p) == {"data", "web-tmp"}
    assert pvcprotection.uses(p, "data") and pvcprotection.uses(p, "web-tmp")
    assert not pvcprotection.uses({**p, "spec": {**p["spec"], "nodeName": ""}}, "data")
    assert not pvcprotection.uses({**p, "status": {"phase": "Failed"}}, "data")


def test_sidecar_secrets_and_sizes() -> None:
    params = {
        "csi.storage.k8s.io/provisioner-secret-name": "${pvc.name}-key",
        "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}",
        "csi.storage.k8s.io/node-stage-secret-name": "${pvc.annotations['team']}",
        "csi.storage.k8s.io/node-stage-secret-namespace": "vault",
        "csi.storage.k8s.io/fstype": "xfs",
        "tier": "gold",
    }
    claim = pvc("db")
    claim["metadata"]["annotations"] = {"team": "blue"}
    assert c.secret_ref(params, "provisioner", claim) == {"name": "db-key", "namespace": "ns"}
    assert c.secret_ref(params, "nodeStage", claim) == {"name": "blue", "namespace": "vault"}
    assert c.secret_ref(params, "controllerExpand", claim) is None
    assert c.driver_parameters(params) == {"tier": "gold"}
    with pytest.raises(ValueError):
        c.secret_ref({"csi.storage.k8s.io/provisioner-secret-name": "x"}, "provisioner")
    with pytest.raises(ValueError):
        c.secret_ref(
            {
                "csi.storage.k8s.io/provisioner-secret-name": "${nope}",
                "csi.storage.k8s.io/provisioner-secret-namespace": "n",
            },
            "provisioner",
        )
    assert [c.format_bytes(n) for n in (1 << 30, 3 << 20, 1000, 0)] == ["1Gi", "3Mi", "1000", "0"]
    assert c.quantity_bytes("1Gi") == 1 << 30 and c.quantity_bytes("junk") == 0
    annotated = {"metadata": {"annotations": {c.NODE_ID_ANNOTATION: '{"d": "id-9"}'}}}
    csinode = {"spec": {"drivers": [{"name": "d", "nodeID": "id-1"}]}}
    assert c.node_id(csinode, annotated, "d") == "id-1"
    assert c.node_id(None, annotated, "d") == "id-9"
    assert c.node_id(None, None, "d") == ""
    cap = c.pv_capability({"spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}})
    assert cap.HasField("block")


# ---- the scheduler's VolumeBinding ---------------------------------------------------------


class Env:
    def __init__(self) -> None:
        self.factory = informer.InformerFactory(cast(rest.Client, None))
        self.events: list[fw.ClusterEvent] = []
        handle = fw.Handle(
            snapshot=Cache(), informer_factory=self.factory, on_event=self.events.append
        )
        self.plugin = vb.VolumeBinding(handle)

    def add(self, res: Any, obj: Obj) -> None:
        self.factory.informer(res)._apply("ADDED", obj)

    def run(
        self, pod: Obj, nodes: list[NodeInfo]
    ) -> tuple[fw.Status | None, dict[str, fw.Status | None]]:
        state = fw.CycleState()
        pi = PodInfo(pod)
        _, st = self.plugin.pre_filter(state, pi, nodes)
        if st is not None:
            return st, {}
        return None, {n.name: self.plugin.filter(state, pi, n) for n in nodes}


def a_pod(*claims: str) -> Obj:
    vols = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": cl}} for i, cl in enumerate(claims)
    ]
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "pu"}, "spec": {"volumes": vols}}


def node(name: str, **labels: str) -> NodeInfo:
    return NodeInfo(name, {"metadata": {"name": name, "labels": labels}})


def test_volume_binding_prefilter() -> None:
    env = Env()
    st, _ = env.run({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}, [node("n1")])
    assert st is fw.SKIP
    st, _ = env.run(a_pod("missing"), [node("n1")])
    assert st is not None and st.code == fw.Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert 'persistentvolumeclaim "missing" not found' in st.message
    env.add(
        vb.CLASSES,
        {"metadata": {"name": "fast"}, "provisioner": "d", "volumeBindingMode": "Immediate"},
    )
    env.add(vb.PVCS, pvc("c"))
    st, _ = env.run(a_pod("c"), [node("n1")])
    assert st is not None and st.message == vb.ERR_UNBOUND_IMMEDIATE
    assert env.events and env.events[-1].resource == "PersistentVolumeClaim"
    assert {e.resource for e in env.plugin.events_to_register()} >= {
        "PersistentVolumeClaim",
        "CSINode",
    }


def test_volume_binding_bound_topology() -> None:
    env = Env()
    env.add(vb.PVS, pv("v1", nodeAffinity=affinity("zone", "a")))
    env.add(vb.PVCS, pvc("c", volumeName="v1"))
    st, per_node = env.run(a_pod("c"), [node("n1", zone="a"), node("n2", zone="b")])
    assert st is None and per_node["n1"] is None
    bad = per_node["n2"]
    assert bad is not None and bad.message == vb.ERR_AFFINITY


def test_volume_binding_wait_for_first_consumer() -> None:
    env = Env()
    wffc = {
        "metadata": {"name": "fast"},
        "provisioner": "d",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    env.add(vb.CLASSES, wffc)
    env.add(vb.PVCS, pvc("c"))
    env.add(vb.CSINODES, {"metadata": {"name": "n1"}, "spec": {"drivers": [{"name": "d"}]}})
    nodes = [node("n1"), node("n2")]
    st, per_node = env.run(a_pod("c"), nodes)
    assert st is None and per_node["n1"] is None
    assert per_node["n2"] is not None and per_node["n2"].message == vb.ERR_DRIVER
    # a static volume on n2 makes n2 fit too, by binding that volume
    env.add(vb.PVS, pv("local", nodeAffinity=affinity("kubernetes.io/hostname", "n2")))
    state, pi = fw.CycleState(), PodInfo(a_pod("c"))
    env.plugin.pre_filter(state, pi, nodes)
    n2 = node("n2", **{"kubernetes.io/hostname": "n2"})
    assert env.plugin.filter(state, pi, n2) is None
    st_obj = state.read(vb.STATE_KEY)
    assert st_obj.decisions["n2"] == {"ns/c": "local"}
    env.plugin.reserve(state, pi, "n2")
    assert env.plugin.assumed == {"local": "ns/p"}
    env.plugin.unreserve(state, pi, "n2")
    assert env.plugin.assumed == {}
    # no provisioner and no volume: nowhere
    env2 = Env()
    env2.add(vb.CLASSES, {**wffc, "provisioner": vb.NO_PROVISIONER})
    env2.add(vb.PVCS, pvc("c"))
    _, per_node = env2.run(a_pod("c"), [node("n1")])
    assert per_node["n1"] is not None and per_node["n1"].message == vb.ERR_BIND
    topo = {
        **wffc,
        "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}],
    }
    env3 = Env()
    env3.add(vb.CLASSES, topo)
    env3.add(vb.PVCS, pvc("c"))
    _, per_node = env3.run(a_pod("c"), [node("n1", zone="a"), node("n2", zone="b")])
    assert per_node["n1"] is None and per_node["n2"] is not None
    assert per_node["n2"].message == vb.ERR_TOPOLOGY
