"""The typed views of objects that server-side apply works on, as structured-merge-diff
(typed/compare.go, merge.go, remove.go) defines them under a schema (`managedfields.Atom`): the
comparison of two objects (the fields added or modified, the fields removed), the merge of an
applied configuration into the live object (maps by field, associative lists by key or value,
atomic values whole, list order as structured-merge-diff orders it), the removal of items and
the pruning of what an applier stopped specifying. `apply` builds kube's field manager on top.
Pure functions of dicts; no I/O."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final

import orjson

from kybern.api.managedfields import (
    LEAF,
    LIST,
    MAP,
    MISSING,
    Atom,
    FieldSet,
    Managed,
    Owned,
    ensure_named_fields,
    index_items,
    kind_of,
    leafish,
    list_item_pe,
    to_field_set,
)

Obj = dict[str, Any]
_SCALARS: Final = frozenset((str, int, float, bool, type(None)))
# the sets of small leaf maps (no map or list inside: labels, requests, list items) by their
# field names: shared, encoded once
_LEAVES: dict[tuple[str, ...], FieldSet] = {}
_LEAVES_MAX: Final = 4096
_LEAF_KEYS: Final = 32


# ---- comparison ------------------------------------------------------------------------------


@dataclass(slots=True)
class Comparison:
    """What changed from one object to another (typed.Comparison), its added and modified
    fields as one set (`changed`: nobody needs them apart)."""

    changed: FieldSet
    removed: FieldSet


def compare(lhs: Any, rhs: Any, atom: Atom, reset: FieldSet | None = None) -> Comparison:
    """Fields added or modified, and fields removed, going from `lhs` to `rhs`
    (TypedValue.Compare): leaves by value, and a granular map or list itself when it appears
    or disappears. With `reset`, the comparison without what is at or below its members
    (Comparison.ExcludeFields), what they hold walked only where it differs (for the same
    SchemaMismatch, in the same order)."""
    c = Comparison(FieldSet(), FieldSet())
    if reset is not None and not reset.empty():
        _cmp(lhs, rhs, atom, c.changed, c.removed, reset)
    elif not _equal(lhs, rhs):
        _cmp(lhs, rhs, atom, c.changed, c.removed, None)
    return c


def _equal(a: Any, b: Any) -> bool:
    return a == b and (a.__class__ is bool) == (b.__class__ is bool)


def _cmp(
    lhs: Any, rhs: Any, atom: Atom, changed: FieldSet, removed: FieldSet, reset: FieldSet | None
) -> bool:
    """Compare two values present (different ones, unless `reset` is given): True when they
    are a leaf that changed, else what differs below them recorded in `changed` and
    `removed`, the sets at their level."""
    kl, kr = kind_of(atom, lhs), kind_of(atom, rhs)
    if kl != kr or leafish(atom, kr, lhs, rhs):
        return True
    if kr == MAP:
        lm = lhs if lhs.__class__ is dict else {}
        rm = rhs if rhs.__class__ is dict else {}
        for k, lv in lm.items():
            rv = rm.get(k, MISSING)  # (equality inline: most of an update is the same)
            if rv is MISSING or lv != rv or (lv.__class__ is bool) != (rv.__class__ is bool):
                _diff("f:" + k, lv, rv, atom, k, changed, removed, reset)
        for k, rv in rm.items():
            if k not in lm:
                _diff("f:" + k, MISSING, rv, atom, k, changed, removed, reset)
        return False
    litems = index_items(atom, lhs, dups_ok=True)
    ritems = index_items(atom, rhs, dups_ok=True)
    for pe, lv in litems.items():
        rv = ritems.get(pe, MISSING)
        if rv is MISSING or lv != rv or (lv.__class__ is bool) != (rv.__class__ is bool):
            _diff(pe, lv, rv, atom, None, changed, removed, reset)
    for pe, rv in ritems.items():
        if pe not in litems:
            _diff(pe, MISSING, rv, atom, None, changed, removed, reset)
    return False


def _diff(
    pe: str,
    lv: Any,
    rv: Any,
    atom: Atom,
    key: str | None,
    changed: FieldSet,
    removed: FieldSet,
    reset: FieldSet | None,
) -> None:
    """Record one element `pe` (the field `key` of a map of type `atom`, or an item of a list,
    `key` None) that differs, in `changed` or `removed`, the sets of its level: added or
    removed whole, a leaf modified, or compared below. An element `reset` has is walked the
    same way into sets thrown away."""
    below = None
    if reset is not None:
        if pe in reset.members:
            _diff(pe, lv, rv, atom, key, FieldSet(), FieldSet(), None)
            return
        below = reset.children.get(pe)
    if lv is MISSING or rv is MISSING:  # a whole subtree added or removed
        node = changed if lv is MISSING else removed
        node.members.add(pe)
        v = rv if lv is MISSING else lv
        if v.__class__ is dict or v.__class__ is list:
            sub = _subtree(v, (atom.field(key) or atom.element()) if key else atom.element())
            if sub is not None and below is not None:
                sub = sub.recursive_difference(below)
                if sub.empty():
                    return
            if sub is not None:
                node.children[pe] = sub
    elif _scalar_change(lv, rv):
        changed.members.add(pe)
    else:
        t = (atom.field(key) or atom.element()) if key else atom.element()
        changed_below, removed_below = FieldSet(), FieldSet()
        if _cmp(lv, rv, t, changed_below, removed_below, below):
            changed.members.add(pe)
            return
        if changed_below.members or changed_below.children:
            changed.children[pe] = changed_below
        if removed_below.members or removed_below.children:
            removed.children[pe] = removed_below


def _scalar_change(lv: Any, rv: Any) -> bool:
    """Whether two different values are a leaf modification whatever their type (`_cmp`
    would only record it): one of them is a scalar other than null."""
    return (lv is not None and not isinstance(lv, (dict, list))) or (
        rv is not None and not isinstance(rv, (dict, list))
    )


def _subtree(v: Any, atom: Atom) -> FieldSet | None:
    """The paths below a value that is new (or gone) as a whole: every field and item, and
    each granular container itself; None for a leaf. The sets of leaf maps are shared (sets
    are values)."""
    if v.__class__ is dict:
        if not v or not atom.is_map or atom.atomic:
            return None
        if len(v) <= _LEAF_KEYS and _SCALARS.issuperset(map(type, v.values())):
            names = tuple(v)
            leaf = _LEAVES.get(names)
            if leaf is None:
                leaf = FieldSet({"f:" + k for k in names}, {})
                with contextlib.suppress(orjson.JSONEncodeError):  # (a lone surrogate)
                    leaf._json = orjson.dumps(leaf.to_json())
                if len(_LEAVES) >= _LEAVES_MAX:
                    _LEAVES.clear()
                _LEAVES[names] = leaf
            return leaf
        members = set()
        children = {}
        for k, val in v.items():
            pe = "f:" + k
            members.add(pe)
            if val.__class__ is dict or val.__class__ is list:
                sub = _subtree(val, atom.field(k) or atom.element())
                if sub is not None:
                    children[pe] = sub
        return FieldSet(members, children)
    if v.__class__ is list and v and atom.is_list and atom.list_type != "atomic":
        members = set()
        children = {}
        elem = atom.element()
        for i, item in enumerate(v):
            pe = list_item_pe(atom, i, item)
            members.add(pe)
            if item.__class__ is dict or item.__class__ is list:
                sub = _subtree(item, elem)
                if sub is not None:
                    children[pe] = sub
        return FieldSet(members, children)
    return None


# ---- merge, removal, pruning -----------------------------------------------------------------


def merge(lhs: Any, rhs: Any, atom: Atom) -> Any:
    """`rhs` (an applied configuration) merged into `lhs` (TypedValue.Merge): `rhs` wins on
    leaves, maps merge field by field, keyed lists and sets item by item; nothing is removed.
    A null is an empty granular map or list (it keeps what the other side holds), else a
    leaf."""
    if rhs is MISSING:
        return lhs
    if lhs is MISSING:
        return rhs
    kl, kr = kind_of(atom, lhs), kind_of(atom, rhs)
    if kl != kr or leafish(atom, kr, lhs, rhs):
        return rhs
    if kr == MAP:  # a null map or list is an empty one: it keeps what the other side has
        lm = lhs if isinstance(lhs, dict) else {}
        rm = rhs if isinstance(rhs, dict) else {}
        out = {}
        for k, lv in lm.items():
            out[k] = merge(lv, rm.get(k, MISSING), atom.field(k) or atom.element())
        for k, rv in rm.items():
            if k not in lm:
                out[k] = rv
        return out
    return _merge_list(lhs, rhs, atom)


def _merge_list(lhs: Any, rhs: Any, atom: Atom) -> list[Any]:
    """Items in the order structured-merge-diff gives them: the live order, except that items
    the configuration also lists come in the configuration's order, new ones where it puts
    them."""
    elem = atom.element()
    litems = index_items(atom, lhs, dups_ok=True)
    ritems = index_items(atom, rhs, dups_ok=False)
    lorder, rorder = list(litems), list(ritems)
    shared = [pe for pe in rorder if pe in litems]
    nxt = iter(shared)
    next_shared = next(nxt, None)
    out: list[Any] = []
    li = ri = 0
    while li < len(lorder) or ri < len(rorder):
        if li < len(lorder) and ri < len(rorder):
            pe = lorder[li]
            if pe == rorder[ri]:
                out.append(merge(litems[pe], ritems[pe], elem))
                li, ri = li + 1, ri + 1
                next_shared = next(nxt, None)
                continue
            if pe in ritems and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lorder) and lorder[li] not in ritems:
            out.append(litems[lorder[li]])
            li += 1
            continue
        if ri < len(rorder):
            pe = rorder[ri]
            out.append(merge(litems.get(pe, MISSING), ritems[pe], elem))
            ri += 1
            if next_shared == pe:
                next_shared = next(nxt, None)
            continue
        li += 1  # a shared live item already merged in the configuration's order
    return out


def remove_items(value: Any, items: FieldSet, atom: Atom) -> Any:
    """`value` without the fields and items of `items` (TypedValue.RemoveItems); MISSING when
    nothing is left of it."""
    kind = kind_of(atom, value)
    if kind == LEAF:
        return value
    if not value or (atom.atomic if kind == MAP else atom.list_type == "atomic"):
        return MISSING
    if kind == LIST:
        elem = atom.element()
        pairs = [(list_item_pe(atom, i, x), x, elem) for i, x in enumerate(value)]
    else:
        pairs = [("f:" + k, x, atom.field(k) or atom.element()) for k, x in value.items()]
    out = []
    for pe, v, t in pairs:
        if pe not in items.members:
            sub = items.children.get(pe)
            v = v if sub is None else remove_items(v, sub, t)
            if v is not MISSING:
                out.append((pe[2:], v))
    if not out:
        return MISSING
    return [v for _, v in out] if kind == LIST else dict(out)


def _remove(value: Obj, items: FieldSet, atom: Atom) -> Obj:
    if items.empty():
        return value
    out = remove_items(value, items, atom)
    return {} if out is MISSING else out


def prune(merged: Obj, managed: Managed, last: Owned | None, atom: Atom) -> Obj:
    """Remove what the applier applied last time and not this time, unless another manager
    (or this configuration) owns it (Updater.prune, addBackOwnedItems, addBackDanglingItems)."""
    if last is None or last.fields.empty():
        return merged
    named = ensure_named_fields
    pruned = _remove(merged, named(last.fields, atom), atom)
    owned = FieldSet()
    for o in managed.values():
        owned = owned.union(o.fields)
    merged_set = named(to_field_set(merged, atom), atom)
    keep = named(to_field_set(pruned, atom), atom).union(named(owned, atom))
    pruned = _remove(merged, merged_set.difference(keep), atom)
    pruned_set = named(to_field_set(pruned, atom), atom)
    return _remove(
        merged, merged_set.difference(pruned_set).intersection(named(last.fields, atom)), atom
    )
