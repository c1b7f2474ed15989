"""The Deployment rollout arithmetic (`kybern.controllers.rollout`): surge/unavailable
resolution, step sizes, a simulated rolling update checked step by step for its bounds (with
hypothesis), proportional scaling, revisions, the template hash and the status predicates."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.controllers import common
from kybern.controllers import rollout as ro

Obj = dict[str, Any]


def deployment(replicas: int, surge: Any = "25%", unavailable: Any = "25%", **meta: Any) -> Obj:
    return {
        "metadata": {"name": "d", "generation": 1, **meta},
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "progressDeadlineSeconds": 600,
        },
    }


def rs(
    name: str,
    replicas: int,
    available: int | None = None,
    *,
    created: float = 0.0,
    status_replicas: int | None = None,
    **ann: str,
) -> Obj:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": common.format_time(created),
            "annotations": dict(ann),
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas if status_replicas is None else status_replicas,
            "availableReplicas": replicas if available is None else available,
        },
    }


def test_fenceposts() -> None:
    assert ro.resolve_fenceposts(deployment(4)) == (1, 1)
    assert ro.resolve_fenceposts(deployment(10, "30%", "30%")) == (3, 3)  # surge up, unavail down
    assert ro.resolve_fenceposts(deployment(3, 0, 0)) == (0, 1)  # never both zero
    assert ro.resolve_fenceposts(deployment(1)) == (1, 0)
    assert ro.max_unavailable(deployment(2, 0, 5)) == 2  # capped at replicas
    recreate = {"metadata": {}, "spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}
    assert ro.max_surge(recreate) == 0 and ro.new_rs_replicas(recreate, [], None) == 3


def test_new_replicaset_growth() -> None:
    d = deployment(4, 1, 1)
    old = rs("old", 4, created=1)
    assert ro.new_rs_replicas(d, [old], None) == 1
    new = rs("new", 1, 0, created=2)
    assert ro.new_rs_replicas(d, [old, new], new) == 1  # 5 pods: at the surge limit
    old3 = rs("old", 3, created=1)
    assert ro.new_rs_replicas(d, [old3, new], new) == 2
    # the old ReplicaSet still has 4 pods while shrinking to 3: no room yet
    shrinking = rs("old", 3, created=1, status_replicas=4)
    assert ro.new_rs_replicas(d, [shrinking, new], new) == 1


def test_scale_down_never_counts_pods_about_to_go() -> None:
    d = deployment(4, 1, 1)
    new = rs("new", 2, 1, created=2)
    # status still counts 4 available old pods although spec says 3: only 3 are counted
    old = rs("old", 3, 4, created=1, status_replicas=4)
    assert ro.safe_available_sum([old, new]) == 4
    assert ro.scale_down_old(d, [old, new], [old]) == [(old, 2)]
    assert ro.max_scaled_down(d, [old, new], new) == 5 - 3 - 1


def test_cleanup_unhealthy_first() -> None:
    a = rs("a", 3, 1, created=1)
    b = rs("b", 2, 2, created=2)
    assert ro.cleanup_unhealthy([b, a], 5) == [(a, 1)]
    assert ro.cleanup_unhealthy([b, a], 1) == [(a, 2)]


@settings(max_examples=150, deadline=None)
@given(
    replicas=st.integers(1, 12),
    surge=st.integers(0, 4),
    unavailable=st.integers(0, 4),
    ready_order=st.lists(st.booleans(), min_size=0, max_size=200),
)
def test_simulated_rolling_update_stays_in_bounds(
    replicas: int, surge: int, unavailable: int, ready_order: list[bool]
) -> None:
    """A rollout where pods appear and disappear at once but become ready whenever the
    'kubelet' gets a turn: the controller's steps never exceed maxSurge or go below
    maxUnavailable, and the rollout completes."""
    d = deployment(replicas, surge, unavailable)
    max_surge, max_unavail = ro.resolve_fenceposts(d)
    old, new, ready = replicas, 0, 0

    def controller_step() -> bool:
        nonlocal old, new
        old_rs, new_rs = rs("old", old, old, created=1), rs("new", new, ready, created=2)
        if new != replicas:
            size = replicas if new > replicas else ro.new_rs_replicas(d, [old_rs, new_rs], new_rs)
            if size != new:
                new = size
                return True
        if old > 0 and ro.max_scaled_down(d, [old_rs, new_rs], new_rs) > 0:
            for _, size in ro.scale_down_old(d, [old_rs, new_rs], [old_rs]):
                old = size
                return True
        return False

    turns = iter(ready_order)
    for _ in range(10_000):
        if ready < new and next(turns, True):
            ready += 1  # the kubelet's turn: one new pod becomes ready
        elif not controller_step() and ready == new:
            break
        assert old + new <= replicas + max_surge
        assert old + ready >= replicas - max_unavail
    assert (old, new, ready) == (0, replicas, replicas), "the rollout did not finish"


def test_proportional_scaling_mid_rollout() -> None:
    d = deployment(15)  # was 10 with surge 3: max-replicas annotation 13
    old = rs("old", 8, created=1, **{ro.MAX_REPLICAS: "13"})
    new = rs("new", 3, created=2, **{ro.MAX_REPLICAS: "13"})
    sizes = ro.proportional_sizes(d, [old, new], new)
    assert sum(sizes.values()) == 15 + 4
    assert sizes == {"old": 15, "new": 4}
    down = ro.proportional_sizes(deployment(5), [old, new], new)
    assert sum(down.values()) == 5 + 2 and all(v >= 0 for v in down.values())


def test_revision_annotations() -> None:
    d = {
        "metadata": {
            "annotations": {
                "team": "a",
                ro.REVISION: "2",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            }
        }
    }
    fresh = {"metadata": {}}
    ann, changed = ro.annotations_for_rs(d, fresh, "3", exists=False)
    assert changed and ann == {"team": "a", ro.REVISION: "3"}
    old = {"metadata": {"annotations": {ro.REVISION: "1"}}}
    ann, _ = ro.annotations_for_rs(d, old, "4", exists=True)
    assert ann[ro.REVISION] == "4" and ann[ro.REVISION_HISTORY] == "1"
    same = {"metadata": {"annotations": dict(ann)}}
    assert ro.annotations_for_rs(d, same, "4", exists=True) == (ann, False)
    assert ro.max_revision([old, same]) == 4


def test_template_hash_and_equality() -> None:
    t = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    h = ro.template_hash(t)
    assert h == ro.template_hash(dict(reversed(list(t.items()))))
    assert h != ro.template_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    hashed = {"metadata": {"labels": {"app": "x", ro.HASH_LABEL: h}}, "spec": t["spec"]}
    from_kubectl = {
        "metadata": {"creationTimestamp": None, "labels": {"app": "x"}},
        "spec": t["spec"],
    }
    assert ro.equal_ignore_hash(hashed, from_kubectl)
    assert not ro.equal_ignore_hash(hashed, {**from_kubectl, "spec": {"containers": []}})


def test_status_predicates() -> None:
    d = deployment(2)
    new = rs("new", 2, 2)
    status = ro.calculate_status(d, [new], new, "2024-01-01T00:00:00Z")
    assert status["updatedReplicas"] == 2 and ro.is_complete(d, status)
    assert common.get_condition(status, "Available")["status"] == "True"  # type: ignore[index]
    assert ro.is_progressing({"status": {"updatedReplicas": 1}}, {"updatedReplicas": 2})
    assert not ro.is_progressing({"status": {"updatedReplicas": 2}}, {"updatedReplicas": 2})
    stalled = {
        "conditions": [
            {
                "type": "Progressing",
                "reason": "ReplicaSetUpdated",
                "lastUpdateTime": "2024-01-01T00:00:00Z",
            }
        ]
    }
    t0 = common.parse_time("2024-01-01T00:00:00Z") or 0.0
    assert not ro.timed_out(d, stalled, t0 + 600)
    assert ro.timed_out(d, stalled, t0 + 601)
    assert ro.is_saturated(d, rs("new", 2, 2, **{ro.DESIRED_REPLICAS: "2"}))
