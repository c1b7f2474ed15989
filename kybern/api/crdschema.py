"""Custom resource schemas: a CRD version's `openAPIV3Schema` compiled once into a tree of
`Node`s, then used to validate values with Kubernetes' OpenAPI semantics and wording (type,
format, enum, pattern with RE2 semantics, bounds, lengths, list types, junctors, embedded
resources, ...). Pruning and defaulting are in `crdschema_apply`; checks of the schema itself
(structural rules) in `crdschema_check` and `crdschema_structural`; CEL rules in `cel`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
import re2 as _re  # Go's regexp is RE2: patterns like (?=...) are invalid there too

from kybern.api import crdschema_formats, errors, validation

Obj = dict[str, Any]
FieldErrors = list[errors.FieldError]
MISSING: Any = object()
TYPE_INVALID = "FieldValueTypeInvalid"
TOO_MANY = "FieldValueTooMany"
# fields of ObjectMeta: anything else in `metadata` is unknown (pruned, and reported)
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def compile_regex(pattern: str) -> Any:
    """The compiled RE2 pattern; raises ValueError with the parser's message."""
    try:
        return _re.compile(pattern)
    except Exception as e:
        raise ValueError(f"error parsing regexp: {e}") from None


class Pattern:
    """An RE2 pattern for `search`-style tests; calls RE2's matcher directly when the binding
    allows (its Python-level `search` costs ~8x more than the match itself)."""

    __slots__ = ("_fast", "compiled")

    def __init__(self, pattern: str) -> None:
        self.compiled = compile_regex(pattern)
        regexp = getattr(self.compiled, "_regexp", None)
        anchor = getattr(getattr(_re, "_Anchor", None), "UNANCHORED", None)
        null = getattr(_re, "_NULL_SPAN", None)
        self._fast: Any = None
        if regexp is not None and anchor is not None and null is not None:
            self._fast = (regexp.Match, anchor, null)

    def matches(self, text: str) -> bool:
        if self._fast is not None:
            match, anchor, null = self._fast
            data = text.encode()
            return bool(match(anchor, data, 0, len(data))[0] != null)
        return self.compiled.search(text) is not None


@dataclass(eq=False, slots=True)
class Node:
    """One schema: its keywords, children and the vendor extensions that matter at run time.
    `rules` holds compiled CEL rules (set by `kybern.api.cel`)."""

    type: str = ""
    format: str = ""
    nullable: bool = False
    properties: dict[str, Node] | None = None
    additional: Node | None = None
    additional_bool: bool | None = None
    items: Node | None = None
    required: tuple[str, ...] = ()
    enum: list[Any] | None = None
    pattern: Any = None
    pattern_src: str = ""
    maximum: float | None = None
    exclusive_maximum: bool = False
    minimum: float | None = None
    exclusive_minimum: bool = False
    multiple_of: float | None = None
    max_length: int | None = None
    min_length: int | None = None
    max_items: int | None = None
    min_items: int | None = None
    unique_items: bool = False
    max_properties: int | None = None
    min_properties: int | None = None
    all_of: list[Node] = field(default_factory=list)
    any_of: list[Node] = field(default_factory=list)
    one_of: list[Node] = field(default_factory=list)
    not_: Node | None = None
    preserve_unknown: bool = False
    int_or_string: bool = False
    embedded: bool = False
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()
    map_type: str = ""
    default: Any = MISSING
    has_defaults: bool = False  # a default somewhere in this subtree
    checks: int = 0  # bit set of the checks this node needs (computed by compile_schema)
    enum_strings: frozenset[str] | None = None  # a string-only enum, for a quick lookup
    rules: list[Any] = field(default_factory=list)
    rule_fields: dict[str, str] | None = None  # members the rules select: CEL name -> key
    rule_children: list[tuple[str, Node]] = field(default_factory=list)  # properties with rules
    has_rules: bool = False  # CEL rules somewhere in this subtree
    raw: Obj = field(default_factory=dict)

    @property
    def struct(self) -> bool:
        """An object with declared properties (unknown keys are pruned unless preserved)."""
        return self.properties is not None

    def child(self, key: str) -> Node | None:
        """The schema of member `key` of an object value."""
        if self.properties is not None and key in self.properties:
            return self.properties[key]
        return self.additional


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def compile_schema(raw: Any) -> Node:
    """Compile an `openAPIV3Schema` (a dict; anything else gives an empty schema). Bad
    patterns compile to None here; `crdschema_check` reports them."""
    if not isinstance(raw, dict):
        return Node()
    n = Node(raw=raw)
    n.type = str(raw["type"]) if isinstance(raw.get("type"), str) else ""
    n.format = str(raw["format"]) if isinstance(raw.get("format"), str) else ""
    n.nullable = raw.get("nullable") is True
    props = raw.get("properties")
    if isinstance(props, dict) and props:
        n.properties = {k: compile_schema(v) for k, v in props.items()}
    ap = raw.get("additionalProperties")
    if isinstance(ap, dict):
        n.additional = compile_schema(ap)
    elif isinstance(ap, bool):
        n.additional_bool = ap
    if isinstance(raw.get("items"), dict):
        n.items = compile_schema(raw["items"])
    req = raw.get("required")
    if isinstance(req, list):
        n.required = tuple(r for r in req if isinstance(r, str))
    if isinstance(raw.get("enum"), list):
        n.enum = list(raw["enum"])
    if isinstance(raw.get("pattern"), str):
        n.pattern_src = raw["pattern"]
        try:
            n.pattern = Pattern(n.pattern_src)
        except ValueError:
            n.pattern = None
    n.maximum, n.minimum = _num(raw.get("maximum")), _num(raw.get("minimum"))
    n.exclusive_maximum = raw.get("exclusiveMaximum") is True
    n.exclusive_minimum = raw.get("exclusiveMinimum") is True
    mo = _num(raw.get("multipleOf"))
    n.multiple_of = mo if mo else None
    n.max_length, n.min_length = _int(raw.get("maxLength")), _int(raw.get("minLength"))
    n.max_items, n.min_items = _int(raw.get("maxItems")), _int(raw.get("minItems"))
    n.max_properties = _int(raw.get("maxProperties"))
    n.min_properties = _int(raw.get("minProperties"))
    n.unique_items = raw.get("uniqueItems") is True
    for key, attr in (("allOf", "all_of"), ("anyOf", "any_of"), ("oneOf", "one_of")):
        if isinstance(raw.get(key), list):
            setattr(n, attr, [compile_schema(s) for s in raw[key]])
    if isinstance(raw.get("not"), dict):
        n.not_ = compile_schema(raw["not"])
    n.preserve_unknown = raw.get("x-kubernetes-preserve-unknown-fields") is True
    n.int_or_string = raw.get("x-kubernetes-int-or-string") is True
    n.embedded = raw.get("x-kubernetes-embedded-resource") is True
    lt = raw.get("x-kubernetes-list-type")
    n.list_type = lt if isinstance(lt, str) else ""
    keys = raw.get("x-kubernetes-list-map-keys")
    if isinstance(keys, list):
        n.list_map_keys = tuple(k for k in keys if isinstance(k, str))
    mt = raw.get("x-kubernetes-map-type")
    n.map_type = mt if isinstance(mt, str) else ""
    if "default" in raw:
        n.default = raw["default"]
    kids = [*(n.properties or {}).values(), n.additional, n.items]
    n.checks = (
        (_STR if n.max_length is not None or n.min_length is not None else 0)
        | (_STR if n.pattern is not None or n.format else 0)
        | (_NUM if n.maximum is not None or n.minimum is not None or n.multiple_of else 0)
        | (_JUNCTORS if n.all_of or n.any_of or n.one_of or n.not_ is not None else 0)
    )
    if n.enum is not None and all(isinstance(e, str) for e in n.enum):
        n.enum_strings = frozenset(n.enum)
    n.has_defaults = n.default is not MISSING or any(k is not None and k.has_defaults for k in kids)
    return n


# ---- value validation ---------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, as Kubernetes' messages print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_text(value: Any) -> str:
    """A value as Go's %v prints it in messages (numbers without a needless `.0`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


_STR, _NUM, _JUNCTORS = 1, 2, 4
_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


def _type_ok(t: str, value: Any) -> bool:
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if t == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float))
    return True


def _type_error(path: str, want: str, value: Any) -> errors.FieldError:
    got = json_type(value)
    return errors.FieldError(
        TYPE_INVALID,
        path,
        f'Invalid value: "{got}": {path or "body"} in body must be of type {want}: "{got}"',
    )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    return bool(a == b)


def _key(value: Any) -> Any:
    """A hashable form of a JSON value (for set and map list duplicate checks)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Validator:
    """Validates a value against a compiled schema; `errs` collects FieldErrors."""

    def __init__(self) -> None:
        self.errs: FieldErrors = []

    def validate(self, n: Node, value: Any, path: str, root: bool = False) -> None:
        errs = self.errs
        if value is None:
            if n.nullable or (not n.type and not n.int_or_string):
                return
            errs.append(_type_error(path, n.type or "integer,string", value))
            return
        t = n.type
        if n.int_or_string:
            if not (isinstance(value, str) or (_type_ok("integer", value))):
                errs.append(_type_error(path, "integer,string", value))
                return
        elif t:
            py = _PY_TYPES.get(t)
            if not (isinstance(value, py) if py is not None else _type_ok(t, value)):
                errs.append(_type_error(path, t, value))
                return
        if n.enum is not None:
            if n.enum_strings is not None and isinstance(value, str):
                ok = value in n.enum_strings
            else:
                ok = any(_equal(value, e) for e in n.enum)
            if not ok:
                errs.append(errors.not_supported(path, value, [go_text(e) for e in n.enum]))
        checks = n.checks
        if isinstance(value, str):
            if checks & _STR:
                self._string(n, value, path)
        elif isinstance(value, dict):
            self._object(n, value, path, root)
        elif isinstance(value, list):
            self._array(n, value, path)
        elif checks & _NUM and isinstance(value, (int, float)) and not isinstance(value, bool):
            self._number(n, value, path)
        if checks & _JUNCTORS:
            self._junctors(n, value, path, root)

    def _string(self, n: Node, value: str, path: str) -> None:
        name = path or "body"
        if n.max_length is not None and len(value) > n.max_length:
            self.errs.append(errors.too_long(path, value, n.max_length))
        if n.min_length is not None and len(value) < n.min_length:
            self.errs.append(
                errors.invalid_value(
                    path, value, f"{name} in body should be at least {n.min_length} chars long"
                )
            )
        if n.pattern is not None and not n.pattern.matches(value):
            self.errs.append(
                errors.invalid_value(path, value, f"{name} in body should match '{n.pattern_src}'")
            )
        if n.format and not crdschema_formats.check(n.format, value):
            detail = f"{name} in body must be of type {n.format}: {errors._quote(value)}"
            self.errs.append(errors.invalid_value(path, value, detail))

    def _number(self, n: Node, value: float, path: str) -> None:
        name = path or "body"
        if n.maximum is not None:
            if n.exclusive_maximum and value >= n.maximum:
                detail = f"{name} in body should be less than {go_text(n.maximum)}"
                self.errs.append(errors.invalid_value(path, value, detail))
            elif value > n.maximum:
                detail = f"{name} in body should be less than or equal to {go_text(n.maximum)}"
                self.errs.append(errors.invalid_value(path, value, detail))
        if n.minimum is not None:
            if n.exclusive_minimum and value <= n.minimum:
                detail = f"{name} in body should be greater than {go_text(n.minimum)}"
                self.errs.append(errors.invalid_value(path, value, detail))
            elif value < n.minimum:
                detail = f"{name} in body should be greater than or equal to {go_text(n.minimum)}"
                self.errs.append(errors.invalid_value(path, value, detail))
        if n.multiple_of:
            q = value / n.multiple_of
            if not math.isfinite(q) or abs(q - round(q)) > 1e-9:
                detail = f"{name} in body should be a multiple of {go_text(n.multiple_of)}"
                self.errs.append(errors.invalid_value(path, value, detail))

    def _object(self, n: Node, value: Obj, path: str, root: bool) -> None:
        name = path or "body"
        if n.max_properties is not None and len(value) > n.max_properties:
            self.errs.append(
                errors.FieldError(
                    TOO_MANY,
                    path,
                    f"Too many: {len(value)}: must have at most {n.max_properties} items",
                )
            )
        if n.min_properties is not None and len(value) < n.min_properties:
            detail = f"{name} in body should have at least {n.min_properties} properties"
            self.errs.append(errors.invalid_value(path, len(value), detail))
        for r in n.required:
            if r not in value:
                self.errs.append(errors.required(join(path, r)))
        if n.embedded:
            self._embedded(value, path)
        for k, v in value.items():
            if (root or n.embedded) and k == "metadata":
                continue  # ObjectMeta: validated as metadata
            child = n.properties.get(k) if n.properties is not None else None
            if child is None:
                child = n.additional
            if child is not None:
                self.validate(child, v, join(path, k))

    def _embedded(self, value: Obj, path: str) -> None:
        for f in ("apiVersion", "kind"):
            if not value.get(f):
                self.errs.append(errors.required(join(path, f), "must not be empty"))
        meta = value.get("metadata")
        mpath = join(path, "metadata")
        if meta is None:
            return
        if not isinstance(meta, dict):
            self.errs.append(_type_error(mpath, "object", meta))
            return
        name = meta.get("name")
        if isinstance(name, str) and name:
            for msg in validation.is_dns1123_subdomain(name):
                self.errs.append(errors.invalid_value(join(mpath, "name"), name, msg))
        self.errs.extend(validation.validate_labels(meta.get("labels"), join(mpath, "labels")))

    def _array(self, n: Node, value: list[Any], path: str) -> None:
        name = path or "body"
        if n.max_items is not None and len(value) > n.max_items:
            self.errs.append(
                errors.FieldError(
                    TOO_MANY, path, f"Too many: {len(value)}: must have at most {n.max_items} items"
                )
            )
            return  # a list too long is not looked at item by item
        if n.min_items is not None and len(value) < n.min_items:
            detail = f"{name} in body should have at least {n.min_items} items"
            self.errs.append(errors.invalid_value(path, len(value), detail))
        if n.unique_items and len({_key(v) for v in value}) != len(value):
            self.errs.append(
                errors.invalid_value(path, value, f"{name} in body shouldn't contain duplicates")
            )
        if n.items is not None:
            for i, v in enumerate(value):
                self.validate(n.items, v, f"{path}[{i}]")
        if n.list_type == "set":
            seen: set[Any] = set()
            for i, v in enumerate(value):
                k = _key(v)
                if k in seen:
                    self.errs.append(errors.duplicate(f"{path}[{i}]", v))
                seen.add(k)
        elif n.list_type == "map" and n.list_map_keys:
            seen = set()
            for i, v in enumerate(value):
                if not isinstance(v, dict):
                    continue
                k = tuple(_key(v.get(mk)) for mk in n.list_map_keys)
                if k in seen:
                    keys = {mk: v.get(mk) for mk in n.list_map_keys if mk in v}
                    self.errs.append(
                        errors.FieldError(
                            "FieldValueDuplicate",
                            f"{path}[{i}]",
                            f"Duplicate value: {orjson.dumps(keys).decode()}",
                        )
                    )
                seen.add(k)

    def _junctors(self, n: Node, value: Any, path: str, root: bool) -> None:
        shown = value if not isinstance(value, (dict, list)) else json_type(value)
        for s in n.all_of:
            self.validate(s, value, path, root)
        if n.any_of:
            collected: FieldErrors = []
            for s in n.any_of:
                sub = Validator()
                sub.validate(s, value, path, root)
                if not sub.errs:
                    break
                collected.extend(sub.errs)
            else:
                self.errs.append(
                    errors.invalid_value(path, shown, "must validate at least one schema (anyOf)")
                )
                self.errs.extend(_dedup(collected))
        if n.one_of:
            valid = 0
            collected = []
            for s in n.one_of:
                sub = Validator()
                sub.validate(s, value, path, root)
                if sub.errs:
                    collected.extend(sub.errs)
                else:
                    valid += 1
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                self.errs.append(
                    errors.invalid_value(
                        path, shown, f"must validate one and only one schema (oneOf). {found}"
                    )
                )
                if valid == 0:
                    self.errs.extend(_dedup(collected))
        if n.not_ is not None:
            sub = Validator()
            sub.validate(n.not_, value, path, root)
            if not sub.errs:
                self.errs.append(
                    errors.invalid_value(path, shown, "must not validate the schema (not)")
                )


def _dedup(errs: FieldErrors) -> FieldErrors:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errs:
        if (e.field, e.message) not in seen:
            seen.add((e.field, e.message))
            out.append(e)
    return out


def validate(n: Node, value: Any, path: str = "", root: bool = True) -> FieldErrors:
    """Errors of `value` against schema `n` (the whole object when `root`)."""
    v = Validator()
    v.validate(n, value, path, root)
    return v.errs


def blocking(errs: FieldErrors) -> bool:
    """Errors after which CEL rules are not evaluated (wrong types, too many items)."""
    return any(e.reason in (TYPE_INVALID, TOO_MANY) for e in errs)
