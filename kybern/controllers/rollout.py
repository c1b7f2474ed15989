"""The pure arithmetic of Deployment rollouts (Kubernetes' deployment/util), on plain dicts:
maxSurge/maxUnavailable resolution, how far the new ReplicaSet may grow and the old ones may
shrink, proportional scaling, revision bookkeeping, the pod-template hash and the status and
completeness predicates. The deployment controller is the only caller; unit tests check it."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import orjson

from kybern.controllers import common

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# annotations of a Deployment that are not copied to its ReplicaSets
SKIP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
_SAFE = "bcdf" + "ghjklmnpqrstvwxz2456789"


# ---- hashing --------------------------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: map each character onto an alphabet without vowels."""
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in s)


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def _normalized(template: Obj) -> Obj:
    t = without_hash(template)
    meta = {k: v for k, v in (t.get("metadata") or {}).items() if v is not None}
    for k in ("labels", "annotations"):
        if not meta.get(k):
            meta.pop(k, None)
    if not meta:
        t.pop("metadata", None)
    else:
        t["metadata"] = meta
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _normalized(a) == _normalized(b)


# ---- int-or-percent -------------------------------------------------------------------------


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1])
        v = pct * total / 100
        return math.ceil(v) if round_up else math.floor(v)
    return int(s)


def replicas_of(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate Deployment; never both zero."""
    strategy = (d.get("spec") or {}).get("strategy") or {}
    ru = strategy.get("rollingUpdate") or {}
    desired = replicas_of(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling(d: Obj) -> bool:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    return strategy.get("type", "RollingUpdate") == "RollingUpdate"


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas_of(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas_of(d))


# ---- counts ---------------------------------------------------------------------------------


def status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def spec_sum(rss: Iterable[Obj | None]) -> int:
    return sum(replicas_of(rs) for rs in rss if rs is not None)


def pods_sum(rss: Iterable[Obj | None]) -> int:
    """Pods that exist or are about to: spec.replicas, or status.replicas while a scale-down
    is still being carried out (so surge is never exceeded while old pods go away)."""
    return sum(max(replicas_of(rs), status_int(rs, "replicas")) for rs in rss if rs is not None)


def available_sum(rss: Iterable[Obj | None]) -> int:
    return sum(status_int(rs, "availableReplicas") for rs in rss if rs is not None)


def safe_available_sum(rss: Iterable[Obj | None]) -> int:
    """Available pods that will remain once pending scale-downs are carried out: a
    ReplicaSet's status may still count pods it is about to delete, so never more than its
    spec.replicas (decisions to remove more pods rely on this never being overestimated)."""
    return sum(
        min(status_int(rs, "availableReplicas"), replicas_of(rs)) for rs in rss if rs is not None
    )


def new_rs_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """NewRSNewReplicas: the size of the new ReplicaSet in this step."""
    if not is_rolling(d):
        return replicas_of(d)
    current = replicas_of(new_rs) if new_rs is not None else 0
    surge = max_surge(d)
    pod_count = pods_sum(all_rss)
    max_total = replicas_of(d) + surge
    if pod_count >= max_total:
        return current
    scale_up = min(max_total - pod_count, replicas_of(d) - current)
    return current + max(scale_up, 0)


def max_scaled_down(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many old pods reconcileOldReplicaSets may remove now."""
    all_pods = spec_sum(all_rss)
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = 0
    if new_rs is not None:
        new_unavailable = replicas_of(new_rs) - safe_available_sum([new_rs])
    return all_pods - min_available - new_unavailable


def cleanup_unhealthy(old_rss: list[Obj], limit: int) -> list[tuple[Obj, int]]:
    """cleanupUnhealthyReplicas: (rs, new size) for old ReplicaSets losing unavailable pods."""
    out: list[tuple[Obj, int]] = []
    total = 0
    for rs in sorted(old_rss, key=_created):
        if total >= limit:
            break
        size = replicas_of(rs)
        if size == 0 or size == status_int(rs, "availableReplicas"):
            continue
        n = min(limit - total, size - status_int(rs, "availableReplicas"))
        if n <= 0:
            continue
        out.append((rs, size - n))
        total += n
    return out


def scale_down_old(d: Obj, all_rss: list[Obj], old_rss: list[Obj]) -> list[tuple[Obj, int]]:
    """scaleDownOldReplicaSetsForRollingUpdate: keep at least replicas-maxUnavailable
    available, shrinking the oldest ReplicaSets first."""
    min_available = replicas_of(d) - max_unavailable(d)
    available = safe_available_sum(all_rss)
    if available <= min_available:
        return []
    todo = available - min_available
    out: list[tuple[Obj, int]] = []
    done = 0
    for rs in sorted(old_rss, key=_created):
        if done >= todo:
            break
        size = replicas_of(rs)
        if size == 0:
            continue
        n = min(size, todo - done)
        out.append((rs, size - n))
        done += n
    return out


def _created(rs: Obj) -> tuple[float, str]:
    t = common.parse_time(rs["metadata"].get("creationTimestamp")) or 0.0
    return (t, rs["metadata"].get("name", ""))


# ---- proportional scaling -------------------------------------------------------------------


def annotation_int(rs: Obj, name: str) -> int | None:
    v = (rs["metadata"].get("annotations") or {}).get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def proportional_sizes(d: Obj, active: list[Obj], new_rs: Obj | None) -> dict[str, int]:
    """The scale() step for a RollingUpdate Deployment resized mid-rollout: name -> new size,
    spreading the difference over the active ReplicaSets in proportion to their size."""
    all_rss = [rs for rs in active if rs is not None]
    desired = replicas_of(d)
    allowed = desired + max_surge(d) if desired > 0 else 0
    to_add = allowed - spec_sum(all_rss)
    if to_add > 0:  # scaling up: largest first, newer first among equals (BySizeNewer)
        order = sorted(all_rss, key=lambda rs: (-replicas_of(rs), -_created(rs)[0]))
    else:  # scaling down: largest first, older first among equals (BySizeOlder)
        order = sorted(all_rss, key=lambda rs: (-replicas_of(rs), _created(rs)[0]))
    sizes: dict[str, int] = {}
    added = 0
    if to_add != 0:
        for rs in order:
            n = _proportion(d, rs, to_add, added)
            sizes[rs["metadata"]["name"]] = replicas_of(rs) + n
            added += n
    for rs in order:
        sizes.setdefault(rs["metadata"]["name"], replicas_of(rs))
    leftover = to_add - added
    if leftover != 0 and order:
        first = order[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + leftover, 0)
    return sizes


def _proportion(d: Obj, rs: Obj, to_add: int, added: int) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(d, rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(d: Obj, rs: Obj) -> int:
    if replicas_of(d) == 0:
        return -replicas_of(rs)
    max_now = replicas_of(d) + max_surge(d)
    before = annotation_int(rs, MAX_REPLICAS)
    if not before:
        return 0
    new_size = replicas_of(rs) * max_now / before
    return math.floor(new_size + 0.5) - replicas_of(rs)


# ---- revisions ------------------------------------------------------------------------------


def revision(rs: Obj) -> int:
    return annotation_int(rs, REVISION) or 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def annotations_for_rs(
    d: Obj, rs: Obj, new_revision: str, exists: bool
) -> tuple[dict[str, str], bool]:
    """SetNewReplicaSetAnnotations: the ReplicaSet's annotations after copying the
    Deployment's and updating the revision (with revision-history when an old ReplicaSet
    becomes the new one again); also returns whether anything changed."""
    ann: dict[str, str] = dict(rs["metadata"].get("annotations") or {})
    before = dict(ann)
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k not in SKIP_ANNOTATIONS:
            ann[k] = v
    old = ann.get(REVISION, "")
    try:
        old_n = int(old) if old else 0
    except ValueError:
        old_n = 0
    if old_n < int(new_revision):
        ann[REVISION] = new_revision
        if old and exists:
            history = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
            ann[REVISION_HISTORY] = ",".join([*history, old])
    elif not old:
        ann[REVISION] = new_revision
    return ann, ann != before


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


# ---- status ---------------------------------------------------------------------------------


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: str) -> Obj:
    old = d.get("status") or {}
    available = available_sum(all_rss)
    total = spec_sum(all_rss)
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": sum(status_int(rs, "replicas") for rs in all_rss),
        "updatedReplicas": status_int(new_rs, "replicas") if new_rs is not None else 0,
        "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= replicas_of(d) - max_unavailable(d):
        common.set_condition(
            status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
            update_time=True,
        )
    else:
        common.set_condition(
            status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
            update_time=True,
        )
    for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
        if not status[k]:
            del status[k]
    return status


def is_complete(d: Obj, status: Obj) -> bool:
    """DeploymentComplete."""
    want = replicas_of(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation", 1))
    )


def is_progressing(d: Obj, new: Obj) -> bool:
    """DeploymentProgressing: more updated, ready or available pods, or fewer old ones."""
    old = d.get("status") or {}

    def g(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )


def timed_out(d: Obj, status: Obj, now: float) -> bool:
    """DeploymentTimedOut: no progress for progressDeadlineSeconds."""
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if deadline is None:
        return False
    cond = common.get_condition(status, "Progressing")
    if cond is None:
        return False
    if cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = common.parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + int(deadline) < now


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = annotation_int(rs, DESIRED_REPLICAS)
    return (
        desired == replicas_of(d)
        and replicas_of(rs) == replicas_of(d)
        and status_int(rs, "availableReplicas") == replicas_of(d)
    )
