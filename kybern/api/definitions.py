"""The Kubernetes 1.32 type definitions, the one source of the built-in kinds' schemas: loaded
lazily (on first need, once per process, thread-safe) from the `_definitions.json` that the PyPI
package `kubernetes-validate` ships, and brought back from its JSON-Schema dialect to the form
kube-apiserver publishes in OpenAPI v2 (`#/definitions/<name>` references, one `type` per schema,
no `null` unions, no `enum` on `apiVersion`/`kind`, IntOrString and Quantity as strings), with
`v3_schema` for the OpenAPI v3 form (`allOf`-wrapped references, `oneOf` for IntOrString and
Quantity). It answers which definition describes a group/version/kind, which definitions one
reaches, the schemas of a custom resource from its CRD's `openAPIV3Schema`, and the
strategic-merge metadata of a kind: every field path carrying `x-kubernetes-patch-strategy` /
`x-kubernetes-patch-merge-key` (the Go struct tags); and, for server-side apply, the
structured-merge-diff type of a kind or custom resource (`TypeBuilder`) and its Go zero value.
Pure data; no HTTP here."""

from __future__ import annotations

import functools
import importlib.util
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from kybern.api import managedfields as mf

KUBERNETES_VERSION: Final = "v1.32.0"
REF_PREFIX: Final = "#/definitions/"
INT_OR_STRING: Final = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY: Final = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_POD: Final = "io.k8s.api.core.v1.Pod"
_LIST_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_PACKAGE: Final = "kubernetes_validate"
_FILE: Final = ("kubernetes-json-schema", f"{KUBERNETES_VERSION}-local", "_definitions.json")
_SOURCE_REF: Final = "#/$defs/"
# The source describes these two as JSON-Schema `oneOf`s (without their descriptions).
_OVERRIDES: Final[dict[str, dict[str, Any]]] = {
    INT_OR_STRING: {"type": "string", "format": "int-or-string"},
    QUANTITY: {"type": "string"},
}
PatchFields = dict[str, tuple[str, str]]
GVK = tuple[str, str, str]


class DefinitionsUnavailable(RuntimeError):
    """The `kubernetes-validate` package (or its 1.32 definitions file) is not installed."""


def ref_name(ref: str) -> str:
    """The definition name a `$ref` points at (`#/definitions/X` or `#/components/schemas/X`)."""
    return ref.rpartition("/")[2]


def _canon(node: Any, top_level: bool = False) -> Any:
    """One schema node of the source dialect turned into kube-apiserver's OpenAPI v2 form."""
    if isinstance(node, list):
        return [_canon(x) for x in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            if types:
                out["type"] = types[0]
        elif k == "$ref" and isinstance(v, str):
            out["$ref"] = REF_PREFIX + v.removeprefix(_SOURCE_REF)
        elif k == "properties" and isinstance(v, Mapping):
            props = {}
            for name, sub in v.items():
                s = _canon(sub)
                if top_level and name in ("apiVersion", "kind"):
                    s.pop("enum", None)
                props[name] = s
            out["properties"] = props
        elif k in ("items", "additionalProperties", "oneOf", "anyOf", "allOf", "not"):
            out[k] = _canon(v)
        else:
            out[k] = v
    return out


def refs(node: Any, into: set[str]) -> None:
    """Add the definition names that `node` references (at any depth) to `into`."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                into.add(ref_name(v))
            elif k == "properties" and isinstance(v, Mapping):  # names, not keywords
                refs(list(v.values()), into)
            else:
                refs(v, into)
    elif isinstance(node, list):
        for x in node:
            refs(x, into)


def _target(prop: Mapping[str, Any]) -> str:
    """The definition a property's value (or its list elements) is described by, if any."""
    for s in (prop, prop.get("items")):
        if isinstance(s, Mapping):
            if isinstance(s.get("$ref"), str):
                return ref_name(s["$ref"])
            all_of = s.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
                return ref_name(all_of[0]["$ref"])
    return ""


class Definitions:
    """The definitions of one Kubernetes version, indexed by name and by group/version/kind."""

    def __init__(self, source: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> None:
        self.version = version
        self.schemas: dict[str, dict[str, Any]] = {
            name: _OVERRIDES.get(name) or _canon(schema, top_level=True)
            for name, schema in source.items()
        }
        self._by_gvk: dict[GVK, str] = {}
        self._by_kind: dict[str, list[GVK]] = {}
        for name, schema in self.schemas.items():
            gvks = schema.get("x-kubernetes-group-version-kind") or []
            for gvk in gvks:
                key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
                # Shared meta types (DeleteOptions, WatchEvent) claim many GVKs; a kind's own
                # type claims only its own, so it wins when both do.
                if key not in self._by_gvk or len(gvks) == 1:
                    self._by_gvk[key] = name
                self._by_kind.setdefault(key[2], []).append(key)
        self._direct: dict[str, frozenset[str]] = {}
        self._patch: dict[str, PatchFields] = {}
        self._v3: dict[str, dict[str, Any]] = {}

    def v3_schema(self, name: str) -> dict[str, Any]:
        """Definition `name` in OpenAPI v3 form (IntOrString and Quantity as `oneOf`)."""
        s = self._v3.get(name)
        if s is None:
            src = self.schemas[name]
            if name in _V3_OVERRIDES:
                s = {k: v for k, v in src.items() if k != "type"} | _V3_OVERRIDES[name]
            else:
                s = to_v3(src)
            self._v3[name] = s
        return s

    def name_of(self, group: str, version: str, kind: str) -> str | None:
        """The definition describing a group/version/kind (`io.k8s.api.apps.v1.Deployment`)."""
        return self._by_gvk.get((group, version, kind))

    def gvks_of_kind(self, kind: str) -> list[GVK]:
        """Every group/version serving `kind`, stable versions first."""
        return sorted(self._by_kind.get(kind, []), key=lambda g: "alpha" in g[1] or "beta" in g[1])

    def references(self, name: str) -> frozenset[str]:
        """The definitions `name` refers to directly."""
        direct = self._direct.get(name)
        if direct is None:
            found: set[str] = set()
            refs(self.schemas.get(name, {}), found)
            direct = self._direct[name] = frozenset(found & self.schemas.keys())
        return direct

    def closure(self, roots: Iterable[str]) -> set[str]:
        """`roots` (those that exist) and every definition they reach through references."""
        seen: set[str] = set()
        todo = [r for r in roots if r in self.schemas]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.references(name) - seen)
        return seen

    def patch_fields(self, name: str) -> PatchFields:
        """Dotted field paths under definition `name` (list elements collapsed, as `PatchMeta`
        wants them: `spec.containers.env`) -> `(patchStrategy, patchMergeKey)`. Recursive types
        are followed once per path; values of maps (`additionalProperties`) are not walked
        (`PatchMeta` has no path for them): in 1.32 this misses only the `x-kubernetes-validations`
        of a CRD schema's nested `properties`."""
        fields = self._patch.get(name)
        if fields is None:
            fields = {}
            self._walk(name, (), frozenset({name}), fields)
            self._patch[name] = fields
        return fields

    def _walk(
        self, name: str, prefix: tuple[str, ...], stack: frozenset[str], out: PatchFields
    ) -> None:
        for prop, schema in (self.schemas.get(name, {}).get("properties") or {}).items():
            path = (*prefix, prop)
            strategy = schema.get("x-kubernetes-patch-strategy", "")
            if strategy:
                out[".".join(path)] = (strategy, schema.get("x-kubernetes-patch-merge-key", ""))
            target = _target(schema)
            if target and target not in stack:
                self._walk(target, path, stack | {target}, out)

    def kind_patch_fields(self, kind: str, group: str | None = None) -> PatchFields | None:
        """`patch_fields` of the definition of `kind` (in `group` when given, else the first
        stable group/version serving it); None for a kind the definitions do not know."""
        for g, v, _ in self.gvks_of_kind(kind):
            if group is None or g == group:
                name = self.name_of(g, v, kind)
                if name is not None:
                    return self.patch_fields(name)
        return None


_V3_OVERRIDES: Final[dict[str, dict[str, Any]]] = {
    INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
    QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
}
V3_REF_PREFIX: Final = "#/components/schemas/"
_NESTED: Final = ("items", "additionalProperties", "oneOf", "anyOf", "allOf", "not")


def to_v3(node: Any) -> Any:
    """A schema in OpenAPI v2 form turned into v3 form as kube-apiserver publishes it: `$ref`s
    point into `#/components/schemas/`, and a `$ref` with siblings becomes `allOf: [{$ref}]`."""
    if isinstance(node, list):
        return [to_v3(x) for x in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "$ref":
            ref = {"$ref": V3_REF_PREFIX + ref_name(v)}
            if len(node) == 1:
                return ref
            out["allOf"] = [ref]
        elif k == "properties":
            out[k] = {n: to_v3(s) for n, s in v.items()}
        else:
            out[k] = to_v3(v) if k in _NESTED else v
    return out


_V2_DROP: Final = frozenset({"nullable", "oneOf", "anyOf", "allOf", "not"})


def to_v2_structural(node: Any) -> Any:
    """A CRD's structural schema reduced to what Swagger 2.0 can say (no nullable, no
    oneOf/anyOf/allOf/not; int-or-string without a type), as kube-apiserver publishes it."""
    if isinstance(node, list):
        return [to_v2_structural(x) for x in node]
    if not isinstance(node, Mapping):
        return node
    out = {k: to_v2_structural(v) for k, v in node.items() if k not in _V2_DROP}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def crd_schema_name(group: str, version: str, kind: str) -> str:
    """kube-apiserver's name of a custom resource's schema: `com.example.stable.v1.CronTab`."""
    return ".".join([*reversed(group.split(".")), version, kind])


def custom_resource_schemas(
    defs: Definitions, gvk: GVK, list_kind: str, schema: Mapping[str, Any] | None, v3: bool
) -> dict[str, dict[str, Any]]:
    """The published schemas of a custom resource and its list, from the CRD version's
    `openAPIV3Schema`: apiVersion/kind/metadata added (described as for the built-in kinds),
    `x-kubernetes-group-version-kind` set; in v2 form unless `v3`."""
    group, version, kind = gvk
    prefix = V3_REF_PREFIX if v3 else REF_PREFIX
    pod = defs.schemas.get(_POD, {}).get("properties", {})
    pods = defs.schemas.get(_POD + "List", {}).get("properties", {})

    def ref(name: str, like: Mapping[str, Any] | None = None) -> dict[str, Any]:
        doc = (like or {}).get("description")
        if not doc:
            return {"$ref": prefix + name}
        if v3:
            return {"allOf": [{"$ref": prefix + name}], "description": doc}
        return {"$ref": prefix + name, "description": doc}

    base = {k: dict(pod.get(k) or {"type": "string"}) for k in ("apiVersion", "kind")}
    body = dict(schema or {"x-kubernetes-preserve-unknown-fields": True})
    body = body if v3 else to_v2_structural(body)
    name, list_name = crd_schema_name(*gvk), crd_schema_name(group, version, list_kind)
    props = {
        **(body.get("properties") or {}),
        **base,
        "metadata": ref(OBJECT_META, pod.get("metadata")),
    }
    item = {**body, "type": "object", "properties": props}
    item["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    items = {"description": f"List of {kind.lower()}s.", "type": "array", "items": ref(name)}
    meta = ref(_LIST_META, pods.get("metadata"))
    listing = {
        "description": f"{list_kind} is a list of {kind}",
        "properties": {**base, "items": items, "metadata": meta},
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [
            {"group": group, "kind": list_kind, "version": version}
        ],
    }
    return {name: item, list_name: listing}


def source_path() -> Path:
    """Where the installed `kubernetes-validate` keeps the 1.32 definitions (not imported:
    only its data file is used)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefinitionsUnavailable(f"the Python package {_PACKAGE!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_FILE)
    if not path.is_file():
        raise DefinitionsUnavailable(f"{path} is missing")
    return path


_lock = threading.Lock()
_loaded: Definitions | None = None
load_seconds = 0.0  # how long the one load took (reported in docs and logs)


def load() -> Definitions:
    """The 1.32 definitions, read and indexed on the first call (any thread)."""
    global _loaded, load_seconds
    if _loaded is None:
        with _lock:
            if _loaded is None:
                started = time.perf_counter()
                raw = orjson.loads(source_path().read_bytes())
                _loaded = Definitions(raw.get("$defs") or raw.get("definitions") or {})
                load_seconds = time.perf_counter() - started
    return _loaded


def is_loaded() -> bool:
    return _loaded is not None


# ---- structured-merge-diff types (server-side apply) ------------------------------------------

_RAW_EXTENSION: Final = "io.k8s.apimachinery.pkg.runtime.RawExtension"
# `+default` markers of list-map key fields (kubernetes-validate does not carry `default`)
_KEY_DEFAULTS: Final[dict[tuple[str, str], Any]] = {
    ("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.EndpointPort", "protocol"): "TCP",
    ("io.k8s.api.discovery.v1.EndpointPort", "protocol"): "TCP",
}
# struct-valued fields that are Go values, not pointers: present (empty) in a zero object
_EMBEDDED: Final = frozenset(
    {"metadata", "spec", "status", "template", "strategy", "updateStrategy", "jobTemplate"}
)
_POINTERS: Final = frozenset({("io.k8s.api.core.v1.ReplicationControllerSpec", "template")})


def _list_relationship(s: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(atomic|set|map, keys) of an array schema, as kube-openapi's schemaconv decides."""
    lt = s.get("x-kubernetes-list-type")
    if lt in ("set", "map"):
        return lt, tuple(s.get("x-kubernetes-list-map-keys") or ()) if lt == "map" else ()
    if lt is None and s.get("x-kubernetes-patch-strategy") in ("merge", "merge,retainKeys"):
        key = s.get("x-kubernetes-patch-merge-key")
        return ("map", (key,)) if key else ("set", ())
    return "atomic", ()


class TypeBuilder:
    """Turns schemas (the 1.32 definitions, or a CRD's `openAPIV3Schema`) into
    `managedfields.Atom`s the way kube-openapi's schemaconv does: objects with properties are
    structs (`x-kubernetes-map-type: atomic` makes them one value), `additionalProperties` give
    map values, lists follow `x-kubernetes-list-type`/`-map-keys` or else the patch strategy
    (merge with a key: map, without: set; default atomic), IntOrString and Quantity are scalars,
    RawExtension is untyped, and anything without a type is deduced from its value."""

    def __init__(self, defs: Definitions | None) -> None:
        self.defs = defs
        self._named: dict[str, Any] = {}

    def named(self, name: str) -> Any:
        a = self._named.get(name)
        if a is None:
            if name in (INT_OR_STRING, QUANTITY):
                a = mf.Atom(scalar=True)
            elif name == _RAW_EXTENSION or self.defs is None:
                a = mf.UNTYPED
            else:
                a = self._named[name] = mf.Atom()  # filled in place: schemas are recursive
                self._fill(a, self.defs.schemas.get(name) or {}, False)
            self._named[name] = a
        return a

    def node(self, s: Mapping[str, Any], preserve: bool) -> Any:
        ref = _target(s) if "items" not in s else ""
        if ref:
            a = self.named(ref)
            mt = s.get("x-kubernetes-map-type")
            if mt in ("atomic", "granular") and a.is_map and a.atomic != (mt == "atomic"):
                a = copy_atom(a, atomic=mt == "atomic")
            return a
        a = mf.Atom()
        self._fill(a, s, preserve)
        return a

    def _fill(self, a: Any, s: Mapping[str, Any], preserve: bool) -> None:
        preserve = preserve or bool(s.get("x-kubernetes-preserve-unknown-fields"))
        typ = s.get("type") or ""
        if s.get("x-kubernetes-int-or-string") or typ in ("string", "integer", "number", "boolean"):
            a.scalar = True
        elif typ == "array":
            a.is_list = True
            items = s.get("items")
            a.list_type, a.keys = _list_relationship(s)
            if isinstance(items, Mapping) and items:
                a._elem = lambda: self.node(items, preserve)
                a.key_defaults = self._key_defaults(items, a.keys)
            else:
                a._elem = mf.UNTYPED
        elif typ == "object" or "properties" in s or "additionalProperties" in s:
            a.is_map = True
            props = s.get("properties") or {}
            a.fields = {n: functools.partial(self.node, sub, preserve) for n, sub in props.items()}
            extra = s.get("additionalProperties")
            if isinstance(extra, Mapping) and extra:
                a._elem = functools.partial(self.node, extra, preserve)
            a.atomic = s.get("x-kubernetes-map-type") == "atomic"
        else:
            a.scalar = a.is_map = a.is_list = True  # no type: deduced from the value
            a._elem = mf.DEDUCED

    def _key_defaults(self, items: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        target = _target(items)
        props = (self.defs.schemas.get(target, {}) if target and self.defs else items).get(
            "properties"
        ) or {}
        out = {}
        for k in keys:
            if (target, k) in _KEY_DEFAULTS:
                out[k] = _KEY_DEFAULTS[(target, k)]
            elif isinstance(props.get(k), Mapping) and "default" in props[k]:
                out[k] = props[k]["default"]
        return out

    def custom_resource(self, schema: Mapping[str, Any] | None) -> Any:
        """A custom resource's type: its CRD schema with standard apiVersion/kind/metadata."""
        root = self.node(schema or {"x-kubernetes-preserve-unknown-fields": True}, False)
        if not root.is_map:
            root = mf.Atom(is_map=True, elem=mf.DEDUCED)
        root = copy_atom(root)
        root.fields = dict(root.fields)
        root.fields["apiVersion"] = root.fields["kind"] = mf.Atom(scalar=True)
        root.fields["metadata"] = functools.partial(self.named, OBJECT_META)
        return root


def copy_atom(a: Any, **changes: Any) -> Any:
    b = mf.Atom()
    for slot in mf.Atom.__slots__:
        setattr(b, slot, changes.get(slot, getattr(a, slot)))
    return b


_builders: dict[int, TypeBuilder] = {}


def kind_type(defs: Definitions, group: str, version: str, kind: str) -> Any:
    """The structured-merge-diff type of a built-in kind (None for a kind not defined)."""
    name = defs.name_of(group, version, kind)
    if name is None:
        return None
    builder = _builders.get(id(defs))
    if builder is None or builder.defs is not defs:
        builder = _builders[id(defs)] = TypeBuilder(defs)
    return builder.named(name)


def zero_object(defs: Definitions, name: str, depth: int = 0) -> dict[str, Any]:
    """What Go's zero value of definition `name` looks like to structured-merge-diff: struct
    fields that are values (metadata, spec, status, template, strategy ...) are empty objects,
    required lists and maps are null; the rest is absent."""
    out: dict[str, Any] = {}
    schema = defs.schemas.get(name) or {}
    required = set(schema.get("required") or ())
    for prop, sub in (schema.get("properties") or {}).items():
        target = _target(sub) if "items" not in sub else ""
        struct = bool(target) and "properties" in (defs.schemas.get(target) or {})
        if struct and prop in _EMBEDDED and (name, prop) not in _POINTERS:
            out[prop] = zero_object(defs, target, depth + 1) if depth < 8 else {}
        elif prop in required and sub.get("type") not in ("string", "integer", "number", "boolean"):
            out[prop] = None  # a nil slice, map or pointer
    return out
