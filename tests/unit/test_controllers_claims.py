"""The controllers' fast paths over the shared pod informer, without a server: the `orphan`
index and `claim_candidates` (a ReplicaSet's sync looks at its own pods and the namespace's
orphans, not at its siblings' pods), and give the same claim as the whole namespace; a
ReplicaSet sync among sibling ReplicaSets (adoption, release, status counts); the one-pass
readiness helpers against the per-question ones; and the attach-detach controller, which
wakes a node only for pods with claims."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kybern.api import selectors
from kybern.client import events, informer
from kybern.controllers import attachdetach, common, replicaset

Obj = dict[str, Any]
NS = "work"
T0 = 1_700_000_000.0


class FakeClient:
    """Answers what a ReplicaSet sync asks and records the writes."""

    def __init__(self, owners: dict[str, Obj] | None = None) -> None:
        self.owners = owners or {}
        self.pods = {p["metadata"]["name"]: p for p in mixed_namespace()}
        self.patches: list[tuple[str, Obj]] = []
        self.created: list[Obj] = []
        self.statuses: list[Obj] = []
        self.gets = 0

    async def get(self, res: Any, name: str, namespace: str = "") -> Obj:
        self.gets += 1
        return self.owners[name]

    async def patch(self, res: Any, name: str, patch: Obj, namespace: str = "", **kw: Any) -> Obj:
        self.patches.append((name, patch))
        live = self.pods[name]
        return {**live, "metadata": {**live["metadata"], **patch["metadata"]}}

    async def create(self, res: Any, obj: Obj, namespace: str = "") -> Obj:
        self.created.append(obj)
        return {"metadata": {"name": f"made-{len(self.created)}"}}

    async def update_status(self, res: Any, obj: Obj) -> Obj:
        self.statuses.append(obj["status"])
        return obj


def context(client: FakeClient) -> common.Context:
    c: Any = client
    return common.Context(
        client=c,
        factory=informer.InformerFactory(c),
        broadcaster=events.EventBroadcaster(c),
        clock=lambda: T0,
    )


def owner_ref(uid: str, kind: str = "ReplicaSet", controller: bool = True) -> Obj:
    ref = {"apiVersion": "apps/v1", "kind": kind, "name": f"rs-{uid}", "controller": controller}
    if uid:
        ref["uid"] = uid
    return ref


def pod(
    name: str,
    labels: dict[str, str],
    *,
    owner: Obj | None = None,
    ns: str = NS,
    phase: str = "Running",
    ready: bool = True,
    ready_since: float = T0,
    deleting: bool = False,
    rv: str = "1",
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels}
    meta["resourceVersion"] = rv
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if deleting:
        meta["deletionTimestamp"] = "2023-01-01T00:00:00Z"
    cond = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastTransitionTime": common.format_time(ready_since),
    }
    return {
        "metadata": meta,
        "spec": {"nodeName": "n1"},
        "status": {"phase": phase, "conditions": [{"type": "PodScheduled"}, cond]},
    }


def rs(uid: str, app: str, replicas: int, min_ready: int = 0) -> Obj:
    labels = {"app": app}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"rs-{uid}", "namespace": NS, "uid": uid, "generation": 1},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
        },
    }


def names(objs: list[Obj]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def mixed_namespace() -> list[Obj]:
    """Pods of two ReplicaSets (`a`, `b`), orphans here and elsewhere, and odd references."""
    return [
        pod("a-1", {"app": "a"}, owner=owner_ref("a")),
        pod("a-2", {"app": "a"}, owner=owner_ref("a"), ready=False),
        pod("a-gone", {"app": "x"}, owner=owner_ref("a")),  # stopped matching: released
        pod("a-done", {"app": "a"}, owner=owner_ref("a"), phase="Succeeded"),
        pod("b-1", {"app": "a"}, owner=owner_ref("b")),  # matches a, but b controls it
        pod("b-2", {"app": "b"}, owner=owner_ref("b")),
        pod("orphan", {"app": "a"}),  # adopted by a
        pod("orphan-b", {"app": "b"}),
        pod("weak", {"app": "a"}, owner=owner_ref("a", controller=False)),  # an orphan too
        pod("no-uid", {"app": "a"}, owner=owner_ref("")),  # a controller ref without uid
        pod("elsewhere", {"app": "a"}, ns="other"),
        pod("elsewhere-a", {"app": "a"}, ns="other", owner=owner_ref("a")),
    ]


def test_orphan_index_follows_the_controller_reference() -> None:
    ctx = context(FakeClient())
    pods = common.shared(ctx, common.PODS)
    assert common.shared(ctx, common.PODS) is pods
    lone = pod("p", {"app": "a"})
    pods._apply("ADDED", lone)
    assert names(pods.by_index("orphan", NS)) == ["p"]
    owned = pod("p", {"app": "a"}, owner=owner_ref("a"), rv="2")
    pods._apply("MODIFIED", owned)
    assert pods.by_index("orphan", NS) == []
    assert names(pods.by_index("controller", "a")) == ["p"]
    pods._apply("MODIFIED", pod("p", {"app": "a"}, rv="3"))  # released again
    assert names(pods.by_index("orphan", NS)) == ["p"]
    pods._apply("DELETED", pod("p", {"app": "a"}, rv="3"))
    assert pods.by_index("orphan", NS) == []


async def test_claim_candidates_give_the_claim_of_the_whole_namespace() -> None:
    ctx = context(FakeClient())
    pods = common.shared(ctx, common.PODS)
    for p in mixed_namespace():
        pods._apply("ADDED", p)
    for uid, app in (("a", "a"), ("b", "b"), ("c", "a")):
        owner = rs(uid, app, 3)
        cands = common.claim_candidates(pods, owner)
        every = pods.by_index("namespace", NS)
        skipped = [p for p in every if p not in cands]
        # only pods another controller controls are left out
        assert all(common.controller_uid(p) not in (None, uid) for p in skipped)
        sel = selectors.from_label_selector_object(owner["spec"]["selector"])
        answers = []
        for candidates in (cands, every):
            client = FakeClient({owner["metadata"]["name"]: owner})
            got = await common.claim(
                client,  # type: ignore[arg-type]
                common.PODS,
                owner,
                common.REPLICASETS,
                sel,
                candidates,
                common.adopt_check(client, common.REPLICASETS, owner),  # type: ignore[arg-type]
            )
            answers.append((names(got), sorted(n for n, _ in client.patches), client.gets))
        assert answers[0] == answers[1]
    a = common.claim_candidates(pods, rs("a", "a", 3))
    assert names(a) == ["a-1", "a-2", "a-done", "a-gone", "orphan", "orphan-b", "weak"]


async def test_replicaset_sync_among_siblings() -> None:
    owner = rs("a", "a", 4)
    client = FakeClient({"rs-a": owner})
    ctx = context(client)
    ctl = replicaset.ReplicaSetController(ctx)
    ctl.owners._apply("ADDED", owner)
    ctl.owners._apply("ADDED", rs("b", "b", 2))
    for p in mixed_namespace():
        ctl.pods._apply("ADDED", p)
    assert await ctl.reconcile("work/rs-a") is None
    # the orphan adopted, the relabelled pod released, b's pods and other namespaces untouched
    assert sorted(n for n, _ in client.patches) == ["a-gone", "orphan", "weak"]
    refs = {n: p["metadata"]["ownerReferences"] for n, p in client.patches}
    assert refs["a-gone"] is None
    assert [r["uid"] for r in refs["orphan"]] == ["a"]
    assert client.created == []  # a-1, a-2 and the adopted orphan and weak: 4 of 4
    status = client.statuses[-1]
    assert status["replicas"] == 4
    assert status["fullyLabeledReplicas"] == 4
    assert status["readyReplicas"] == 3 and status["availableReplicas"] == 3


@pytest.mark.parametrize("min_ready", [0, 10])
def test_replicaset_status_counts(min_ready: int) -> None:
    ctl = replicaset.ReplicaSetController(context(FakeClient()))
    owner = rs("a", "a", 4, min_ready=min_ready)
    pods = [
        pod("ready-long", {"app": "a"}, ready_since=T0 - 60),
        pod("ready-now", {"app": "a"}, ready_since=T0),
        pod("not-ready", {"app": "a"}, ready=False),
        pod("partly-labelled", {"app": "a", "extra": "1"}, ready_since=T0 - 60),
    ]
    pods[3]["metadata"]["labels"] = {"other": "x"}
    status = ctl.calculate_status(owner, pods, None)
    assert status["replicas"] == 4
    assert status["fullyLabeledReplicas"] == 3
    assert status["readyReplicas"] == 3
    assert status["availableReplicas"] == (3 if min_ready == 0 else 2)
    nobody = ctl.calculate_status(owner, [], None)
    assert nobody["replicas"] == 0 and "readyReplicas" not in nobody


def test_ready_and_available_agree_with_the_single_questions() -> None:
    variants: list[Obj] = []
    for ready, since, phase in itertools.product(
        (True, False), (T0 - 20, T0 - 5, T0), ("Running", "Pending", "Succeeded")
    ):
        variants.append(pod("p", {}, ready=ready, ready_since=since, phase=phase))
    variants.append({"metadata": {"name": "bare"}})
    variants.append({"metadata": {"name": "nulls"}, "status": {"conditions": None}})
    no_time = pod("no-time", {})
    del no_time["status"]["conditions"][1]["lastTransitionTime"]
    variants.append(no_time)
    for p in variants:
        cond = common.pod_condition(p, "Ready")
        ready = cond is not None and cond.get("status") == "True"
        assert common.is_pod_ready(p) == ready
        for min_ready in (0, 10):
            ready_at = common.parse_time((cond or {}).get("lastTransitionTime"))
            available = ready and (
                min_ready <= 0 or (ready_at is not None and ready_at + min_ready <= T0)
            )
            assert common.ready_and_available(p, min_ready, T0) == (ready, available)
            assert common.is_pod_available(p, min_ready, T0) == available
        phase = common.pod_phase(p)
        assert common.is_pod_terminal(p) == (phase in ("Succeeded", "Failed"))
        assert common.is_pod_active(p) == (
            phase not in ("Succeeded", "Failed") and not common.deleting(p)
        )
    # pod_condition still hands out a copy
    p = pod("p", {})
    c = common.pod_condition(p, "Ready")
    assert c is not None
    c["status"] = "False"
    assert common.is_pod_ready(p)
    assert common.controller_uid(pod("x", {}, owner=owner_ref("u"))) == "u"
    assert common.controller_uid(pod("x", {}, owner=owner_ref("u", controller=False))) is None
    assert common.controller_uid(pod("x", {}, owner=owner_ref(""))) == ""


def test_attach_detach_wakes_a_node_only_for_pods_with_claims() -> None:
    ctl = attachdetach.AttachDetachController(context(FakeClient()))
    plain = pod("plain", {})
    plain["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    ctl.pods._apply("ADDED", plain)
    ctl.pods._apply("MODIFIED", {**plain, "status": {"phase": "Running"}})
    ctl.pods._apply("DELETED", plain)
    assert len(ctl.queue) == 0
    claimed = pod("claimed", {})
    claimed["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]
    ctl.pods._apply("ADDED", claimed)
    assert len(ctl.queue) == 1
    ephemeral = pod("eph", {})
    ephemeral["spec"]["nodeName"] = "n2"
    ephemeral["spec"]["volumes"] = [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]
    ctl.pods._apply("ADDED", ephemeral)
    assert len(ctl.queue) == 2
    unscheduled = pod("later", {})
    del unscheduled["spec"]["nodeName"]
    unscheduled["spec"]["volumes"] = claimed["spec"]["volumes"]
    ctl.pods._apply("ADDED", unscheduled)
    assert len(ctl.queue) == 2


def test_attach_detach_desired_needs_bound_csi_claims() -> None:
    ctl = attachdetach.AttachDetachController(context(FakeClient()))
    plain = pod("plain", {})
    claimed = pod("claimed", {})
    claimed["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]
    ctl.pods._apply("ADDED", plain)
    ctl.pods._apply("ADDED", claimed)
    ctl.claims._apply(
        "ADDED", {"metadata": {"name": "c", "namespace": NS}, "spec": {"volumeName": "pv"}}
    )
    ctl.volumes._apply(
        "ADDED", {"metadata": {"name": "pv"}, "spec": {"csi": {"driver": "d", "volumeHandle": "h"}}}
    )
    want = ctl.desired("n1")
    assert list(want) == [attachdetach.attachment_name("h", "d", "n1")]
    assert want[attachdetach.attachment_name("h", "d", "n1")]["spec"]["source"] == {
        "persistentVolumeName": "pv"
    }
