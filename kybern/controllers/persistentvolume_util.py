"""Pure helpers of the PersistentVolume controllers, as kube's `pv_controller` and
`volume/util` spell them: the binding annotations, a claim's effective storage class (the
default class for a claim that names none), sizes, access and volume modes, a PV's required
node affinity against a node's labels, and `find_best_match` — the smallest available volume
that satisfies a claim, preferring one pre-bound to it. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kybern.api import errors, selectors, validation

Obj = dict[str, Any]
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def notes_of(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def is_default_class(sc: Obj) -> bool:
    notes = notes_of(sc)
    return "true" in (notes.get(ANN_DEFAULT_CLASS), notes.get(ANN_BETA_DEFAULT_CLASS))


def default_class(classes: Iterable[Obj]) -> Obj | None:
    """The default StorageClass; with several, the newest (then by name), as kube picks."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    return max(
        defaults,
        key=lambda c: (c["metadata"].get("creationTimestamp") or "", c["metadata"]["name"]),
    )


def claim_class(pvc: Obj, default: str | None = None) -> str:
    """The claim's storage class: `spec.storageClassName`, or the default class when the claim
    leaves it unset (nil; "" means no class)."""
    spec = pvc.get("spec") or {}
    name = spec.get("storageClassName")
    if name is None:
        return default or ""
    return str(name)


def pv_class(pv: Obj) -> str:
    return str((pv.get("spec") or {}).get("storageClassName") or "")


def quantity(value: Any) -> Decimal:
    try:
        return validation.parse_quantity(value)
    except (ValueError, TypeError):
        return Decimal(0)


def requested(pvc: Obj) -> Decimal:
    res = (pvc.get("spec") or {}).get("resources") or {}
    return quantity((res.get("requests") or {}).get("storage") or 0)


def capacity(pv: Obj) -> Decimal:
    return quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage") or 0)


def volume_mode(obj: Obj) -> str:
    return str((obj.get("spec") or {}).get("volumeMode") or "Filesystem")


def modes_ok(pv: Obj, pvc: Obj) -> bool:
    have = set((pv.get("spec") or {}).get("accessModes") or ())
    want = set((pvc.get("spec") or {}).get("accessModes") or ())
    return want <= have


def _requirement_ok(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = req.get("key") or "", req.get("operator")
    values = req.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and len(values) == 1 and key in labels:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def affinity_matches(pv: Obj, node: Obj) -> bool:
    """Whether `node` satisfies the PV's required node affinity (terms ORed; expressions and
    `metadata.name` fields ANDed). A PV without node affinity fits every node."""
    req = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")) or {}
    terms = req.get("nodeSelectorTerms") or []
    if not terms:
        return True
    labels = node.get("metadata", {}).get("labels") or {}
    name = node.get("metadata", {}).get("name", "")
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue
        ok = all(_requirement_ok(e, labels) for e in exprs)
        ok = ok and all(_requirement_ok(f, {"metadata.name": name}) for f in fields)
        if ok:
            return True
    return False


def claim_ref_matches(pv: Obj, pvc: Obj) -> bool:
    """The PV's claimRef names this claim (same uid, or no uid yet: pre-bound by a user)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    m = pvc["metadata"]
    if ref.get("name") != m["name"] or (ref.get("namespace") or "") != m.get("namespace", ""):
        return False
    return not ref.get("uid") or ref.get("uid") == m.get("uid")


def _selector_ok(pvc: Obj, pv: Obj) -> bool:
    sel = (pvc.get("spec") or {}).get("selector")
    if sel is None:
        return True
    try:
        return selectors.from_label_selector_object(sel).matches(pv["metadata"].get("labels") or {})
    except errors.StatusError:
        return False


def matches(pv: Obj, pvc: Obj, claim_cls: str) -> bool:
    """Class, volume mode, access modes, size and selector fit (claimRef and phase aside)."""
    return (
        pv_class(pv) == claim_cls
        and volume_mode(pv) == volume_mode(pvc)
        and modes_ok(pv, pvc)
        and capacity(pv) >= requested(pvc)
        and _selector_ok(pvc, pv)
    )


def find_best_match(
    pvc: Obj,
    pvs: Iterable[Obj],
    claim_cls: str,
    *,
    node: Obj | None = None,
    delayed: bool = False,
) -> Obj | None:
    """kube's `findMatchingVolume`: a volume pre-bound to the claim wins; else the smallest
    unclaimed volume that fits. With `node`, the PV's node affinity must allow it; a delayed
    (WaitForFirstConsumer) claim without a node only takes pre-bound volumes."""
    best: Obj | None = None
    for pv in pvs:
        if pv["metadata"].get("deletionTimestamp"):
            continue
        if not matches(pv, pvc, claim_cls):
            continue
        if node is not None and not affinity_matches(pv, node):
            continue
        if claim_ref_matches(pv, pvc):
            return pv
        if (pv.get("spec") or {}).get("claimRef"):
            continue
        if (pv.get("status") or {}).get("phase") not in (None, "", "Available", "Pending"):
            continue
        if delayed and node is None:
            continue
        if best is None or capacity(pv) < capacity(best):
            best = pv
    return best


def claim_ref(pvc: Obj) -> Obj:
    m = pvc["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": m.get("namespace", ""),
        "name": m["name"],
        "uid": m.get("uid", ""),
        "resourceVersion": m.get("resourceVersion", ""),
    }


def is_external(pv: Obj) -> bool:
    """Provisioned (or handled) by an external CSI provisioner rather than in-tree."""
    return bool(notes_of(pv).get(ANN_PROVISIONED_BY) or (pv.get("spec") or {}).get("csi"))
