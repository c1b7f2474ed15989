"""Server-side apply as structured-merge-diff (merge/update.go) and kube-apiserver's field
manager do it. The typed views of an object under its schema (`managedfields.Atom`): the field
set a value mentions, the comparison of two objects (added/modified/removed), the merge of an
applied configuration into the live object (maps by field, associative lists by key or value,
atomic values whole, list order as structured-merge-diff orders it) and the removal of items.
On top, `FieldManager` runs kube's manager chain for one kind: every write updates
`managedFields` (`update`: what the request changed goes to its manager, operation Update, other
managers lose what it changed or removed; at most 10 Update managers, the oldest merged into
`ancient-changes`); `apply` merges the configuration, prunes what the applier stopped
specifying unless someone else owns it, and raises the 409 conflicts unless forced, with the
client-side-apply migration of kubectl (`last-applied-configuration`) and the
`before-first-apply` manager. Fields reset by a subresource (status on the main resource, spec
on status) and server-set metadata are never owned. Pure functions of dicts; no I/O."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kybern.api import definitions, errors, objects
from kybern.api import managedfields as mf
from kybern.api.managedfields import (
    LEAF,
    LIST,
    MAP,
    MISSING,
    Atom,
    FieldSet,
    Managed,
    Manager,
    Owned,
    Path,
    SchemaMismatch,
    ensure_named_fields,
    index_items,
    kind_of,
    leafish,
    list_item_pe,
    to_field_set,
)

Obj = dict[str, Any]
MAX_UPDATE_MANAGERS: Final = 10
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# never part of anyone's set (stripMetaManager)
_STRIPPED: Final = "apiVersion kind metadata" + "".join(
    " metadata." + f
    for f in "name namespace creationTimestamp selfLink uid clusterName generation managedFields "
    "resourceVersion".split()
)
STRIP: Final = FieldSet.of(*(mf.parse_path(p) for p in _STRIPPED.split()))
_CURRENT: Final = Manager("current-operation", "Update")


# ---- typed views -------------------------------------------------------------------------------


@dataclass(slots=True)
class Comparison:
    """What changed from one object to another (typed.Comparison)."""

    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    def exclude(self, fields: FieldSet) -> Comparison:
        return Comparison(
            self.added.recursive_difference(fields),
            self.modified.recursive_difference(fields),
            self.removed.recursive_difference(fields),
        )


def _subtree(v: Any, atom: Atom) -> FieldSet | None:
    """The paths below a value that is new (or gone) as a whole: every field and item, and
    each granular container itself; None for a leaf."""
    if v.__class__ is dict:
        if not v or not atom.is_map or atom.atomic:
            return None
        s = FieldSet()
        for k, val in v.items():
            pe = "f:" + k
            s.members.add(pe)
            if val.__class__ is dict or val.__class__ is list:
                sub = _subtree(val, atom.field(k) or atom.element())
                if sub is not None:
                    s.children[pe] = sub
        return s
    if v.__class__ is list and v and atom.is_list and atom.list_type != "atomic":
        s = FieldSet()
        elem = atom.element()
        for i, item in enumerate(v):
            pe = list_item_pe(atom, i, item)
            s.members.add(pe)
            sub = _subtree(item, elem)
            if sub is not None:
                s.children[pe] = sub
        return s
    return None


def compare(lhs: Any, rhs: Any, atom: Atom) -> Comparison:
    """Fields added, modified and removed going from `lhs` to `rhs` (TypedValue.Compare):
    leaves by value, and a granular map or list itself when it appears or disappears."""
    c = Comparison(FieldSet(), FieldSet(), FieldSet())
    if not _equal(lhs, rhs):
        _cmp(lhs, rhs, atom, (), c)
    return c


def _equal(a: Any, b: Any) -> bool:
    return a == b and (a.__class__ is bool) == (b.__class__ is bool)


def _node(s: FieldSet, path: Path) -> FieldSet:
    for pe in path:
        child = s.children.get(pe)
        if child is None:
            child = s.children[pe] = FieldSet()
        s = child
    return s


def _cmp(lhs: Any, rhs: Any, atom: Atom, path: Path, c: Comparison) -> None:
    """Compare two different values, both present, at `path`."""
    kl, kr = kind_of(atom, lhs), kind_of(atom, rhs)
    if kl != kr or leafish(atom, kr, lhs, rhs):
        c.modified.insert(path)
        return
    if kr == MAP:
        lm = lhs if lhs.__class__ is dict else {}
        rm = rhs if rhs.__class__ is dict else {}
        pairs = [("f:" + k, lm.get(k, MISSING), rm.get(k, MISSING), k) for k in {**lm, **rm}]
    else:
        litems = index_items(atom, lhs, dups_ok=True)
        ritems = index_items(atom, rhs, dups_ok=True)
        pairs = [
            (pe, litems.get(pe, MISSING), ritems.get(pe, MISSING), "")
            for pe in {**litems, **ritems}
        ]
    added = removed = None
    for pe, lv, rv, key in pairs:
        if lv is MISSING or rv is MISSING:  # a whole subtree added or removed
            if lv is MISSING:
                node = added = added or _node(c.added, path)
            else:
                node = removed = removed or _node(c.removed, path)
            node.members.add(pe)
            v = rv if lv is MISSING else lv
            if v.__class__ is dict or v.__class__ is list:
                sub = _subtree(v, atom.field(key) or atom.element() if key else atom.element())
                if sub is not None:
                    mine = node.children.get(pe)
                    node.children[pe] = sub if mine is None else mine.union(sub)
        elif not _equal(lv, rv):
            t = atom.field(key) or atom.element() if key else atom.element()
            _cmp(lv, rv, t, (*path, pe), c)


# ---- merge and removal ---------------------------------------------------------------------


def merge(lhs: Any, rhs: Any, atom: Atom) -> Any:
    """`rhs` (an applied configuration) merged into `lhs` (TypedValue.Merge): `rhs` wins on
    leaves, maps merge field by field, keyed lists and sets item by item; nothing is removed."""
    if rhs is MISSING:
        return lhs
    if lhs is MISSING:
        return rhs
    kl, kr = kind_of(atom, lhs), kind_of(atom, rhs)
    if kl != kr or leafish(atom, kr, lhs, rhs):
        return rhs
    if kr == MAP:
        lm = lhs if isinstance(lhs, dict) else {}
        out = {}
        for k, lv in lm.items():
            out[k] = merge(lv, rhs.get(k, MISSING), atom.field(k) or atom.element())
        for k, rv in rhs.items():
            if k not in lm:
                out[k] = rv
        return out
    return _merge_list(lhs, rhs, atom)


def _merge_list(lhs: Any, rhs: list[Any], atom: Atom) -> list[Any]:
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


def _prune(merged: Obj, managed: Managed, last: Owned | None, atom: Atom) -> Obj:
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


# ---- managers --------------------------------------------------------------------------------


class _Conflicts(Exception):
    def __init__(self, conflicts: mf.Conflicts) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def _take(managed: Managed, cmp: Comparison, skip: Manager, force: bool) -> None:
    """Other managers lose what this change modified or added (conflicts unless `force`)
    and what it removed (Updater.update)."""
    changed = cmp.modified.union(cmp.added)
    conflicts: mf.Conflicts = {}
    for m, owned in managed.items():
        if m != skip:
            c = owned.fields.intersection(changed)
            if not c.empty():
                conflicts[m] = c
    if conflicts and not force:
        raise _Conflicts(conflicts)
    for m, owned in list(managed.items()):
        if m == skip:
            continue
        rest = owned.fields.difference(conflicts[m]) if m in conflicts else owned.fields
        rest = rest.difference(cmp.removed)
        if rest.empty():
            del managed[m]
        elif rest is not owned.fields:
            managed[m] = Owned(rest, owned.api_version, owned.applied, owned.time)


def _cap(managed: Managed) -> None:
    """At most 10 Update managers: the oldest are merged into `ancient-changes` per version."""
    updaters = [m for m, o in managed.items() if not o.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda m: (mf.seconds(managed[m].time), m.ident()))
    first: dict[str, Manager] = {}
    length = len(updaters)
    for m in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        owned = managed[m]
        bucket = Manager("ancient-changes", "Update", owned.api_version)
        if owned.api_version not in first:
            first[owned.api_version] = m
            continue
        if bucket not in managed:
            managed[bucket] = managed.pop(first[owned.api_version])
        fields = owned.fields.union(managed[bucket].fields)
        managed[bucket] = Owned(fields, owned.api_version, False, owned.time)
        del managed[m]
        length -= 1


def now() -> str:
    return objects.now_rfc3339()


def _overlay(obj: Any, zero: Mapping[str, Any]) -> Any:
    """`obj` as a typed Go value shows it: the zero value's fields filled in where absent."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for k, z in zero.items():
        v = out.get(k, MISSING)
        if v is MISSING:
            out[k] = z
        elif z and isinstance(v, dict):
            out[k] = _overlay(v, z)
    return out


def _without_managed(obj: Mapping[str, Any]) -> Obj:
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _set_managed(obj: Obj, managed: Managed) -> None:
    meta = obj.setdefault("metadata", {})
    entries = mf.encode(managed)
    if entries is None:
        meta.pop("managedFields", None)
    else:
        meta["managedFields"] = entries


class FieldManager:
    """kube-apiserver's field manager for one kind at one version (`api_version`, `kind`,
    its type `atom`, the Go zero value `zero` of built-in kinds, whether it has a status
    subresource)."""

    def __init__(
        self, atom: Atom, api_version: str, kind: str, zero: Obj | None = None, status: bool = False
    ) -> None:
        self.atom, self.api_version, self.kind = atom, api_version, kind
        self.zero = zero or {}
        self._reset = {"": FieldSet.of(("f:status",)) if status else FieldSet()}
        self._reset["status"] = FieldSet.of(("f:spec",))

    @classmethod
    def for_kind(cls, group: str, version: str, kind: str, status: bool) -> FieldManager:
        """A built-in kind (deduced types when the definitions do not know it)."""
        api_version = f"{group}/{version}" if group else version
        try:
            defs = definitions.load()
        except definitions.DefinitionsUnavailable:
            return cls(mf.DEDUCED, api_version, kind, None, status)
        name = defs.name_of(group, version, kind)
        atom = definitions.kind_type(defs, group, version, kind)
        zero = definitions.zero_object(defs, name) if name else None
        return cls(atom or mf.DEDUCED, api_version, kind, zero, status)

    @classmethod
    def for_custom(
        cls, api_version: str, kind: str, schema: Mapping[str, Any] | None, status: bool
    ) -> FieldManager:
        """A custom resource typed by its CRD version's `openAPIV3Schema`."""
        try:
            defs: definitions.Definitions | None = definitions.load()
        except definitions.DefinitionsUnavailable:
            defs = None
        atom = definitions.TypeBuilder(defs).custom_resource(schema)
        return cls(atom, api_version, kind, None, status)

    def _view(self, obj: Mapping[str, Any]) -> Any:
        return _overlay(_without_managed(obj), self.zero)

    def _changes(self, old: Obj, new: Obj, subresource: str) -> Comparison:
        return compare(self._view(old), self._view(new), self.atom).exclude(
            self._reset_for(subresource)
        )

    def _reset_for(self, subresource: str) -> FieldSet:
        return self._reset.get(subresource, self._reset[""])

    def _record_update(self, old: Obj, new: Obj, managed: Managed, key: Manager, when: str) -> None:
        """What `old` -> `new` changed becomes `key`'s (managedFieldsUpdater over
        stripMetaManager over Updater.Update)."""
        cmp = self._changes(old, new, key.subresource)
        _take(managed, cmp, _CURRENT, True)
        own = cmp.modified.union(cmp.added).difference(cmp.removed).difference(STRIP)
        if not own.empty():
            prev = managed.get(key)
            fields = own.union(prev.fields) if prev is not None else own
            managed[key] = Owned(fields, self.api_version, False, when)
        _cap(managed)

    def update(
        self, live: Obj | None, new: Obj, manager: str, subresource: str = "", when: str = ""
    ) -> None:
        """Set `new`'s managedFields for a create (`live` None) or an update of `live` by
        `manager` (FieldManager.UpdateNoErrors)."""
        meta = new.setdefault("metadata", {})
        live_mf = ((live or {}).get("metadata") or {}).get("managedFields")
        asked = meta.get("managedFields", MISSING)
        if (
            live is not None
            and (subresource or asked is MISSING or asked == live_mf)
            and _without_managed(live) == _without_managed(new)
        ):
            self._keep(meta, live_mf)
            return
        managed = _decode_or_empty(None if subresource or asked is MISSING else asked)
        if not managed and (subresource or not mf.is_reset(asked)):
            managed = _decode_or_empty(live_mf)
        if not managed and live is not None:
            meta.pop("managedFields", None)  # not tracked until the first apply
            return
        key = Manager(manager or "unknown", "Update", self.api_version, subresource)
        empty = {"apiVersion": self.api_version, "kind": self.kind}
        try:
            self._record_update(
                live if live is not None else empty, new, managed, key, when or now()
            )
        except SchemaMismatch:
            self._keep(meta, live_mf)
            return
        _set_managed(new, managed)

    @staticmethod
    def _keep(meta: Obj, entries: Any) -> None:
        if entries is None:
            meta.pop("managedFields", None)
        else:
            meta["managedFields"] = entries

    def apply(
        self,
        live: Obj | None,
        config: Obj,
        manager: str,
        force: bool = False,
        subresource: str = "",
        when: str = "",
    ) -> Obj:
        """The object after `manager` applies `config` to `live` (None: it does not exist yet),
        managedFields set; 409 on conflicts unless `force`."""
        if config.get("apiVersion") != self.api_version or config.get("kind") != self.kind:
            group, _, version = str(config.get("apiVersion") or "").rpartition("/")
            raise errors.bad_request(
                f"invalid object type: {group}/{version}, Kind={config.get('kind') or ''}"
            )
        if (config.get("metadata") or {}).get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        config = copy.deepcopy(config)
        current: Obj = (
            live if live is not None else {"apiVersion": self.api_version, "kind": self.kind}
        )
        try:
            managed = mf.decode((current.get("metadata") or {}).get("managedFields"))
        except ValueError as e:
            raise errors.internal(f"failed to decode managed fields: {e}") from None
        key = Manager(manager, "Apply", "", subresource)
        when = when or now()
        try:
            try:
                out, result = self._apply(current, config, dict(managed), key, force, when)
            except _Conflicts as c:
                allowed = self._allowed_by_last_applied(current) if manager == "kubectl" else None
                if allowed is None:
                    raise mf.conflict_error(c.conflicts) from None
                left = {m: s.difference(allowed) for m, s in c.conflicts.items()}
                left = {m: s for m, s in left.items() if not s.empty()}
                if left:
                    raise mf.conflict_error(left) from None
                out, result = self._apply(current, config, dict(managed), key, True, when)
        except SchemaMismatch as e:
            meta = current.get("metadata") or {}
            where = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
            gv = self.api_version if "/" in self.api_version else "/" + self.api_version
            raise errors.StatusError(
                500,
                "",
                f"failed to create typed patch object ({where}; {gv}, Kind={self.kind}): {e}",
            ) from None
        out = _without_managed(out)  # fresh top level and metadata: the rest may be shared
        out["metadata"] = dict(out.get("metadata") or {})
        changed = out != _without_managed(current)
        if not changed and _same_ignoring_time(result, managed):
            result = managed  # IgnoreManagedFieldsTimestampsTransformer
        if manager == "kubectl" and LAST_APPLIED in (
            (out.get("metadata") or {}).get("annotations") or {}
        ):
            cfg = dict(config)
            cmeta = dict(cfg.get("metadata") or {})
            notes = {k: v for k, v in (cmeta.get("annotations") or {}).items() if k != LAST_APPLIED}
            cmeta["annotations"] = notes
            if not notes:
                del cmeta["annotations"]
            cfg["metadata"] = cmeta
            out["metadata"]["annotations"] = {
                **out["metadata"]["annotations"],
                LAST_APPLIED: mf.go_json(cfg) + "\n",
            }
        _set_managed(out, result)
        return out

    def _apply(
        self, live: Obj, config: Obj, managed: Managed, key: Manager, force: bool, when: str
    ) -> tuple[Obj, Managed]:
        """skipNonAppliedManager, then Updater.Apply, stripMeta, the applier's time."""
        reset = self._reset_for(key.subresource)
        if not managed:
            empty = {"apiVersion": self.api_version, "kind": self.kind}
            first = Manager("before-first-apply", "Update", self.api_version, key.subresource)
            self._record_update(empty, live, managed, first, when)
        base = _without_managed(live)
        merged = merge(base, config, self.atom)
        last = managed.get(key)
        applied = to_field_set(config, self.atom).recursive_difference(reset)
        managed[key] = Owned(applied, self.api_version, True, when)
        merged = _prune(merged, managed, last, self.atom)
        _take(managed, self._changes(base, merged, key.subresource), key, force)
        if key in managed:
            fields = managed[key].fields.difference(STRIP)
            if fields.empty():
                del managed[key]
            else:
                managed[key] = Owned(fields, self.api_version, True, when)
        return merged, managed

    def _allowed_by_last_applied(self, live: Obj) -> FieldSet | None:
        """Fields kubectl's client-side apply recorded and that still have those values: a
        server-side `kubectl apply` may take them over without conflict (lastAppliedManager)."""
        raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        if not raw:
            return None
        try:
            last = mf.orjson.loads(raw)
            if not isinstance(last, dict) or last.get("apiVersion") != self.api_version:
                return None
            fields = to_field_set(last, self.atom)
            cmp = compare(last, self._view(live), self.atom)
        except (ValueError, SchemaMismatch):
            return None
        return fields.difference(cmp.modified).difference(cmp.added).difference(cmp.removed)


def _decode_or_empty(entries: Any) -> Managed:
    try:
        return mf.decode(entries)
    except ValueError:
        return {}


def _same_ignoring_time(a: Managed, b: Managed) -> bool:
    return a.keys() == b.keys() and all(
        a[k].fields == b[k].fields and a[k].api_version == b[k].api_version for k in a
    )
