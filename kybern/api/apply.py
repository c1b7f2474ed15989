"""Server-side apply as kube-apiserver's field manager does it, over the typed views of
`apply_typed` (comparison, merge, pruning). `FieldManager` runs kube's manager chain for one
kind: every write updates `managedFields` (`update`: what the request changed goes to its
manager, operation Update, other managers lose what it changed or removed; at most 10 Update
managers, the oldest merged into `ancient-changes`); `apply` merges the configuration, prunes
what the applier stopped specifying unless someone else owns it, and raises the 409 conflicts
unless forced, with the client-side-apply migration of kubectl (`last-applied-configuration`)
and the `before-first-apply` manager. Fields reset by a subresource (status on the main
resource, spec on status) and server-set metadata are never owned. The sets of created objects
are remembered by content (objects made from one template, the pods of a ReplicaSet, differ
only in metadata nobody owns). A kind served in several versions compares a write again in
each version another manager's entry is in (`versions`), as structured-merge-diff's Updater
does: that manager loses, or conflicts over, what changed as its version shows it. Pure
functions of dicts; no I/O."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from kybern.api import conversion, definitions, errors, objects
from kybern.api import managedfields as mf
from kybern.api.apply_typed import Comparison, compare, merge, prune
from kybern.api.managedfields import (
    MISSING,
    Atom,
    FieldSet,
    Managed,
    Manager,
    Owned,
    SchemaMismatch,
    to_field_set,
)

Obj = dict[str, Any]
MAX_UPDATE_MANAGERS: Final = 10
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# never part of anyone's set (stripMetaManager)
_UNOWNED_META: Final = frozenset(
    "name namespace creationTimestamp selfLink uid clusterName generation managedFields "
    "resourceVersion".split()
)
_STRIPPED: Final = "apiVersion kind metadata" + "".join(
    " metadata." + f for f in sorted(_UNOWNED_META)
)
STRIP: Final = FieldSet.of(*(mf.parse_path(p) for p in _STRIPPED.split()))
_CURRENT: Final = Manager("current-operation", "Update")
# how `FieldManager._created` prints the objects it remembers (anything but plain JSON fails)
_PURE_JSON: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# what the creates remembered for one kind may print to, in all (an object: 1/64 of it at most)
_CREATED_BYTES: Final = 1 << 20


# ---- managers --------------------------------------------------------------------------------


class _Conflicts(Exception):
    def __init__(self, conflicts: mf.Conflicts) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


Versioned = Callable[[str], Comparison]  # the change as the version of a manager's entry sees it


def _take(
    managed: Managed,
    cmp: Comparison,
    skip: Manager,
    force: bool,
    versioned: Versioned | None = None,
) -> None:
    """Other managers lose what this change added or modified (conflicts unless `force`)
    and what it removed (Updater.update), each as the version of its entry sees the change
    (`versioned`; None: all in this one)."""
    if not force:
        conflicts: mf.Conflicts = {}
        for m, owned in managed.items():
            if m != skip:
                changed = (cmp if versioned is None else versioned(owned.api_version)).changed
                c = owned.fields.intersection(changed)
                if not c.empty():
                    conflicts[m] = c
        if conflicts:
            raise _Conflicts(conflicts)
    for m, owned in list(managed.items()):
        if m == skip:
            continue
        seen = cmp if versioned is None else versioned(owned.api_version)
        rest = owned.fields.difference(seen.changed).difference(seen.removed)
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
    """`obj` as a typed Go value shows it: the zero value's fields filled in where absent
    (`obj` itself when it lacks none)."""
    if not isinstance(obj, dict):
        return obj
    out = None
    for k, z in zero.items():
        v = obj.get(k, MISSING)
        if v is MISSING:
            v = z
        elif z and isinstance(v, dict):
            w = _overlay(v, z)
            if w is v:
                continue
            v = w
        else:
            continue
        if out is None:
            out = dict(obj)
        out[k] = v
    return obj if out is None else out


def _without_managed(obj: Mapping[str, Any]) -> Obj:
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta = dict(meta)
        del meta["managedFields"]
        out["metadata"] = meta
    return out


def _set_managed(
    obj: Obj, managed: Managed, docs: dict[int, tuple[FieldSet, Any]] | None = None
) -> None:
    meta = obj.setdefault("metadata", {})
    entries = mf.encode(managed, docs)
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
        self._empty: Obj | None = None  # the view of an empty object of this kind
        # the fields of created objects by their content (`_created`)
        self._created_sets: dict[bytes, tuple[Obj, FieldSet]] = {}
        self._created_misses = self._created_skip = self._created_size = 0
        # the other versions of the kind: their field managers, by apiVersion
        self.versions: dict[str, FieldManager] = {}

    @classmethod
    def for_kind(
        cls, group: str, version: str, kind: str, status: bool, *, others: bool = True
    ) -> FieldManager:
        """A built-in kind (deduced types when the definitions do not know it), with the
        managers of the other versions it converts to (`others`)."""
        api_version = f"{group}/{version}" if group else version
        try:
            defs = definitions.load()
        except definitions.DefinitionsUnavailable:
            fm = cls(mf.DEDUCED, api_version, kind, None, status)
        else:
            name = defs.name_of(group, version, kind)
            atom = definitions.kind_type(defs, group, version, kind)
            zero = definitions.zero_object(defs, name) if name else None
            fm = cls(atom or mf.DEDUCED, api_version, kind, zero, status)
        for v in conversion.versions_of(group, kind) if others else ():
            if v != version:
                other = cls.for_kind(group, v, kind, status, others=False)
                fm.versions[other.api_version] = other
        return fm

    def _versioned(self, old: Obj | None, new: Obj, subresource: str) -> Versioned | None:
        """The change `old` -> `new` (this version's objects) as each version sees it, worked
        out once per version asked for; None for a kind served in one version."""
        if not self.versions:
            return None
        own = self._changes(old, new, subresource)
        seen: dict[str, Comparison] = {self.api_version: own}

        def versioned(api_version: str) -> Comparison:
            c = seen.get(api_version)
            if c is None:
                other = self.versions.get(api_version)
                c = own
                if other is not None:
                    to = functools.partial(conversion.convert, api_version=api_version)
                    try:
                        c = other._changes(None if old is None else to(old), to(new), subresource)
                    except (errors.StatusError, SchemaMismatch):
                        c = own  # not comparable there: as this version sees it
                seen[api_version] = c
            return c

        return versioned

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

    def _changes(self, old: Obj | None, new: Obj, subresource: str) -> Comparison:
        """What `old` (None: an empty object) -> `new` changed, both without managedFields,
        but for the fields `subresource` resets."""
        lhs = self._empty_view() if old is None else _overlay(old, self.zero)
        return compare(lhs, _overlay(new, self.zero), self.atom, self._reset_for(subresource))

    def _empty_view(self) -> Obj:
        """The view of `{"apiVersion": ..., "kind": ...}`, made once (views are only read)."""
        if self._empty is None:
            self._empty = self._view({"apiVersion": self.api_version, "kind": self.kind})
        return self._empty

    def _created(self, new: Obj) -> FieldSet:
        """What the create of `new` (a fresh top-level copy without managedFields) gives its
        manager when nobody owned anything before: `_record_update` from an empty object.
        The scalar metadata nobody owns (name, uid, creationTimestamp...) is left out first:
        it would only be dropped again. What is left is remembered by content, since objects
        created from one template (the pods of a ReplicaSet) differ in nothing else; the
        content is only trusted when the object equals the JSON it prints (no tuples, NaNs
        or other values that print the same)."""
        meta = new.get("metadata")
        if meta.__class__ is dict and not meta.keys().isdisjoint(_UNOWNED_META):
            meta = dict(meta)
            for k in _UNOWNED_META.intersection(meta):
                v = meta[k]
                if v.__class__ is not dict and v.__class__ is not list:
                    del meta[k]
            new["metadata"] = meta
        key = None
        if self._created_skip:
            self._created_skip -= 1
        else:
            try:
                key = orjson.dumps(new, option=_PURE_JSON)
            except TypeError:
                key = None
            if key is not None:
                hit = self._created_sets.get(key)
                if hit is not None and hit[0] == new:
                    self._created_misses = 0
                    return hit[1]
        cmp = self._changes(None, new, "")
        own = cmp.changed.difference(cmp.removed).difference(STRIP)
        if key is not None:
            # objects unlike each other (events): looked up less and less often, to 1 in 64
            self._created_misses += 1
            self._created_skip = (1 << min(self._created_misses, 6)) - 1
            if len(key) <= _CREATED_BYTES >> 6:
                self._created_size += len(key)
                if self._created_size > _CREATED_BYTES:
                    self._created_sets.clear()
                    self._created_size = len(key)
                own._json = orjson.dumps(own.to_json())
                self._created_sets[key] = (orjson.loads(key), own)
        return own

    def _reset_for(self, subresource: str) -> FieldSet:
        return self._reset.get(subresource, self._reset[""])

    def _record_update(
        self, old: Obj | None, new: Obj, managed: Managed, key: Manager, when: str
    ) -> None:
        """What `old` (None: an empty object) -> `new`, both without managedFields, changed
        becomes `key`'s (managedFieldsUpdater over stripMetaManager over Updater.Update):
        every manager loses what changed or went, then `key` gets what changed."""
        versioned = self._versioned(old, new, key.subresource)
        if versioned is None:
            cmp = self._changes(old, new, key.subresource)
        else:
            cmp = versioned(self.api_version)
        own = cmp.changed.difference(cmp.removed).difference(STRIP)
        before = managed.get(key)
        if (  # `key` changed only what it owns (a lease renewed by its holder): its set stays
            before is not None
            and own is cmp.changed
            and not own.empty()
            and cmp.removed.empty()
            and before.fields.union(own) is before.fields
        ):
            _take(managed, cmp, key, True, versioned)
            managed[key] = Owned(before.fields, self.api_version, False, when)
        else:
            _take(managed, cmp, _CURRENT, True, versioned)
            if not own.empty():
                prev = managed.get(key)
                fields = own.union(prev.fields) if prev is not None else own
                if before is not None and fields == before.fields:
                    fields = before.fields  # the same set again: its encoding is remembered
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
        old = None if live is None else _without_managed(live)
        bare = _without_managed(new)
        if old is not None and (subresource or asked is MISSING or asked == live_mf):
            part = subresource or "spec"  # what a write mostly changes: compared first
            if old.get(part) == bare.get(part) and old == bare:
                self._keep(meta, live_mf)
                return
        # the fieldsV1 documents of `new`'s own entries, to keep where a set is unchanged
        docs: dict[int, tuple[FieldSet, Any]] = {}
        managed = {} if subresource or asked is MISSING else _decode_or_empty(asked, docs)
        if not managed and live_mf is not None and (subresource or not mf.is_reset(asked)):
            if subresource and asked is not MISSING and asked == live_mf:
                managed = _decode_or_empty(asked, docs)  # the same entries, this write's own
            else:
                docs.clear()
                managed = _decode_or_empty(live_mf)
        if not managed and live is not None:
            meta.pop("managedFields", None)  # not tracked until the first apply
            return
        key = mf.manager_key(manager or "unknown", "Update", self.api_version, subresource)
        try:
            if old is None and not managed and not subresource:  # a plain create
                own = self._created(bare)
                if not own.empty():
                    managed[key] = Owned(own, self.api_version, False, when or now())
            else:
                self._record_update(old, bare, managed, key, when or now())
        except SchemaMismatch:
            self._keep(meta, live_mf)
            return
        _set_managed(new, managed, docs)

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
            first = Manager("before-first-apply", "Update", self.api_version, key.subresource)
            self._record_update(None, _without_managed(live), managed, first, when)
        base = _without_managed(live)
        merged = merge(base, config, self.atom)
        last = managed.get(key)
        applied = to_field_set(config, self.atom).recursive_difference(reset)
        managed[key] = Owned(applied, self.api_version, True, when)
        merged = prune(merged, managed, last, self.atom)
        after = _without_managed(merged)
        versioned = self._versioned(base, after, key.subresource)
        if versioned is None:
            changes = self._changes(base, after, key.subresource)
        else:
            changes = versioned(self.api_version)
        _take(managed, changes, key, force, versioned)
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
        return fields.difference(cmp.changed).difference(cmp.removed)


def _decode_or_empty(entries: Any, docs: dict[int, tuple[FieldSet, Any]] | None = None) -> Managed:
    try:
        return mf.decode(entries, docs)
    except ValueError:
        if docs:
            docs.clear()
        return {}


def _same_ignoring_time(a: Managed, b: Managed) -> bool:
    return a.keys() == b.keys() and all(
        a[k].fields == b[k].fields and a[k].api_version == b[k].api_version for k in a
    )
