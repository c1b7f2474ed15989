"""Pure predicates about pods and nodes that controllers need (the scheduler has its own):
taint toleration (`ToleratesTaint`), nodeSelector and required node affinity matching, and the
NoExecute eviction time of a pod on a tainted node (the taint manager's rule, with the
DefaultTolerationSeconds admission default for not-ready/unreachable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kybern.controllers import common

Obj = dict[str, Any]
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"


def tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    op = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if key != taint.get("key", ""):
        return key == "" and op == "Exists"
    if op == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(
    tolerations: Iterable[Obj], taints: Iterable[Obj], effects: Iterable[str]
) -> list[Obj]:
    """The taints with one of `effects` that no toleration tolerates."""
    tols = list(tolerations)
    wanted = set(effects)
    return [
        t
        for t in taints
        if t.get("effect") in wanted and not any(tolerates(tol, t) for tol in tols)
    ]


def _labels(node: Obj) -> dict[str, str]:
    return dict(node["metadata"].get("labels") or {})


def _expr_matches(expr: Obj, value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    """One NodeSelectorTerm: all its matchExpressions and matchFields hold (an empty term
    matches nothing)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = _labels(node)
    for e in exprs:
        if not _expr_matches(e, labels.get(e.get("key", ""))):
            return False
    for f in fields:
        value = node["metadata"].get("name") if f.get("key") == "metadata.name" else None
        if not _expr_matches(f, value):
            return False
    return True


def node_matches(pod_spec: Obj, node: Obj) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity."""
    labels = _labels(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(term_matches(t, node) for t in terms)


def default_tolerations(tolerations: list[Obj], seconds: float) -> list[Obj]:
    """What the DefaultTolerationSeconds admission plugin adds: not-ready and unreachable
    NoExecute tolerations for `seconds`, unless the pod already has them."""
    out = list(tolerations)
    for key in (NOT_READY, UNREACHABLE):
        if not any(
            t.get("key") in (key, "", None) and t.get("effect") in ("NoExecute", "", None)
            for t in tolerations
        ):
            out.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": int(seconds),
                }
            )
    return out


def eviction_time(pod: Obj, taints: list[Obj], default_seconds: float, now: float) -> float | None:
    """When the taint manager deletes `pod` from a node with `taints`: now when a NoExecute
    taint is not tolerated, else the earliest NoExecute taint's timeAdded plus the smallest
    tolerationSeconds among the tolerations used; None when they tolerate forever."""
    noexec = [t for t in taints if t.get("effect") == "NoExecute"]
    if not noexec:
        return None
    tols = default_tolerations(
        list((pod.get("spec") or {}).get("tolerations") or []), default_seconds
    )
    used: list[Obj] = []
    for t in noexec:
        matching = [tol for tol in tols if tolerates(tol, t)]
        if not matching:
            return now
        used.extend(matching)
    seconds = [
        max(float(t["tolerationSeconds"]), 0.0)
        for t in used
        if t.get("tolerationSeconds") is not None
    ]
    if not seconds:
        return None
    start = min((common.parse_time(t.get("timeAdded")) or now) for t in noexec)
    return start + min(seconds)
