"""The fast paths of managedFields tracking against the general algorithm they replace: a
reference `FieldManager.update` and `FieldManager.apply` kept here as they were written before
them (full zero-value overlays of both objects, `compare` over everything then `exclude`, set
operations that always build new sets, `to_json` node by node) must give byte-identical
`metadata.managedFields` for realistic write sequences (a pod created, bound and reported
running by a simulated node, node leases renewed, events, deployments changed by several
managers, the status and scale subresources, the 10-updater cap, kinds without schema or zero
value) and for randomly mutated objects and applied configurations (hypothesis); creates
remembered by content must not be fooled by values that print like JSON (tuples, NaN, 1 for
true); written `fieldsV1` documents are only kept when exactly canonical and never shared with
the live object; the pruned comparison raises the same SchemaMismatch first; the memories stay
bounded; and the set algebra that now keeps unchanged sets (`union`, `difference`,
`intersection`) must agree with plain definitions."""

from __future__ import annotations

import copy
import datetime
import random
import re
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kybern.api import apply, apply_typed, defaults, errors
from kybern.api import managedfields as mf
from kybern.api import managedfields_entries as mf_entries
from kybern.api.managedfields import MISSING, FieldSet, Manager, Owned

Obj = dict[str, Any]
Managed = dict[Manager, Owned]
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z", "2024-01-01T00:01:00Z"


# ---- the general path, as it was --------------------------------------------------------------


def r_union(a: FieldSet, b: FieldSet) -> FieldSet:
    if b.empty():
        return a
    if a.empty():
        return b
    children = dict(a.children)
    for pe, sub in b.children.items():
        mine = children.get(pe)
        children[pe] = sub if mine is None else r_union(mine, sub)
    return FieldSet(a.members | b.members, children)


def r_intersection(a: FieldSet, b: FieldSet) -> FieldSet:
    children = {}
    for pe, sub in a.children.items():
        theirs = b.children.get(pe)
        if theirs is not None:
            both = r_intersection(sub, theirs)
            if not both.empty():
                children[pe] = both
    return FieldSet(a.members & b.members, children)


def r_minus(a: FieldSet, b: FieldSet, recursive: bool = False) -> FieldSet:
    if b.empty():
        return a
    children = {}
    for pe, sub in a.children.items():
        theirs = b.children.get(pe)
        if recursive and pe in b.members:
            continue
        if theirs is None:
            children[pe] = sub
        else:
            rest = r_minus(sub, theirs, recursive)
            if not rest.empty():
                children[pe] = rest
    return FieldSet(a.members - b.members, children)


def r_to_json(s: FieldSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pe in sorted(s.members | s.children.keys(), key=mf.pe_order):
        sub = s.children.get(pe)
        if sub is None:
            out[pe] = {}
        else:
            node = r_to_json(sub)
            if pe in s.members:
                node["."] = {}
            out[pe] = node
    return out


def r_item_pe(atom: mf.Atom, index: int, item: Any) -> str:
    if atom.list_type == "map" and atom.keys:
        if item is None:
            raise mf.SchemaMismatch("associative list with keys may not have a null element")
        if not isinstance(item, dict):
            raise mf.SchemaMismatch("associative list with keys may not have non-map elements")
        kv: dict[str, Any] = {}
        for k in atom.keys:
            if item.get(k) is not None:
                kv[k] = item[k]
            elif k in atom.key_defaults:
                kv[k] = atom.key_defaults[k]
            else:
                raise mf.SchemaMismatch(
                    f'associative list with keys has an element that omits key field "{k}" '
                    "(and doesn't have default value)"
                )
        return mf.key_pe(kv)
    if atom.list_type != "atomic":
        if isinstance(item, dict):
            raise mf.SchemaMismatch(
                "associative list without keys has an element that's a map type"
            )
        if isinstance(item, list):
            raise mf.SchemaMismatch("not supported: associative list with lists as elements")
        if item is None:
            raise mf.SchemaMismatch(
                "associative list without keys has an element that's an explicit null"
            )
        return mf.value_pe(item)
    return mf.index_pe(index)


def r_index(atom: mf.Atom, items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items if isinstance(items, list) else ()):
        out.setdefault(r_item_pe(atom, i, item), item)
    return out


def r_subtree(v: Any, atom: mf.Atom) -> FieldSet | None:
    if v.__class__ is dict:
        if not v or not atom.is_map or atom.atomic:
            return None
        s = FieldSet()
        for k, val in v.items():
            pe = "f:" + k
            s.members.add(pe)
            if val.__class__ is dict or val.__class__ is list:
                sub = r_subtree(val, atom.field(k) or atom.element())
                if sub is not None:
                    s.children[pe] = sub
        return s
    if v.__class__ is list and v and atom.is_list and atom.list_type != "atomic":
        s = FieldSet()
        elem = atom.element()
        for i, item in enumerate(v):
            pe = r_item_pe(atom, i, item)
            s.members.add(pe)
            sub = r_subtree(item, elem)
            if sub is not None:
                s.children[pe] = sub
        return s
    return None


def r_equal(a: Any, b: Any) -> bool:
    return bool(a == b) and (a.__class__ is bool) == (b.__class__ is bool)


def r_node(s: FieldSet, path: tuple[str, ...]) -> FieldSet:
    for pe in path:
        child = s.children.get(pe)
        if child is None:
            child = s.children[pe] = FieldSet()
        s = child
    return s


Cmp = tuple[FieldSet, FieldSet, FieldSet]  # added, modified, removed


def r_compare(lhs: Any, rhs: Any, atom: mf.Atom) -> Cmp:
    c = (FieldSet(), FieldSet(), FieldSet())
    if not r_equal(lhs, rhs):
        r_cmp(lhs, rhs, atom, (), c)
    return c


def r_cmp(lhs: Any, rhs: Any, atom: mf.Atom, path: tuple[str, ...], c: Cmp) -> None:
    kl, kr = mf.kind_of(atom, lhs), mf.kind_of(atom, rhs)
    if kl != kr or mf.leafish(atom, kr, lhs, rhs):
        c[1].insert(path)
        return
    if kr == mf.MAP:
        lm = lhs if lhs.__class__ is dict else {}
        rm = rhs if rhs.__class__ is dict else {}
        pairs = [("f:" + k, lm.get(k, MISSING), rm.get(k, MISSING), k) for k in {**lm, **rm}]
    else:
        litems = r_index(atom, lhs)
        ritems = r_index(atom, rhs)
        pairs = [
            (pe, litems.get(pe, MISSING), ritems.get(pe, MISSING), "")
            for pe in {**litems, **ritems}
        ]
    for pe, lv, rv, key in pairs:
        if lv is MISSING or rv is MISSING:
            node = r_node(c[0] if lv is MISSING else c[2], path)
            node.members.add(pe)
            v = rv if lv is MISSING else lv
            if v.__class__ is dict or v.__class__ is list:
                sub = r_subtree(v, atom.field(key) or atom.element() if key else atom.element())
                if sub is not None:
                    mine = node.children.get(pe)
                    node.children[pe] = sub if mine is None else r_union(mine, sub)
        elif not r_equal(lv, rv):
            t = atom.field(key) or atom.element() if key else atom.element()
            r_cmp(lv, rv, t, (*path, pe), c)


def r_overlay(obj: Any, zero: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for k, z in zero.items():
        v = out.get(k, MISSING)
        if v is MISSING:
            out[k] = z
        elif z and isinstance(v, dict):
            out[k] = r_overlay(v, z)
    return out


def r_without_managed(obj: Obj) -> Obj:
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def r_decode(entries: Any) -> Managed:
    out: Managed = {}
    if entries is None:
        return out
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("entry")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise ValueError("operation")
        av = e.get("apiVersion") or ""
        if not isinstance(av, str) or not av or (e.get("fieldsType") or "") != "FieldsV1":
            raise ValueError("apiVersion or fieldsType")
        fields = FieldSet.from_json(e.get("fieldsV1") or {})
        key = Manager(str(e.get("manager") or ""), op, av if op == "Update" else "", "")
        key = key._replace(subresource=e.get("subresource") or "")
        out[key] = Owned(fields, av, op == "Apply", mf_entries._rfc3339(e.get("time")))
    return out


def r_encode(managed: Managed) -> list[Obj] | None:
    rows = []
    for key, owned in managed.items():
        e: Obj = {}
        if key.manager:
            e["manager"] = key.manager
        e["operation"] = "Apply" if owned.applied else "Update"
        e["apiVersion"] = owned.api_version
        if owned.time:
            e["time"] = owned.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = r_to_json(owned.fields)
        if key.subresource:
            e["subresource"] = key.subresource
        rows.append(e)
    if not rows:
        return None
    order = ("operation", "time", "manager", "apiVersion", "subresource")
    rows.sort(key=lambda e: [mf.seconds(e.get(f)) if f == "time" else e.get(f, "") for f in order])
    return rows


def r_cap(managed: Managed) -> None:
    updaters = [m for m, o in managed.items() if not o.applied]
    if len(updaters) <= apply.MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda m: (mf.seconds(managed[m].time), m.ident()))
    first: dict[str, Manager] = {}
    length = len(updaters)
    for m in updaters:
        if length <= apply.MAX_UPDATE_MANAGERS:
            break
        owned = managed[m]
        bucket = Manager("ancient-changes", "Update", owned.api_version)
        if owned.api_version not in first:
            first[owned.api_version] = m
            continue
        if bucket not in managed:
            managed[bucket] = managed.pop(first[owned.api_version])
        fields = r_union(owned.fields, managed[bucket].fields)
        managed[bucket] = Owned(fields, owned.api_version, False, owned.time)
        del managed[m]
        length -= 1


def r_record(fm: apply.FieldManager, old: Obj, new: Obj, managed: Managed, key: Manager) -> None:
    view_old = r_overlay(r_without_managed(old), fm.zero)
    view_new = r_overlay(r_without_managed(new), fm.zero)
    added, modified, removed = r_compare(view_old, view_new, fm.atom)
    reset = fm._reset_for(key.subresource)
    added, modified, removed = (r_minus(s, reset, True) for s in (added, modified, removed))
    changed = r_union(modified, added)
    conflicts = {}
    for m, owned in managed.items():
        if m != apply._CURRENT:
            c = r_intersection(owned.fields, changed)
            if not c.empty():
                conflicts[m] = c
    for m, owned in list(managed.items()):
        if m == apply._CURRENT:
            continue
        rest = r_minus(owned.fields, conflicts[m]) if m in conflicts else owned.fields
        rest = r_minus(rest, removed)
        if rest.empty():
            del managed[m]
        elif rest is not owned.fields:
            managed[m] = Owned(rest, owned.api_version, owned.applied, owned.time)
    own = r_minus(r_minus(changed, removed), apply.STRIP)
    if not own.empty():
        prev = managed.get(key)
        fields = r_union(own, prev.fields) if prev is not None else own
        managed[key] = Owned(fields, fm.api_version, False, T2)
    r_cap(managed)


def r_decode_or_empty(entries: Any) -> Managed:
    try:
        return r_decode(entries)
    except ValueError:
        return {}


def r_update(fm: apply.FieldManager, live: Obj | None, new: Obj, manager: str, sub: str) -> None:
    """FieldManager.update as it was (time: always T2)."""
    meta = new.setdefault("metadata", {})
    live_mf = ((live or {}).get("metadata") or {}).get("managedFields")
    asked = meta.get("managedFields", MISSING)
    if (
        live is not None
        and (sub or asked is MISSING or asked == live_mf)
        and r_without_managed(live) == r_without_managed(new)
    ):
        keep(meta, live_mf)
        return
    managed = r_decode_or_empty(None if sub or asked is MISSING else asked)
    if not managed and (sub or not mf.is_reset(asked)):
        managed = r_decode_or_empty(live_mf)
    if not managed and live is not None:
        meta.pop("managedFields", None)
        return
    key = Manager(manager or "unknown", "Update", fm.api_version, sub)
    empty = {"apiVersion": fm.api_version, "kind": fm.kind}
    try:
        r_record(fm, live if live is not None else empty, new, managed, key)
    except mf.SchemaMismatch:
        keep(meta, live_mf)
        return
    entries = r_encode(managed)
    if entries is None:
        meta.pop("managedFields", None)
    else:
        meta["managedFields"] = entries


class RConflicts(Exception):
    def __init__(self, conflicts: dict[Manager, FieldSet]) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def r_take(managed: Managed, cmp: Cmp, skip: Manager, force: bool) -> None:
    added, modified, removed = cmp
    changed = r_union(modified, added)
    conflicts = {}
    for m, owned in managed.items():
        if m != skip:
            c = r_intersection(owned.fields, changed)
            if not c.empty():
                conflicts[m] = c
    if conflicts and not force:
        raise RConflicts(conflicts)
    for m, owned in list(managed.items()):
        if m == skip:
            continue
        rest = r_minus(owned.fields, conflicts[m]) if m in conflicts else owned.fields
        rest = r_minus(rest, removed)
        if rest.empty():
            del managed[m]
        elif rest is not owned.fields:
            managed[m] = Owned(rest, owned.api_version, owned.applied, owned.time)


def r_changes(fm: apply.FieldManager, old: Obj, new: Obj, sub: str) -> Cmp:
    view_old = r_overlay(r_without_managed(old), fm.zero)
    view_new = r_overlay(r_without_managed(new), fm.zero)
    reset = fm._reset_for(sub)
    added, modified, removed = r_compare(view_old, view_new, fm.atom)
    return (
        r_minus(added, reset, True),
        r_minus(modified, reset, True),
        r_minus(removed, reset, True),
    )


def r_apply_inner(
    fm: apply.FieldManager, live: Obj, config: Obj, managed: Managed, key: Manager, force: bool
) -> tuple[Obj, Managed]:
    reset = fm._reset_for(key.subresource)
    if not managed:
        empty = {"apiVersion": fm.api_version, "kind": fm.kind}
        first = Manager("before-first-apply", "Update", fm.api_version, key.subresource)
        r_record(fm, empty, live, managed, first)
    base = r_without_managed(live)
    merged = apply_typed.merge(base, config, fm.atom)
    last = managed.get(key)
    applied = r_minus(mf.to_field_set(config, fm.atom), reset, True)
    managed[key] = Owned(applied, fm.api_version, True, T2)
    merged = apply_typed.prune(merged, managed, last, fm.atom)
    r_take(managed, r_changes(fm, base, merged, key.subresource), key, force)
    if key in managed:
        fields = r_minus(managed[key].fields, apply.STRIP)
        if fields.empty():
            del managed[key]
        else:
            managed[key] = Owned(fields, fm.api_version, True, T2)
    return merged, managed


def r_allowed_by_last_applied(fm: apply.FieldManager, live: Obj) -> FieldSet | None:
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(apply.LAST_APPLIED)
    if not raw:
        return None
    try:
        last = orjson.loads(raw)
        if not isinstance(last, dict) or last.get("apiVersion") != fm.api_version:
            return None
        fields = mf.to_field_set(last, fm.atom)
        added, modified, removed = r_compare(
            last, r_overlay(r_without_managed(live), fm.zero), fm.atom
        )
    except (ValueError, mf.SchemaMismatch):
        return None
    return r_minus(r_minus(r_minus(fields, modified), added), removed)


def r_apply(
    fm: apply.FieldManager, live: Obj | None, config: Obj, manager: str, force: bool, sub: str
) -> Obj:
    """FieldManager.apply as it was (time: always T2; errors as their Status only)."""
    config = copy.deepcopy(config)
    current = live if live is not None else {"apiVersion": fm.api_version, "kind": fm.kind}
    managed = r_decode((current.get("metadata") or {}).get("managedFields"))
    key = Manager(manager, "Apply", "", sub)
    try:
        try:
            out, result = r_apply_inner(fm, current, config, dict(managed), key, force)
        except RConflicts as c:
            allowed = r_allowed_by_last_applied(fm, current) if manager == "kubectl" else None
            if allowed is None:
                raise mf.conflict_error(c.conflicts) from None
            left = {m: r_minus(s, allowed) for m, s in c.conflicts.items()}
            left = {m: s for m, s in left.items() if not s.empty()}
            if left:
                raise mf.conflict_error(left) from None
            out, result = r_apply_inner(fm, current, config, dict(managed), key, True)
    except mf.SchemaMismatch as e:
        raise errors.StatusError(500, "", str(e)) from None
    out = r_without_managed(out)
    out["metadata"] = dict(out.get("metadata") or {})
    changed = out != r_without_managed(current)
    if not changed and result.keys() == managed.keys():
        if all(
            result[k].fields == managed[k].fields
            and result[k].api_version == managed[k].api_version
            for k in result
        ):
            result = managed
    if manager == "kubectl" and apply.LAST_APPLIED in (
        (out.get("metadata") or {}).get("annotations") or {}
    ):
        cfg = dict(config)
        cmeta = dict(cfg.get("metadata") or {})
        notes = {
            k: v for k, v in (cmeta.get("annotations") or {}).items() if k != apply.LAST_APPLIED
        }
        cmeta["annotations"] = notes
        if not notes:
            del cmeta["annotations"]
        cfg["metadata"] = cmeta
        out["metadata"]["annotations"] = {
            **out["metadata"]["annotations"],
            apply.LAST_APPLIED: mf.go_json(cfg) + "\n",
        }
    entries = r_encode(result)
    if entries is None:
        out["metadata"].pop("managedFields", None)
    else:
        out["metadata"]["managedFields"] = entries
    return out


def keep(meta: Obj, entries: Any) -> None:
    if entries is None:
        meta.pop("managedFields", None)
    else:
        meta["managedFields"] = entries


# ---- both paths on the same writes ----------------------------------------------------------


FMS: dict[str, apply.FieldManager] = {}


def fm_of(kind: str) -> apply.FieldManager:
    if kind == "Thing":  # no schema, no zero value, a status subresource
        return FMS.setdefault(kind, apply.FieldManager(mf.DEDUCED, "x.io/v1", kind, None, True))
    if kind not in FMS:
        group, version, status = {
            "Pod": ("", "v1", True),
            "Node": ("", "v1", True),
            "Event": ("", "v1", False),
            "ConfigMap": ("", "v1", False),
            "Lease": ("coordination.k8s.io", "v1", False),
            "Deployment": ("apps", "v1", True),
        }[kind]
        FMS[kind] = apply.FieldManager.for_kind(group, version, kind, status)
    return FMS[kind]


def both(live: Obj | None, new: Obj, manager: str, sub: str = "") -> Obj:
    """`new` after the fast path, checked byte for byte against the reference."""
    fm = fm_of(new.get("kind") or (live or {}).get("kind") or "")
    ref = copy.deepcopy(new)
    live_copy = copy.deepcopy(live)
    ref_error: Exception | None = None
    try:
        r_update(fm, live_copy, ref, manager, sub)
    except Exception as e:  # the same failure is expected of both
        ref_error = e
    if ref_error is not None:
        with pytest.raises(type(ref_error)):
            fm.update(live, new, manager, sub, when=T2)
        return new
    fm.update(live, new, manager, sub, when=T2)
    got, want = (o.get("metadata", {}).get("managedFields") for o in (new, ref))
    assert orjson.dumps(got) == orjson.dumps(want)  # byte for byte: order included
    assert new == ref
    if got is not None and got is not (live or {}).get("metadata", {}).get("managedFields"):
        shared = {id(d) for d in _containers((live or {}).get("metadata", {}))}
        assert not any(id(d) in shared for d in _containers(got))  # nothing of the live one
    assert live == live_copy  # the live object is never changed
    return new


def pod(name: str = "web-0") -> Obj:
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "d",
            "labels": {"app": "bench"},
            "finalizers": ["example.com/a", "example.com/b"],  # a set
        },
        "spec": {
            "nodeSelector": {"disk": "ssd", "zone": "a"},  # an atomic map
            "containers": [
                {
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "ports": [{"containerPort": 80}],
                }
            ],
        },
    }
    defaults.apply_defaults("Pod", obj)
    obj["metadata"].update(uid="u-" + name, creationTimestamp=T0, resourceVersion="5")
    return obj


def cond(typ: str, when: str = T1) -> Obj:
    return {"type": typ, "status": "True", "lastProbeTime": None, "lastTransitionTime": when}


def bound(p: Obj, node: str = "n1") -> Obj:
    out = copy.deepcopy(p)
    out["spec"]["nodeName"] = node
    out["status"]["conditions"] = [cond("PodScheduled")]
    return out


def running(p: Obj, ip: str = "10.0.0.2") -> Obj:
    out = copy.deepcopy(p)
    out["status"] = {
        **out["status"],
        "phase": "Running",
        "conditions": [
            cond(t)
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
        ]
        + out["status"]["conditions"],
        "hostIP": "172.16.0.3",
        "hostIPs": [{"ip": "172.16.0.3"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": T1,
        "containerStatuses": [
            {
                "name": "c",
                "image": "registry.k8s.io/pause:3.10",
                "imageID": "sha256:1",
                "containerID": "sim://1",
                "restartCount": 0,
                "ready": True,
                "started": True,
                "lastState": {},
                "state": {"running": {"startedAt": T1}},
            }
        ],
    }
    return out


def test_pod_lifecycle_as_the_scheduler_benchmark_writes_it() -> None:
    for i in range(3):
        created = both(None, pod(f"p{i}"), "bench")
        b = both(created, bound(created), "kube-scheduler")
        r = both(b, running(b, f"10.0.0.{i}"), "sim-nodes", "status")
        done = copy.deepcopy(r)
        done["status"]["phase"] = "Succeeded"
        done["status"]["conditions"] = done["status"]["conditions"][1:]
        del done["status"]["podIPs"]
        both(r, done, "sim-nodes", "status")
        again = both(r, copy.deepcopy(r), "sim-nodes", "status")  # no change at all
        assert again["metadata"]["managedFields"] == r["metadata"]["managedFields"]


def lease(renew: str, holder: str = "n1") -> Obj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "n1",
            "namespace": "kube-node-lease",
            "uid": "lu",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "nu"}],
        },
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 40, "renewTime": renew},
    }


def test_lease_renewals_events_and_config_maps() -> None:
    live = both(None, lease("2024-01-01T00:00:00.000001Z"), "sim-nodes")
    for i in range(3):
        new = lease(f"2024-01-01T00:00:1{i}.000001Z")
        new["metadata"]["managedFields"] = copy.deepcopy(live["metadata"]["managedFields"])
        live = both(live, new, "sim-nodes")
    taken = lease("2024-01-01T00:01:00.000001Z", holder="n2")
    both(live, taken, "other")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "d"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u"},
        "reason": "Scheduled",
        "message": "Successfully assigned d/p to n1",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "count": 1,
    }
    both(None, event, "kube-scheduler")
    cm = both(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "a")
    cm2 = copy.deepcopy(cm)
    cm2["data"] = {"x": "1", "y": "2"}
    cm3 = both(cm, cm2, "b")
    cm4 = copy.deepcopy(cm3)
    cm4["data"] = {"x": "1"}
    cm4["binaryData"] = {"z": "AA=="}
    cm5 = both(cm3, cm4, "c")
    cm6 = copy.deepcopy(cm5)
    cm6["metadata"]["managedFields"] = []  # a reset
    cm6["data"]["w"] = "3"
    both(cm5, cm6, "d")


def deployment() -> Obj:
    obj: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "d", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
    defaults.apply_defaults("Deployment", obj)
    return obj


def test_many_managers_reach_the_cap_and_lose_fields() -> None:
    live = both(None, deployment(), "create")
    for i in range(14):
        new = copy.deepcopy(live)
        new["metadata"].setdefault("annotations", {})[f"a{i}"] = str(i)
        if i % 3 == 0:
            new["spec"]["replicas"] = i
        if i % 4 == 1:
            c = new["spec"]["template"]["spec"]["containers"]
            c.append({**c[0], "name": f"side{i}"})
        if i % 5 == 2:
            new["status"] = {"replicas": i, "conditions": [{"type": "Available"}]}
        if i % 6 == 3:
            new["metadata"].pop("labels", None)
        live = both(live, new, f"m{i}", "status" if i % 7 == 6 else "")
    assert len(live["metadata"]["managedFields"]) <= 11
    both(live, {**copy.deepcopy(live), "spec": {**live["spec"], "replicas": 7}}, "hpa", "scale")
    fresh = both(None, deployment(), "create")
    scaled = copy.deepcopy(fresh)
    scaled["spec"]["replicas"] = 7
    scaled = both(fresh, scaled, "hpa", "scale")
    assert scaled["metadata"]["managedFields"][1]["subresource"] == "scale"


# ---- random objects and changes ---------------------------------------------------------------


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5]),
    st.sampled_from(["", "a", "b", "TCP"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["name", "ip", "x", "y", "type", ""]), inner, max_size=3),
    ),
    max_leaves=6,
)


def _containers(obj: Any) -> list[Any]:
    """Every dict and list inside `obj` (itself included)."""
    out = []
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, (dict, list)):
            out.append(v)
            stack.extend(v.values() if isinstance(v, dict) else v)
    return out


def mutate(obj: Obj, rnd: random.Random, value: Any, steps: int) -> Obj:
    out = copy.deepcopy(obj)
    for _ in range(steps):
        target = rnd.choice(_containers(out))
        op = rnd.randrange(6)
        if isinstance(target, dict):
            keys = list(target)
            if op == 0 or not keys:
                name = rnd.choice(["x", "name", "ip", "type", "phase", "podIP"])
                target[name] = copy.deepcopy(value)
            elif op == 1 and target is not out:
                del target[rnd.choice(keys)]
            elif op == 2:
                target[rnd.choice(keys)] = copy.deepcopy(value)
            elif op == 3:
                k = rnd.choice(keys)
                v = target[k]
                target[k] = not v if isinstance(v, bool) else (1 if v is True else v)
            elif op == 4:
                k = rnd.choice(keys)
                target[k] = {} if isinstance(target[k], dict) else None
        elif isinstance(target, list):
            if op in (0, 1) and target:
                item = copy.deepcopy(rnd.choice(target))
                if isinstance(item, dict):
                    for k in ("name", "type", "ip", "containerPort"):
                        if k in item:
                            item[k] = f"{item[k]}-{rnd.randrange(3)}"
                target.append(item)
            elif op == 2 and target:
                target.pop(rnd.randrange(len(target)))
            elif op == 3:
                rnd.shuffle(target)
            elif op == 4:
                target.append(copy.deepcopy(value))
    return out


def _seeds() -> list[Obj]:
    p = pod()
    r = running(bound(p))
    return [p, r, deployment(), lease(T1)]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 3),
    st.integers(0, 2**32 - 1),
    st.lists(
        st.tuples(
            _values,
            st.integers(1, 4),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["", "", "status"]),
            st.sampled_from(["keep", "keep", "drop", "reset"]),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_random_changes_give_the_same_managed_fields(
    seed_index: int, seed: int, writes: list[tuple[Any, int, str, str, str]]
) -> None:
    rnd = random.Random(seed)
    first = copy.deepcopy(_seeds()[seed_index])
    live: Obj | None = None
    for value, steps, manager, sub, asked in writes:
        if live is None:  # the seed (created before: remembered), or a changed one
            new = first if steps % 2 else mutate(first, rnd, value, steps)
            new["apiVersion"], new["kind"] = first["apiVersion"], first["kind"]
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = copy.deepcopy(first["metadata"])
            if asked == "drop":  # created anew: a new name and uid nobody owns
                new["metadata"] = {**new["metadata"], "name": f"n{seed}", "uid": str(seed)}
        else:
            new = mutate(live, rnd, value, steps)
            new["apiVersion"], new["kind"] = live["apiVersion"], live["kind"]
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = copy.deepcopy(live["metadata"])
            if asked == "drop":
                new["metadata"].pop("managedFields", None)
            elif asked == "reset":
                new["metadata"]["managedFields"] = []
        out = both(live, new, manager, sub if live is not None else "")
        live = out


RESETS = [
    FieldSet(),
    FieldSet.of(("f:status",)),
    FieldSet.of(("f:spec",)),
    FieldSet.of(("f:spec", "f:containers"), ("f:status", "f:conditions")),  # nested too
    FieldSet.of(("f:metadata", "f:labels"), ("f:spec", "f:containers", mf.key_pe({"name": "c"}))),
]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.integers(0, 2**32 - 1), _values, st.integers(1, 5))
def test_pruned_compare_is_compare_then_exclude(
    seed_index: int, seed: int, value: Any, steps: int
) -> None:
    rnd = random.Random(seed)
    a = _seeds()[seed_index]
    b = mutate(a, rnd, value, steps)
    fm = fm_of(a["kind"])
    for reset in RESETS:
        for lhs, rhs in ((a, b), (b, a)):
            try:
                added, modified, removed = r_compare(lhs, rhs, fm.atom)
            except mf.SchemaMismatch as e:  # the same message: the walk goes in the same order
                with pytest.raises(mf.SchemaMismatch, match=f"^{re.escape(str(e))}$"):
                    apply_typed.compare(lhs, rhs, fm.atom, reset)
                continue
            got = apply_typed.compare(lhs, rhs, fm.atom, reset)
            assert got.changed == r_minus(r_union(modified, added), reset, True)
            assert got.removed == r_minus(removed, reset, True)


# ---- sets ----------------------------------------------------------------------------------


_pe = st.one_of(
    st.sampled_from(["a", "b", "c", "spec"]).map(lambda n: "f:" + n),
    st.sampled_from(["n1", "n2", 'q"']).map(lambda n: mf.key_pe({"name": n})),
    st.sampled_from([1, 10, 2]).map(lambda n: mf.key_pe({"port": n})),
    st.one_of(st.integers(-3, 3), st.sampled_from(["u", "v"]), st.booleans()).map(mf.value_pe),
    st.integers(0, 11).map(mf.index_pe),
)
_sets = st.lists(st.lists(_pe, min_size=1, max_size=4).map(tuple), max_size=12).map(
    lambda ps: FieldSet.of(*ps)
)


@settings(max_examples=300, deadline=None)
@given(_sets, _sets)
def test_set_operations_agree_with_the_plain_ones(a: FieldSet, b: FieldSet) -> None:
    assert a.union(b) == r_union(a, b)
    assert a.intersection(b) == r_intersection(a, b)
    assert a.difference(b) == r_minus(a, b)
    assert a.recursive_difference(b) == r_minus(a, b, True)
    for got in (a.union(b), a.difference(b), a.recursive_difference(b)):
        assert orjson.dumps(got.to_json()) == orjson.dumps(r_to_json(got))
    assert a.union(a.intersection(b)) is a  # nothing new: the same set
    assert a.difference(FieldSet.of(("f:zzz",))) is a  # nothing gone: the same set


# ---- creates remembered by content ------------------------------------------------------------


def test_creates_from_one_template_reuse_one_set() -> None:
    fm = fm_of("Pod")
    fm._created_skip = 0
    first = both(None, pod("a"), "bench")
    for name in ("b", "c", "d"):
        p = pod(name)
        p["metadata"]["creationTimestamp"] = T1
        fm._created_skip = 0  # look it up
        out = both(None, p, "bench")
        assert fm._created_misses == 0  # found
        assert (
            out["metadata"]["managedFields"][0]["fieldsV1"]
            == (first["metadata"]["managedFields"][0]["fieldsV1"])
        )
    other = pod("x")
    other["metadata"]["labels"] = {"app": "other", "tier": "web"}
    fm._created_skip = 0
    both(None, other, "bench")  # not the same content: computed
    assert fm._created_misses == 1 and fm._created_skip == 1


@pytest.mark.parametrize(
    "odd",
    [
        lambda p: p["spec"]["containers"][0].__setitem__("ports", ({"containerPort": 80},)),
        lambda p: p["spec"].__setitem__("priority", float("nan")),
        lambda p: p["metadata"].__setitem__("name", {"not": "a scalar"}),
        lambda p: p["metadata"].__setitem__("uid", None),
        lambda p: p["spec"].__setitem__("enableServiceLinks", 1),
        lambda p: p["spec"].__setitem__("terminationGracePeriodSeconds", 30.0),
    ],
)
def test_values_that_print_like_json_do_not_hit_the_memory(odd: Any) -> None:
    """A tuple prints as a list, NaN as null, 1 == True, 30.0 == 30: the remembered set of the
    plain object must not be taken for them."""
    fm = fm_of("Pod")
    for _ in range(3):  # remembered for sure (skips are spent)
        fm._created_skip = 0
        both(None, pod("plain"), "bench")
    p = pod("odd")
    odd(p)
    fm._created_skip = 0
    ref = copy.deepcopy(p)
    r_update(fm, None, ref, "bench", "")
    fm.update(None, p, "bench", when=T2)
    assert p["metadata"]["managedFields"] == ref["metadata"]["managedFields"]


def test_leaf_maps_are_shared_and_never_changed() -> None:
    fm = fm_of("Pod")
    b1 = bound(both(None, pod("l1"), "bench"))
    b2 = bound(both(None, pod("l2"), "bench"))
    r1 = both(b1, running(b1, "10.0.0.1"), "sim", "status")
    r2 = both(b2, running(b2, "10.0.0.2"), "sim", "status")
    conds = [
        r["metadata"]["managedFields"][1]["fieldsV1"]["f:status"]["f:conditions"] for r in (r1, r2)
    ]
    assert conds[0] == conds[1] and conds[0] is not conds[1]
    leaf = apply_typed._subtree(
        cond("Ready"), fm.atom.field("status").field("conditions").element()
    )
    again = apply_typed._subtree(
        cond("Initialized", T2), fm.atom.field("status").field("conditions").element()
    )
    assert leaf is again and leaf is not None
    assert leaf.to_json() == r_to_json(leaf) and leaf.to_json() is not leaf.to_json()


def test_reset_fields_raise_what_the_full_walk_raised_first() -> None:
    """A status update whose spec (reset) changed into something the schema refuses: the
    same SchemaMismatch as walking everything, in the same order."""
    fm = fm_of("Pod")
    a = running(bound(pod()))
    b = copy.deepcopy(a)
    b["spec"]["containers"].append({"image": "x", "ports": [{"protocol": "TCP"}]})
    b["spec"]["containers"][0]["ports"].append({"name": "p"})
    b["status"]["conditions"].append({"status": "True"})
    for reset in (FieldSet.of(("f:spec",)), FieldSet.of(("f:status",)), FieldSet()):
        with pytest.raises(mf.SchemaMismatch) as want:
            r_compare(a, b, fm.atom)
        with pytest.raises(mf.SchemaMismatch) as got:
            apply_typed.compare(a, b, fm.atom, reset)
        assert str(got.value) == str(want.value)
    both(a, b, "sim", "status")
    both(a, b, "sim")


def test_missing_zero_fields_untyped_kinds_and_odd_values() -> None:
    bare_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    created = both(None, copy.deepcopy(bare_pod), "a")  # no containers: the zero value's
    both(created, {**copy.deepcopy(created), "spec": {"containers": []}}, "b")
    both(created, {k: v for k, v in created.items() if k != "spec"}, "b")
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "reason": "R"}
    e = both(None, event, "a")
    both(e, {**copy.deepcopy(e), "involvedObject": {"kind": "Pod", "name": "p"}}, "b")
    both(e, {**copy.deepcopy(e), "involvedObject": {}}, "b")
    thing = {"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"a": 1}}
    t = both(None, thing, "a")
    t2 = both(t, {**copy.deepcopy(t), "status": {"s": [1, 2], "m": {"x": True}}}, "b")
    t3 = both(t2, {**copy.deepcopy(t2), "spec": {"a": 2, "b": {"c": [{"d": 1}]}}}, "c", "status")
    t4 = both(t3, {k: v for k, v in copy.deepcopy(t3).items() if k != "status"}, "d")
    both(t4, {**copy.deepcopy(t4), "status": {"s": []}}, "e", "status")
    for odd in (datetime.datetime(2024, 1, 1), b"bytes", 2**70):
        fm_of("Thing")._created_skip = 0
        both(None, {**copy.deepcopy(thing), "spec": {"a": odd}}, "a")


def test_a_manager_losing_everything_and_its_own_set_again() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "immutable": False}
    a = both(None, cm, "a")
    b = both(a, {**copy.deepcopy(a), "immutable": True}, "b")  # "a" loses its only field
    assert [e["manager"] for e in b["metadata"]["managedFields"]] == ["b"]
    c = copy.deepcopy(b)
    c["immutable"] = False
    c["metadata"]["name"] = "renamed"  # nobody's: "b" keeps exactly what it had
    c = both(b, c, "b")
    assert c["metadata"]["managedFields"][0]["fieldsV1"] == {"f:immutable": {}}


def test_bounded_memories_start_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply_typed, "_LEAVES_MAX", 2)
    monkeypatch.setattr(apply, "_CREATED_BYTES", 64 * 1500)
    fm = apply.FieldManager.for_kind("", "v1", "Pod", True)
    monkeypatch.setitem(FMS, "Pod", fm)
    sizes = []
    for i in range(80):
        fm._created_skip = 0
        p = pod(f"b{i}")
        p["metadata"]["labels"] = {f"l{i}": "x" * (i % 3) * 700}  # some too big to remember
        p["apiVersion"] = "v1" if i % 2 else "v2"  # not the version managed: nobody's
        b = bound(both(None, p, "bench"))
        sizes.append(sum(len(k) for k in fm._created_sets))
        if i < 6:
            b["status"]["conditions"].append({"type": f"T{i}", f"k{i}": "v"})
            both(b, running(b, f"10.1.0.{i}"), "sim", "status")
    assert max(sizes) <= 64 * 1500 and min(sizes[40:]) < max(sizes)  # started over
    assert all(len(k) <= 1500 for k in fm._created_sets)
    assert len(apply_typed._LEAVES) <= 2
    many = {f"k{i}": "v" for i in range(apply_typed._LEAF_KEYS + 1)}  # not remembered
    leaf = apply_typed._subtree(many, mf.DEDUCED)
    assert leaf is not None and leaf._json is None and leaf == r_subtree(many, mf.DEDUCED)


def test_written_entries_are_kept_only_when_exactly_what_would_be_written() -> None:
    b = bound(both(None, pod("k"), "bench"))
    r = running(b)
    reordered = copy.deepcopy(r)
    for e in reordered["metadata"]["managedFields"]:  # equal, but not in kube's order
        e["fieldsV1"] = dict(reversed(list(e["fieldsV1"].items())))
        e["fieldsV1"]["f:spec"] = dict(reversed(list(e["fieldsV1"]["f:spec"].items())))
    out = both(b, reordered, "sim", "status")
    assert list(out["metadata"]["managedFields"][0]["fieldsV1"]) == ["f:metadata", "f:spec"]
    same = both(b, copy.deepcopy(r), "sim", "status")
    kept = same["metadata"]["managedFields"][0]["fieldsV1"]
    assert kept == b["metadata"]["managedFields"][0]["fieldsV1"]
    twins = copy.deepcopy(same)  # two managers owning the same: one document each
    twins["metadata"]["managedFields"].append({**twins["metadata"]["managedFields"][0]})
    twins["metadata"]["managedFields"][-1]["manager"] = "twin"
    twins["metadata"]["managedFields"][-1]["fieldsV1"] = copy.deepcopy(kept)
    twins["metadata"]["labels"]["new"] = "x"
    out = both(same, twins, "other")
    docs = [e["fieldsV1"] for e in out["metadata"]["managedFields"]]
    assert len({id(d) for d in docs}) == len(docs)


# ---- server-side apply ---------------------------------------------------------------------


def both_apply(live: Obj | None, config: Obj, manager: str, force: bool, sub: str) -> Obj | None:
    """`live` after `manager` applies `config`, checked byte for byte against the reference
    (None when both refuse it, with the same status)."""
    fm = fm_of(config["kind"])
    live_copy = copy.deepcopy(live)
    try:
        want = r_apply(fm, copy.deepcopy(live), config, manager, force, sub)
    except AttributeError as e:  # (merging a null into a map: a failure of both)
        with pytest.raises(type(e)):
            fm.apply(live, config, manager, force, sub, when=T2)
        return None
    except errors.StatusError as e:
        with pytest.raises(errors.StatusError) as got:
            fm.apply(live, config, manager, force, sub, when=T2)
        assert got.value.code == e.code
        if e.code == 409:  # the same conflicts, worded the same
            assert got.value.status() == e.status()
        else:
            assert str(e) in str(got.value)
        return None
    out = fm.apply(live, config, manager, force, sub, when=T2)
    assert orjson.dumps(out) == orjson.dumps(want)
    assert live == live_copy  # the live object is never changed
    return out


def _config_of(obj: Obj, rnd: random.Random, value: Any, steps: int) -> Obj:
    """An applied configuration: the object changed, some of its fields left out."""
    cfg = mutate(obj, rnd, value, steps)
    cfg["apiVersion"], cfg["kind"] = obj["apiVersion"], obj["kind"]
    meta = cfg.get("metadata")
    cfg["metadata"] = (
        {k: v for k, v in meta.items() if k != "managedFields"}
        if isinstance(meta, dict)
        else {"name": "x"}
    )
    for k in [k for k in cfg if k not in ("apiVersion", "kind", "metadata")]:
        if rnd.random() < 0.3:
            del cfg[k]
    return cfg


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3),
    st.integers(0, 2**32 - 1),
    st.lists(
        st.tuples(
            _values,
            st.integers(0, 4),
            st.sampled_from(["apply-a", "apply-b", "kubectl", "update-c", "update-d"]),
            st.booleans(),
            st.sampled_from(["", "", "status"]),
        ),
        min_size=1,
        max_size=5,
    ),
)
@example(  # an update that sets a managedFields entry's apiVersion to true: both refuse it
    2,
    268435457,
    [
        (None, 0, "apply-a", False, ""),
        (None, 0, "apply-a", False, ""),
        (True, 1, "update-c", False, ""),
        (None, 0, "apply-a", False, "status"),
    ],
)
def test_server_side_apply_gives_the_same_objects(
    seed_index: int, seed: int, writes: list[tuple[Any, int, str, bool, str]]
) -> None:
    rnd = random.Random(seed)
    first = copy.deepcopy(_seeds()[seed_index])
    live: Obj | None = None
    for value, steps, manager, force, sub in writes:
        if manager.startswith("update"):
            base = first if live is None else live
            new = mutate(base, rnd, value, steps)
            new["apiVersion"], new["kind"] = base["apiVersion"], base["kind"]
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = copy.deepcopy(base["metadata"])
            live = both(live, new, manager, sub if live is not None else "")
            continue
        cfg = _config_of(first if live is None else live, rnd, value, steps)
        if manager == "kubectl" and rnd.random() < 0.5:  # client-side apply's record
            notes = cfg["metadata"].setdefault("annotations", {})
            if isinstance(notes, dict):
                notes[apply.LAST_APPLIED] = orjson.dumps(_config_of(cfg, rnd, value, 1)).decode()
        out = both_apply(live, cfg, manager, force, sub if live is not None else "")
        live = out if out is not None else live
