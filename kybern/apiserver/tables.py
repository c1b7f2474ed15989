"""Server-side `Table` output (`meta.k8s.io/v1` and `v1beta1`), what `kubectl get` asks for:
`negotiate` reads the `Accept` header as kube-apiserver does (a Table when a clause names
`as=Table;g=meta.k8s.io;v=v1|v1beta1` for JSON, plain output for an ordinary media type, 406
`NotAcceptable` when no clause can be served), `table` turns objects into a Table with the
columns of the kind's printer (`printers`), of a CRD's `additionalPrinterColumns` (a JSONPath
subset), or the default NAME/CREATED AT, and each row's `object` per `includeObject`
(`None`, `Metadata` as a `PartialObjectMetadata`, `Object`). Ages are computed at response
time. `list_response`/`object_response` serve GET and LIST; `TableWatch` encodes watch
events, each a one-row Table with the column definitions in the first event only."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from kybern.api import conversion, errors, registry
from kybern.apiserver import cache as cachemod
from kybern.apiserver import (  # noqa: F401
    codec,
    printers,
    printers_cluster,
    printers_core,
    printers_more,
    printers_net,
)
from kybern.apiserver import store as storemod

log = logging.getLogger("kybern.apiserver")
Obj = dict[str, Any]
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")
_CRDS = next(r for r in registry.BUILTIN if r.kind == "CustomResourceDefinition")
_PLAIN_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_CR_PLAIN_TYPES = _PLAIN_TYPES[:2]  # custom resources have no protobuf encoding
_TABLE_SUBTYPES = ("json", "yaml")
_NOT_ACCEPTABLE = "only the following media types are accepted: " + ", ".join(_PLAIN_TYPES)

# ---- content negotiation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clause:
    type: str
    subtype: str
    params: dict[str, str]
    q: float


def _parse_accept(header: str) -> list[_Clause]:
    """The clauses of an Accept header, most preferred first (q, then specificity)."""
    out: list[_Clause] = []
    for raw in header.split(","):
        parts = [p.strip() for p in raw.split(";")]
        mtype, _, subtype = parts[0].lower().partition("/")
        if not mtype:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for p in parts[1:]:
            k, _, v = p.partition("=")
            k, v = k.strip(), v.strip().strip('"')
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            elif k:
                params[k] = v
        out.append(_Clause(mtype, subtype or "*", params, q))
    out.sort(key=lambda c: (-c.q, c.type == "*", c.subtype == "*"))
    return out


def negotiate(accept: str, *, crd: bool = False) -> str:
    """What to answer a GET, LIST or WATCH with: `""` for the plain encoding, `"v1"` or
    `"v1beta1"` for a Table of that version. Raises 406 when no clause can be served."""
    if not accept.strip():
        return ""
    plain = _CR_PLAIN_TYPES if crd else _PLAIN_TYPES
    for c in _parse_accept(accept):
        if c.q <= 0:
            continue
        candidates: tuple[str, ...] = ()
        if c.type == "*":
            candidates = plain if c.subtype == "*" else ()
        elif c.subtype == "*":
            candidates = tuple(t for t in plain if t.startswith(c.type + "/"))
        else:
            candidates = tuple(t for t in plain if t == f"{c.type}/{c.subtype}")
        if not candidates:
            continue
        p = c.params
        if not any(k in p for k in ("as", "g", "v")):
            return ""
        if p.get("as") != "Table" or p.get("g") != "meta.k8s.io":
            continue  # PartialObjectMetadata and other conversions are not served
        if p.get("v") in TABLE_VERSIONS and any(
            t.endswith("/" + s) for t in candidates for s in _TABLE_SUBTYPES
        ):
            return p["v"]
    raise errors.StatusError(406, "NotAcceptable", _NOT_ACCEPTABLE)


def include_object(request: web.Request) -> str:
    """The `includeObject` query parameter (`Metadata` when unset), validated."""
    v = request.query.get("includeObject", "")
    if v == "":
        return "Metadata"
    if v not in INCLUDE_OBJECT:
        raise errors.bad_request(
            f'Unable to convert to Table as requested: includeObject: Invalid value: "{v}": '
            "must be 'Metadata', 'Object', 'None', or empty"
        )
    return v


def wanted(request: web.Request, res: registry.Resource) -> str:
    """`negotiate` for this request; a Table request's options are checked here too."""
    version = negotiate(request.headers.get("Accept", ""), crd=res.crd)
    if version:
        include_object(request)
    return version


# ---- a small JSONPath ---------------------------------------------------------------------------

_Step = tuple[Any, ...]
_TOKEN = re.compile(
    r"""\.\.|\.\*|\.(?P<name>[^.\[\]]+)|\[\s*(?:(?P<index>-?\d+)|\*|'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"
    |\?\(\s*@(?P<fpath>(?:\.[^.\[\]\s=!<>)]+|\[\d+\])*)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*
    (?P<val>'[^']*'|"[^"]*"|[^)\s]+))?\s*\))\s*\]""",
    re.X,
)


def compile_path(path: str) -> list[_Step]:
    """Steps of a JSONPath like `.spec.x`, `.items[0]`, `['a.b']`, `[*]` or
    `.status.conditions[?(@.type=="Ready")].status` (what CRD columns use)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if path in ("", "."):
        return []
    if path.startswith("$"):
        path = path[1:]
    if not path.startswith((".", "[")):
        path = "." + path
    steps: list[_Step] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or m.group(0) == "..":
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        g = m.groupdict()
        if g["name"] is not None:
            steps.append(("key", g["name"]))
        elif g["index"] is not None:
            steps.append(("index", int(g["index"])))
        elif g["sq"] is not None or g["dq"] is not None:
            steps.append(("key", g["sq"] if g["sq"] is not None else g["dq"]))
        elif g["fpath"] is not None:
            val: Any = None
            if g["val"] is not None:
                val = _literal(g["val"])
            steps.append(("filter", compile_path(g["fpath"] or "."), g["op"], val))
        else:
            steps.append(("all",))
        pos = m.end()
    return steps


def _literal(text: str) -> Any:
    if text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}


def evaluate(steps: Sequence[_Step], value: Any) -> list[Any]:
    """Every value `steps` reach from `value`, in document order (missing keys: none)."""
    cur = [value]
    for step in steps:
        nxt: list[Any] = []
        kind = step[0]
        for v in cur:
            if kind == "key":
                if isinstance(v, dict) and step[1] in v:
                    nxt.append(v[step[1]])
            elif kind == "index":
                if isinstance(v, list) and -len(v) <= step[1] < len(v):
                    nxt.append(v[step[1]])
            elif kind == "all":
                nxt.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())
            elif isinstance(v, list):  # filter
                for el in v:
                    found = evaluate(step[1], el)
                    if step[2] is None:
                        ok = bool(found)
                    else:
                        try:
                            ok = any(_CMP[step[2]](f, step[3]) for f in found)
                        except TypeError:
                            ok = False
                    if ok:
                        nxt.append(el)
        cur = nxt
    return cur


# ---- CRD columns and the default columns ------------------------------------------------------


def go_text(value: Any) -> str:
    """A JSON value printed as the JSONPath printer of a `string` column does."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def _cell(typ: str, value: Any, now: float) -> Any:
    """`cellForJSONValue`: a custom column's cell of `typ`, None when the value does not fit."""
    if value is None:
        return None
    if typ == "string":
        return go_text(value)
    if isinstance(value, bool):
        return value if typ == "boolean" else None
    if typ == "integer" and isinstance(value, (int, float)):
        return int(value)
    if typ == "number" and isinstance(value, (int, float)):
        return float(value)
    if typ == "date" and isinstance(value, str):
        t = printers.parse_time(value)
        return printers.human_duration(now - t) if t else "<invalid>"
    return None


@dataclass(frozen=True, slots=True)
class _CustomColumn:
    type: str
    steps: list[_Step] | None  # None: the path did not compile (the cell stays empty)


def crd_columns(crd: Obj, version: str) -> list[Obj]:
    """The served version's `additionalPrinterColumns`, or the default Age column."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version and v.get("additionalPrinterColumns"):
            return list(v["additionalPrinterColumns"])
    return [
        {
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
            "description": printers.AGE_DESC,
        }
    ]


def _crd_printer(crd: Obj, version: str) -> printers.Printer:
    columns = [printers.NAME]
    custom: list[_CustomColumn] = []
    for c in crd_columns(crd, version):
        path = str(c.get("jsonPath") or "")
        try:
            steps: list[_Step] | None = compile_path(path)
        except ValueError:
            steps = None
        columns.append(
            printers.col(
                str(c.get("name") or ""),
                str(c.get("type") or "string"),
                str(c.get("description") or "")
                or f"Custom resource definition column (in JSONPath format): {path}",
                int(c.get("priority") or 0),
                str(c.get("format") or ""),
            )
        )
        custom.append(_CustomColumn(str(c.get("type") or "string"), steps))

    def row(obj: Obj, now: float) -> list[Any]:
        cells: list[Any] = [obj["metadata"].get("name", "")]
        for c in custom:
            found = evaluate(c.steps, obj) if c.steps is not None else []
            cells.append(_cell(c.type, found[0], now) if found else None)
        return cells

    return printers.Printer(tuple(columns), row)


_crd_printers: dict[tuple[str, str, str], printers.Printer] = {}


def crd_printer(crd: Obj, version: str) -> printers.Printer:
    """`_crd_printer`, cached per CRD resourceVersion."""
    meta = crd.get("metadata") or {}
    key = (str(meta.get("name")), str(meta.get("resourceVersion")), version)
    p = _crd_printers.get(key)
    if p is None:
        if len(_crd_printers) > 256:
            _crd_printers.clear()
        p = _crd_printers[key] = _crd_printer(crd, version)
    return p


def _created_at(obj: Obj, now: float) -> list[Any]:
    t = printers.timestamp(obj["metadata"].get("creationTimestamp"))
    text = "0001-01-01T00:00:00Z"
    if t:
        text = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [obj["metadata"].get("name", ""), text]


DEFAULT_PRINTER = printers.Printer(
    (printers.NAME, printers.col("Created At", "date", printers.AGE_DESC)), _created_at
)


def printer_for(res: registry.Resource, crd: Obj | None = None) -> printers.Printer:
    """The printer of a resource: a CRD's columns, a built-in printer, or the default. A
    built-in kind served in several versions is printed from its storage version, as kube
    prints the internal one: the same columns whichever version is asked for."""
    if res.crd:
        return crd_printer(crd or {}, res.version)
    p = printers.PRINTERS.get((res.group, res.kind), DEFAULT_PRINTER)
    if res.storage_version and p is not DEFAULT_PRINTER:
        key = (res.group, res.kind, res.storage_api_version)
        stored = _stored_printers.get(key)
        if stored is None:
            stored = _stored_printers[key] = _stored_printer(p, res.storage_api_version)
        return stored
    return p


_stored_printers: dict[tuple[str, str, str], printers.Printer] = {}


def _stored_printer(p: printers.Printer, api_version: str) -> printers.Printer:
    """`p` printing objects converted to `api_version` first."""
    row = p.row

    def converted(obj: Obj, now: float) -> list[Any]:
        return row(conversion.convert(obj, api_version), now)

    cond = p.conditions
    return printers.Printer(
        p.columns,
        converted,
        None if cond is None else lambda obj: cond(conversion.convert(obj, api_version)),
    )


# ---- building tables --------------------------------------------------------------------------


def _rows(
    p: printers.Printer,
    objects: Iterable[cachemod.CachedObject | Obj],
    include: str,
    api_version: str,
    now: float,
    raw: bool,
) -> list[Obj]:
    rows: list[Obj] = []
    width = len(p.columns)
    for o in objects:
        obj = o.obj if isinstance(o, cachemod.CachedObject) else o
        try:
            cells = p.row(obj, now)
        except Exception:  # a malformed stored object must not fail the whole listing
            log.exception("printing %s failed", obj.get("metadata", {}).get("name"))
            cells = [obj.get("metadata", {}).get("name", "")] + [None] * (width - 1)
        row: Obj = {"cells": cells}
        if p.conditions is not None:
            conditions = p.conditions(obj)
            if conditions:
                row["conditions"] = conditions
        if include == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": api_version,
                "metadata": obj["metadata"],
            }
        elif include == "Object":
            if raw and isinstance(o, cachemod.CachedObject):
                row["object"] = orjson.Fragment(o.json)
            else:
                row["object"] = obj
        else:
            row["object"] = None
        rows.append(row)
    return rows


def table(
    res: registry.Resource,
    objects: Iterable[cachemod.CachedObject | Obj],
    *,
    include_object: str = "Metadata",
    list_meta: Obj,
    version: str = "v1",
    crd: Obj | None = None,
    headers: bool = True,
    now: float | None = None,
    raw: bool = False,
) -> Obj:
    """A `Table` of `objects` (rows in order). `list_meta` is its `metadata`; `crd` the CRD
    of a custom resource; `headers=False` leaves `columnDefinitions` null, as in every watch
    event but the first; `raw=True` embeds `CachedObject` JSON bytes as-is (for encoding)."""
    p = printer_for(res, crd)
    api_version = "meta.k8s.io/" + version
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_meta,
        "columnDefinitions": list(p.columns) if headers else None,
        "rows": _rows(
            p, objects, include_object, api_version, time.time() if now is None else now, raw
        ),
    }


def crd_of(st: storemod.Store, res: registry.Resource) -> Obj | None:
    """The CRD that defines a custom resource (from the watch cache)."""
    if not res.crd:
        return None
    o = st.peek(_CRDS, "", f"{res.plural}.{res.group}")
    return o.obj if o is not None else None


def list_response(
    request: web.Request,
    st: storemod.Store,
    res: registry.Resource,
    result: storemod.ListResult,
    version: str,
) -> web.Response:
    """The Table answering a LIST."""
    meta: Obj = {"resourceVersion": str(result.revision)}
    if result.continue_token:
        meta["continue"] = result.continue_token
    if result.remaining:
        meta["remainingItemCount"] = result.remaining
    t = table(
        res,
        result.items,
        include_object=include_object(request),
        list_meta=meta,
        version=version,
        crd=crd_of(st, res),
        raw=True,
    )
    return codec.raw_json_response(orjson.dumps(t))


def object_response(
    request: web.Request,
    st: storemod.Store,
    res: registry.Resource,
    o: cachemod.CachedObject,
    version: str,
) -> web.Response:
    """The one-row Table answering a GET of one object."""
    meta = {"resourceVersion": str(o.obj["metadata"].get("resourceVersion", ""))}
    t = table(
        res,
        [o],
        include_object=include_object(request),
        list_meta=meta,
        version=version,
        crd=crd_of(st, res),
        raw=True,
    )
    return codec.raw_json_response(orjson.dumps(t))


class TableWatch:
    """Encodes watch events as one-row Tables; column definitions go in the first only."""

    def __init__(
        self, res: registry.Resource, st: storemod.Store, version: str, include: str
    ) -> None:
        self.res = res
        self.store = st
        self.version = version
        self.include = include
        self.headers = True

    def frame(self, typ: str, o: cachemod.CachedObject) -> bytes:
        """The `{"type":..,"object":<Table>}` line of one event."""
        meta = {"resourceVersion": str(o.obj["metadata"].get("resourceVersion", ""))}
        t = table(
            self.res,
            [o],
            include_object=self.include,
            list_meta=meta,
            version=self.version,
            crd=crd_of(self.store, self.res),
            headers=self.headers,
            raw=True,
        )
        self.headers = False
        return orjson.dumps({"type": typ, "object": t}) + b"\n"


def watch_table(
    request: web.Request, st: storemod.Store, res: registry.Resource
) -> TableWatch | None:
    """A `TableWatch` when this watch asked for Tables, else None (406 if nothing fits)."""
    version = wanted(request, res)
    if not version:
        return None
    return TableWatch(res, st, version, include_object(request))
