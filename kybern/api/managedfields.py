"""Field ownership as structured-merge-diff (sigs.k8s.io/structured-merge-diff v4) defines it:
path elements in their serialized form (`f:<name>`, `k:{"name":"c"}`, `v:<json>`, `i:<index>`),
their order and their printed form (`.spec.containers[name="c"].image`); `FieldSet`, a trie of
paths with union, intersection, difference and recursive difference, read from and written to
the `fieldsV1` JSON (`.` marking a node that is itself a member); `Atom`, one type of the schema
that typed views of objects walk (see `apply`), and the field sets of values under it. The
`metadata.managedFields` entries (managers, decode, encode, apply conflicts) live in
`managedfields_entries` and are re-exported here. Pure data; no I/O."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from kybern.api.managedfields_entries import Conflicts as Conflicts
from kybern.api.managedfields_entries import Managed as Managed
from kybern.api.managedfields_entries import Manager as Manager
from kybern.api.managedfields_entries import Owned as Owned
from kybern.api.managedfields_entries import conflict_error as conflict_error
from kybern.api.managedfields_entries import decode as decode
from kybern.api.managedfields_entries import encode as encode
from kybern.api.managedfields_entries import is_reset as is_reset
from kybern.api.managedfields_entries import manager_key as manager_key
from kybern.api.managedfields_entries import seconds as seconds

Path = tuple[str, ...]
MISSING: Final[Any] = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
_RANK: Final = {"f": 0, "k": 1, "v": 2, "i": 3}


class SchemaMismatch(ValueError):
    """An object does not fit its schema where a path element is needed (a keyed list item
    without its key, a map in a set)."""


# ---- path elements -------------------------------------------------------------------------


def go_json(v: Any) -> str:
    """`v` as Go's encoding/json writes it: compact, map keys sorted, `<>&` escaped, integral
    floats without a fraction."""
    if v.__class__ is str:
        s = orjson.dumps(v).decode()
    elif v.__class__ is int:
        return str(v)
    elif v is None or v.__class__ is bool:
        return "null" if v is None else "true" if v else "false"
    elif isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    else:
        s = json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    if "<" in s or ">" in s or "&" in s or "\u2028" in s or "\u2029" in s:
        for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            s = s.replace(a, b)
        s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return s


def key_pe(keys: Mapping[str, Any]) -> str:
    try:
        return _key_pe(tuple(sorted(keys.items())))
    except TypeError:  # unhashable key values
        return "k:{" + ",".join(f"{go_json(k)}:{go_json(keys[k])}" for k in sorted(keys)) + "}"


@functools.lru_cache(maxsize=16384)
def _key_pe(items: tuple[tuple[str, Any], ...]) -> str:
    return "k:{" + ",".join(f"{go_json(k)}:{go_json(v)}" for k, v in items) + "}"


def value_pe(v: Any) -> str:
    return "v:" + go_json(v)


def index_pe(i: int) -> str:
    return "i:" + str(i)


def _value_key(v: Any) -> tuple[Any, ...]:
    """The total order structured-merge-diff gives values: numbers, strings, bools, lists,
    maps, null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_key(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k, _value_key(v[k])) for k in sorted(v)))
    return (5,)


@functools.lru_cache(maxsize=65536)
def pe_order(pe: str) -> tuple[Any, ...]:
    """Sort key of a path element: field names, then keys, values, indexes (PathElement.Less)."""
    kind, body = pe[0], pe[2:]
    if kind == "f":
        return (0, body)
    if kind == "k":
        fields = orjson.loads(body)
        return (1, tuple((k, _value_key(fields[k])) for k in sorted(fields)))
    if kind == "v":
        return (2, _value_key(orjson.loads(body)))
    return (3, int(body))


def _go_string(v: Any) -> str:
    """`value.ToString`: strings quoted, numbers as Go's %v prints them."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(_go_string(x) for x in v) + "]"
    return "".join(f"{k}={_go_string(v[k])}" for k in v)


def pe_string(pe: str) -> str:
    """A path element as conflict messages print it: `.name`, `[name="c"]`, `[=v]`, `[0]`."""
    kind, body = pe[0], pe[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        fields = orjson.loads(body)
        return "[" + ",".join(f"{k}={_go_string(fields[k])}" for k in sorted(fields)) + "]"
    if kind == "v":
        return "[=" + _go_string(orjson.loads(body)) + "]"
    return "[" + body + "]"


def path_string(path: Sequence[str]) -> str:
    return "".join(pe_string(pe) for pe in path)


def parse_path(text: str) -> Path:
    """`spec.replicas` or `.spec.replicas` -> ("f:spec", "f:replicas") (field names only)."""
    return tuple("f:" + p for p in text.strip(".").split(".") if p)


def _check_pe(pe: str) -> bool:
    """Whether `pe` is a well-formed element (False: unknown kind, ignored as kube does)."""
    if len(pe) < 2 or pe[1] != ":":
        raise ValueError(f"invalid path element {pe!r}")
    if pe[0] not in _RANK:
        return False
    try:
        pe_order(pe)
    except (ValueError, orjson.JSONDecodeError) as e:
        raise ValueError(f"invalid path element {pe!r}: {e}") from None
    return True


# ---- sets ------------------------------------------------------------------------------------


class FieldSet:
    """A set of field paths (fieldpath.Set): `members` are the elements in the set at this
    level, `children` the subsets below elements (never empty). Sets are values: the operations
    return new sets and may share unchanged subtrees, so never mutate a set you did not build."""

    __slots__ = ("_json", "children", "members")

    def __init__(
        self, members: set[str] | None = None, children: dict[str, FieldSet] | None = None
    ) -> None:
        self.members: set[str] = members if members is not None else set()
        self.children: dict[str, FieldSet] = children if children is not None else {}
        self._json: bytes | None = None  # `to_json` encoded, for the sets shared widely

    @classmethod
    def of(cls, *paths: Sequence[str]) -> FieldSet:
        s = cls()
        for p in paths:
            s.insert(p)
        return s

    def insert(self, path: Sequence[str]) -> None:
        if not path:
            return  # nobody owns the whole object
        node = self
        for pe in path[:-1]:
            child = node.children.get(pe)
            if child is None:
                child = node.children[pe] = FieldSet()
            node = child
        node.members.add(path[-1])

    def has(self, path: Sequence[str]) -> bool:
        node: FieldSet | None = self
        for pe in path[:-1]:
            node = node.children.get(pe) if node is not None else None
        return bool(path) and node is not None and path[-1] in node.members

    def empty(self) -> bool:
        return not self.members and not self.children

    def union(self, other: FieldSet) -> FieldSet:
        """`self` itself when `other` adds nothing to it (its encoding stays cached)."""
        if other.empty():
            return self
        if self.empty():
            return other
        mine = self.children
        children: dict[str, FieldSet] | None = None
        for pe, sub in other.children.items():
            own = mine.get(pe)
            both = sub if own is None else own.union(sub)
            if both is not own:
                if children is None:
                    children = dict(mine)
                children[pe] = both
        if children is None:
            if other.members <= self.members:
                return self
            children = dict(mine)
        return FieldSet(self.members | other.members, children)

    def intersection(self, other: FieldSet) -> FieldSet:
        children = {}
        if self.children and other.children:
            theirs_all = other.children
            for pe, sub in self.children.items():
                theirs = theirs_all.get(pe)
                if theirs is not None:
                    both = sub.intersection(theirs)
                    if not both.empty():
                        children[pe] = both
        return FieldSet(self.members & other.members, children)

    def difference(self, other: FieldSet) -> FieldSet:
        """Members minus members, children minus children: a parent in `other` does not remove
        its children from `self` (fieldpath.Set.Difference)."""
        return self._minus(other, False)

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Like `difference`, but a member of `other` also removes everything below it."""
        return self._minus(other, True)

    def _minus(self, other: FieldSet, recursive: bool) -> FieldSet:
        """`self` itself when `other` removes nothing from it (its encoding stays cached)."""
        if other.empty():
            return self
        theirs_all = other.children
        gone = other.members if recursive else None
        children: dict[str, FieldSet] | None = None
        if theirs_all or gone:
            for pe, sub in self.children.items():
                theirs = theirs_all.get(pe)
                if gone is not None and pe in gone:
                    rest: FieldSet | None = None
                elif theirs is None:
                    continue
                else:
                    rest = sub._minus(theirs, recursive)
                    if rest.empty():
                        rest = None
                    elif rest is sub:
                        continue
                if children is None:
                    children = dict(self.children)
                if rest is None:
                    del children[pe]
                else:
                    children[pe] = rest
        if children is None:
            if self.members.isdisjoint(other.members):
                return self
            children = dict(self.children)
        return FieldSet(self.members - other.members, children)

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member, in kube's order (this level's members, then each child's)."""
        for pe in sorted(self.members, key=pe_order):
            yield (*prefix, pe)
        for pe in sorted(self.children, key=pe_order):
            yield from self.children[pe].paths((*prefix, pe))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return self.members == other.members and self.children == other.children

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self.paths()]})"

    def to_json(self) -> dict[str, Any]:
        """The `fieldsV1` document: `{"f:spec": {"f:replicas": {}}}`, `.` for a member that
        also has children, elements in structured-merge-diff's order."""
        if self._json is not None:
            doc: dict[str, Any] = orjson.loads(self._json)
            return doc
        members, children = self.members, self.children
        order = sorted(members | children.keys() if children else members)
        if len(order) > 1 and (order[0][0] != "f" or order[-1][0] != "f"):  # not names only
            order.sort(key=pe_order)
        out: dict[str, Any] = {pe: {} for pe in order}
        for pe, sub in children.items():  # in place: the keys keep their order
            node = sub.to_json()
            if pe in members:
                node["."] = {}
            out[pe] = node
        return out

    @classmethod
    def from_json(cls, doc: Any) -> FieldSet:
        """Read `fieldsV1`; unknown element kinds are dropped, malformed ones raise
        ValueError."""
        if not isinstance(doc, dict):
            raise ValueError("fieldsV1 must be a JSON object")
        s = cls()
        for pe, sub in doc.items():
            if pe == "." or not _check_pe(pe):
                continue
            if not isinstance(sub, dict):
                raise ValueError(f"fieldsV1 value of {pe!r} must be an object")
            child = cls.from_json(sub)
            if "." in sub or child.empty():
                s.members.add(pe)
            if not child.empty():
                s.children[pe] = child
        return s


# ---- typed views -------------------------------------------------------------------------------


class Atom:
    """One type of the schema (schema.Atom): a scalar, a map/struct (`fields` by name, `elem`
    for other keys; `atomic` when the whole map is one value) and/or a list (`list_type`
    atomic|set|map with `keys` and their `key_defaults`). Field and element types may be given
    as zero-argument functions, resolved once on first use (schemas are recursive)."""

    __slots__ = tuple(
        "_elem atomic fields is_list is_map key_defaults keys list_type scalar".split()
    )

    def __init__(
        self,
        *,
        scalar: bool = False,
        is_map: bool = False,
        is_list: bool = False,
        atomic: bool = False,
        fields: dict[str, Any] | None = None,
        elem: Any = None,
        list_type: str = "atomic",
        keys: tuple[str, ...] = (),
        key_defaults: dict[str, Any] | None = None,
    ) -> None:
        self.scalar, self.is_map, self.is_list, self.atomic = scalar, is_map, is_list, atomic
        self.fields: dict[str, Any] = fields or {}
        self._elem = elem
        self.list_type, self.keys = list_type, keys
        self.key_defaults = key_defaults or {}

    def field(self, name: str) -> Atom | None:
        t = self.fields.get(name)
        if t is not None and not isinstance(t, Atom):
            t = self.fields[name] = t()
        return t

    def element(self) -> Atom:
        t = self._elem
        if t is None:
            return DEDUCED
        if not isinstance(t, Atom):
            t = self._elem = t()
        return t


UNTYPED: Final = Atom(scalar=True, is_map=True, is_list=True, atomic=True)
UNTYPED._elem = UNTYPED
# a value of unknown type: scalar, atomic list, or granular map of more deduced values
DEDUCED: Final = Atom(scalar=True, is_map=True, is_list=True)
DEDUCED._elem = DEDUCED


LEAF, MAP, LIST = 0, 1, 2


def kind_of(atom: Atom, v: Any) -> int:
    if isinstance(v, dict):
        return MAP if atom.is_map else LEAF
    if isinstance(v, list):
        return LIST if atom.is_list else LEAF
    if v is None:
        return MAP if atom.is_map else LEAF if atom.scalar else LIST
    return LEAF


def list_item_pe(atom: Atom, index: int, item: Any) -> str:
    """The path element of a list item: its key, its value (sets) or its index (atomic)."""
    keys = atom.keys
    if keys and atom.list_type == "map":
        if item.__class__ is dict and len(keys) == 1:  # most lists: one key, a name or a number
            v = item.get(keys[0])
            if v.__class__ is str or v.__class__ is int:
                return _key_pe(((keys[0], v),))
        if not isinstance(item, dict):
            if item is None:
                raise SchemaMismatch("associative list with keys may not have a null element")
            raise SchemaMismatch("associative list with keys may not have non-map elements")
        kv: dict[str, Any] = {}
        for k in atom.keys:
            if item.get(k) is not None:
                kv[k] = item[k]
            elif k in atom.key_defaults:
                kv[k] = atom.key_defaults[k]
            else:
                raise SchemaMismatch(
                    f'associative list with keys has an element that omits key field "{k}" '
                    "(and doesn't have default value)"
                )
        return key_pe(kv)
    if atom.list_type != "atomic":
        if isinstance(item, dict):
            raise SchemaMismatch("associative list without keys has an element that's a map type")
        if isinstance(item, list):
            raise SchemaMismatch("not supported: associative list with lists as elements")
        if item is None:
            raise SchemaMismatch(
                "associative list without keys has an element that's an explicit null"
            )
        return value_pe(item)
    return index_pe(index)


def leafish(atom: Atom, kind: int, lhs: Any, rhs: Any) -> bool:
    """Whether a node is compared/merged whole: scalars, atomic maps and lists, and
    containers empty (or absent) on both sides."""
    if kind == LEAF or (atom.atomic if kind == MAP else atom.list_type == "atomic"):
        return True
    return not (lhs if lhs is not MISSING else None) and not (rhs if rhs is not MISSING else None)


def index_items(atom: Atom, items: Any, dups_ok: bool) -> dict[str, Any]:
    """A list's items by path element, in order (the first of duplicates when `dups_ok`)."""
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for i, item in enumerate(items):
        pe = list_item_pe(atom, i, item)
        if pe in out:
            if not dups_ok:
                raise SchemaMismatch(f"duplicate entries for key {pe_string(pe)}")
            continue
        out[pe] = item
    return out


def to_field_set(value: Any, atom: Atom) -> FieldSet:
    """Every leaf and every item a value mentions (TypedValue.ToFieldSet)."""
    out = FieldSet()
    _tfs(value, atom, (), out)
    return out


def _tfs(v: Any, atom: Atom, path: Path, out: FieldSet) -> None:
    kind = kind_of(atom, v)
    if kind == LEAF or (atom.atomic if kind == MAP else atom.list_type == "atomic"):
        out.insert(path)
    elif kind == LIST:
        elem = atom.element()
        for i, item in enumerate(v or ()):
            p = (*path, list_item_pe(atom, i, item))
            _tfs(item, elem, p, out)
            out.insert(p)
    elif v:
        for key, val in v.items():
            t = atom.field(key)
            p = (*path, "f:" + key)
            if t is None:
                _tfs(val, atom.element(), p, out)
                out.insert(p)
            else:
                _tfs(val, t, p, out)


def ensure_named_fields(s: FieldSet, atom: Atom) -> FieldSet:
    """`s` plus, as members, the struct fields that only have children in it
    (Set.EnsureNamedFieldsAreMembers: pruning may then remove a whole struct)."""
    members = set(s.members)
    children = {}
    for pe, sub in s.children.items():
        t: Atom | None = None
        if pe[0] == "f" and atom.is_map:
            t = atom.field(pe[2:])
            if t is not None:
                members.add(pe)
            t = t or atom.element()
        elif pe[0] == "k" and atom.is_list:
            t = atom.element()
        children[pe] = ensure_named_fields(sub, t) if t is not None else sub
    return FieldSet(members, children)
