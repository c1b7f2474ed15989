"""The `metadata.managedFields` entries of structured-merge-diff's field managers: manager
identifiers (`Manager`, one per applier, one per updater and apiVersion), what each owns
(`Owned`), their decoding from the entries a client or the store sends (refusing what
kube-apiserver refuses, remembering the `fieldsV1` sets by content), their encoding in kube's
sort order, and the 409 `Status` an apply conflict becomes, worded as kube-apiserver words it.
The field sets themselves are `managedfields.FieldSet`s (which re-exports everything here);
that module is imported where it is first needed, since it imports this one. Pure data; no
I/O."""

from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import orjson

from kybern.api import errors

if TYPE_CHECKING:
    from kybern.api.managedfields import FieldSet


class Manager(NamedTuple):
    """A manager identifier (BuildManagerIdentifier): appliers are one entry whatever the
    version they apply with, updaters one per apiVersion (a tuple: hashed and compared as
    one, which the dicts of managers do all the time)."""

    manager: str
    operation: str
    api_version: str = ""
    subresource: str = ""

    def describe(self) -> str:
        """As conflict messages name it (`"kubectl-client-side-apply" using apps/v1`)."""
        out = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            out += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    def ident(self) -> str:
        d = {"manager": self.manager, "operation": self.operation}
        if self.api_version:
            d["apiVersion"] = self.api_version
        if self.subresource:
            d["subresource"] = self.subresource
        return json.dumps(d, separators=(",", ":"))


@dataclass(slots=True)
class Owned:
    """What one manager owns (fieldpath.VersionedSet) and when it last changed it."""

    fields: FieldSet
    api_version: str
    applied: bool
    time: str | None = None


Managed = dict[Manager, Owned]


def decode(entries: Any, docs: dict[int, tuple[FieldSet, Any]] | None = None) -> Managed:
    """`metadata.managedFields` -> managers (ValueError for anything kube would refuse).
    `docs`, when given, gets the `fieldsV1` documents that are exactly what `to_json` makes
    of their sets, by the id of the set: `encode` may hand them out again instead of a copy
    (only when `entries` belong to the object written, never to a shared one)."""
    out: Managed = {}
    if entries is None:
        return out
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"managed fields entry {i} must be an object")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        av = e.get("apiVersion") or ""
        if not av:
            raise ValueError("apiVersion must not be empty")
        if av.__class__ is not str:  # (typed decoding refuses it first, over HTTP)
            raise ValueError("apiVersion must be a string")
        ft = e.get("fieldsType") or ""
        if ft != "FieldsV1":
            what = f'invalid fieldsType "{ft}"' if ft else "missing fieldsType"
            raise ValueError(f"{what} in managed fields entry {i}")
        doc = e.get("fieldsV1") or {}
        sub, (fields, canonical) = e.get("subresource") or "", _fields(doc)
        if docs is not None and canonical:
            docs[id(fields)] = fields, doc  # (the set too: its id stays its own)
        key = manager_key(str(e.get("manager") or ""), op, av if op == "Update" else "", sub)
        out[key] = Owned(fields, av, op == "Apply", _rfc3339(e.get("time")))
    return out


@functools.lru_cache(maxsize=4096)
def manager_key(manager: str, operation: str, api_version: str, subresource: str) -> Manager:
    """`Manager(...)`, one object per identifier (dict lookups then find it by identity)."""
    return Manager(manager, operation, api_version, subresource)


_DECODED: dict[bytes, tuple[FieldSet, bool]] = {}
_DECODED_MAX = 4096


def _fields(doc: Any) -> tuple[FieldSet, bool]:
    """`FieldSet.from_json`, remembered: the objects of one kind written by one manager mostly
    own the same fields, and every update decodes the entries of the object it changes. The
    sets handed out are shared (sets are values: nobody mutates one they did not build).
    With the set, whether `doc` is exactly its `to_json`, to the byte."""
    try:
        key = orjson.dumps(doc)
    except TypeError:
        return _from_json(doc), False
    hit = _DECODED.get(key)
    if hit is None:
        fs = _from_json(doc)
        fs._json = orjson.dumps(fs.to_json())
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        hit = _DECODED[key] = fs, fs._json == key
    return hit


def _from_json(doc: Any) -> FieldSet:
    from kybern.api.managedfields import FieldSet  # (imports this module)

    return FieldSet.from_json(doc)


def is_reset(entries: Any) -> bool:
    """A request that empties managedFields on purpose: `[]`, or `[{}]`."""
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def _rfc3339(t: Any) -> str | None:
    """A time as metav1.Time writes it (`2024-01-01T00:00:00Z`), whatever offset it came in."""
    if not isinstance(t, str) or not t:
        return None
    return _rfc3339_str(t)


@functools.lru_cache(maxsize=4096)
def _rfc3339_str(t: str) -> str:
    try:
        when = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {t!r} in managed fields") from None
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def seconds(t: str | None) -> float:
    if not t:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() // 1
    except ValueError:
        return 0.0


def encode(
    managed: Managed, docs: dict[int, tuple[FieldSet, Any]] | None = None
) -> list[dict[str, Any]] | None:
    """Managers -> `metadata.managedFields`, sorted as kube sorts them (operation, time,
    manager, apiVersion, subresource); None when nobody owns anything. `docs`: the
    `fieldsV1` documents `decode` found already written, each used at most once."""
    rows = []
    for key, owned in managed.items():
        e: dict[str, Any] = {}
        if key.manager:
            e["manager"] = key.manager
        e["operation"] = "Apply" if owned.applied else "Update"
        e["apiVersion"] = owned.api_version
        if owned.time:
            e["time"] = owned.time
        e["fieldsType"] = "FieldsV1"
        known = docs.pop(id(owned.fields), None) if docs else None
        if known is not None and known[0] is owned.fields:
            e["fieldsV1"] = known[1]
        else:
            e["fieldsV1"] = owned.fields.to_json()
        if key.subresource:
            e["subresource"] = key.subresource
        rows.append(e)
    if not rows:
        return None
    if len(rows) > 1:  # by operation, time, manager, apiVersion, subresource
        rows.sort(
            key=lambda e: (
                e["operation"],
                seconds(e.get("time")),
                e.get("manager", ""),
                e["apiVersion"],
                e.get("subresource", ""),
            )
        )
    return rows


Conflicts: TypeAlias = dict[Manager, "FieldSet"]


def conflict_error(conflicts: Conflicts) -> errors.StatusError:
    """The 409 `Status` of an apply conflict, as kube-apiserver sends it (NewApplyConflict)."""
    from kybern.api.managedfields import path_string  # (imports this module)

    found = [(m, p) for m in sorted(conflicts, key=Manager.ident) for p in conflicts[m].paths()]
    causes = [
        errors.FieldError("FieldManagerConflict", path_string(p), f"conflict with {m.describe()}")
        for m, p in found
    ]
    if len(found) == 1:
        m, p = found[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {path_string(p)}"
    else:
        lines = []
        for m in sorted(conflicts, key=Manager.ident):
            lines.append(f"conflicts with {m.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in conflicts[m].paths())
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return errors.StatusError(409, "Conflict", message, causes=causes)
