"""The structural-schema rules of a CRD version's `openAPIV3Schema`, with Kubernetes'
messages' meaning: a type everywhere (except under x-kubernetes-int-or-string or
-preserve-unknown-fields), no `$ref` and other unsupported keywords, no `additionalProperties`
with `properties`, only name/generateName restrictions in metadata, value validations only in
allOf/anyOf/oneOf/not (and nothing there that the structure lacks), consistent
`x-kubernetes-*` extensions (list and map types, list map keys), valid RE2 patterns, defaults
that validate and hold no unknown fields; then the CEL rules compile within their costs."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import cel, crdschema, crdschema_apply, errors

Obj = dict[str, Any]
FieldErrors = list[errors.FieldError]
TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_UNSUPPORTED = ("$ref", "$schema", "definitions", "id", "patternProperties", "dependencies")
_JUNCTORS = ("allOf", "anyOf", "oneOf")
_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("externalDocs", "must be undefined to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ---- the schema -------------------------------------------------------------------------------


def validate_schema(raw: Obj, path: str) -> FieldErrors:
    """Structural-schema and OpenAPI errors of one `openAPIV3Schema`, then (if structural) the
    defaults and the CEL rules."""
    errs: FieldErrors = []
    _walk(raw, path, "root", "", errs)
    _complete(raw, path, errs)
    if errs:
        return errs
    node = crdschema.compile_schema(raw)
    _defaults(node, path, "", errs)
    cel_errs, _ = cel.compile_rules(node, path)
    return errs + cel_errs


def _walk(s: Any, path: str, level: str, vpath: str, errs: FieldErrors) -> None:
    if not isinstance(s, dict):
        errs.append(errors.invalid_value(path, s, "must be an object"))
        return
    for key in _UNSUPPORTED:
        if key in s:
            errs.append(errors.forbidden(f"{path}.{key}", f"{key} is not supported"))
    typ = s.get("type", "")
    ios = s.get("x-kubernetes-int-or-string") is True
    pres = s.get("x-kubernetes-preserve-unknown-fields")
    emb = s.get("x-kubernetes-embedded-resource") is True
    if typ and typ not in TYPES:
        errs.append(errors.not_supported(f"{path}.type", typ, TYPES))
    if pres is False:
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"
            )
        )
    if s.get("uniqueItems") is True:
        errs.append(
            errors.forbidden(
                f"{path}.uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    props = s.get("properties")
    ap = s.get("additionalProperties")
    if ap is not None and props and (ap is False or isinstance(ap, dict)):
        errs.append(
            errors.forbidden(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if isinstance(s.get("items"), list):
        errs.append(
            errors.forbidden(f"{path}.items", "items must be a schema object and not an array")
        )
    if emb and typ != "object":
        if not typ:
            errs.append(
                errors.required(
                    f"{path}.type", "must be object if x-kubernetes-embedded-resource is true"
                )
            )
        else:
            errs.append(
                errors.invalid_value(
                    f"{path}.type", typ, "must be object if x-kubernetes-embedded-resource is true"
                )
            )
    elif not typ and not ios and pres is not True:
        what = {
            "root": "must not be empty at the root",
            "items": "must not be empty for specified array items",
            "field": "must not be empty for specified object fields",
        }[level]
        errs.append(errors.required(f"{path}.type", what))
    if ios and typ:
        errs.append(
            errors.invalid_value(
                f"{path}.type", typ, "must be empty if x-kubernetes-int-or-string is true"
            )
        )
    if ios and pres is True:
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-preserve-unknown-fields",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if ios and emb:
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-embedded-resource",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if level == "root" and typ and typ != "object":
        errs.append(errors.invalid_value(f"{path}.type", typ, "must be object at the root"))
    if ap is not None and level == "root":
        errs.append(
            errors.forbidden(f"{path}.additionalProperties", "must not be used at the root")
        )
    if emb and ap is not None:
        errs.append(
            errors.forbidden(
                f"{path}.additionalProperties",
                "must not be used if x-kubernetes-embedded-resource is set",
            )
        )
    if emb and pres is not True and not props:
        errs.append(
            errors.required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )
    if typ == "array" and "items" not in s:
        errs.append(errors.required(f"{path}.items", "must be specified"))
    if isinstance(s.get("pattern"), str):
        try:
            crdschema.compile_regex(s["pattern"])
        except ValueError as e:
            errs.append(
                errors.invalid_value(
                    f"{path}.pattern",
                    s["pattern"],
                    f"must be a valid regular expression, but isn't: {e}",
                )
            )
    _extensions(s, path, typ, errs)
    meta_level = level == "root" or emb
    if isinstance(props, dict):
        for k in ("kind", "apiVersion"):
            if meta_level and isinstance(props.get(k), dict) and props[k].get("type") != "string":
                errs.append(
                    errors.invalid_value(
                        f"{path}.properties[{k}].type", props[k].get("type", ""), "must be string"
                    )
                )
        meta = props.get("metadata")
        if isinstance(meta, dict):
            mpath = f"{path}.properties[metadata]"
            if meta_level and meta.get("type") != "object":
                errs.append(
                    errors.invalid_value(f"{mpath}.type", meta.get("type", ""), "must be object")
                )
            if level == "root":
                rest = {k: v for k, v in meta.items() if k not in ("type", "properties", "default")}
                mprops = meta.get("properties") or {}
                if rest or (isinstance(mprops, dict) and set(mprops) - {"name", "generateName"}):
                    errs.append(
                        errors.forbidden(
                            mpath,
                            "must not specify anything other than name and generateName, but "
                            "metadata is implicitly specified",
                        )
                    )
        for k, v in props.items():
            _walk(v, f"{path}.properties[{k}]", "field", crdschema.join(vpath, k), errs)
    if isinstance(ap, dict):
        _walk(ap, f"{path}.additionalProperties", "field", vpath, errs)
    if isinstance(s.get("items"), dict):
        _walk(s["items"], f"{path}.items", "items", f"{vpath}[0]", errs)
    skip_any = ios and s.get("anyOf") == _INT_OR_STRING
    for j in _JUNCTORS:
        for i, sub in enumerate(_l(s.get(j))):
            if j == "anyOf" and skip_any:
                continue
            if j == "allOf" and i == 0 and ios and _d(sub).get("anyOf") == _INT_OR_STRING:
                sub = {k: v for k, v in _d(sub).items() if k != "anyOf"}
            _nested(sub, f"{path}.{j}[{i}]", errs)
    if "not" in s:
        _nested(s["not"], f"{path}.not", errs)


def _extensions(s: Obj, path: str, typ: str, errs: FieldErrors) -> None:
    lt = s.get("x-kubernetes-list-type")
    keys = s.get("x-kubernetes-list-map-keys")
    mt = s.get("x-kubernetes-map-type")
    if mt is not None:
        if mt not in ("granular", "atomic"):
            errs.append(
                errors.not_supported(f"{path}.x-kubernetes-map-type", mt, ["granular", "atomic"])
            )
        elif typ != "object":
            errs.append(
                errors.invalid_value(
                    f"{path}.type", typ, "must be object if x-kubernetes-map-type is specified"
                )
            )
    if lt is not None and lt not in ("atomic", "set", "map"):
        errs.append(
            errors.not_supported(f"{path}.x-kubernetes-list-type", lt, ["atomic", "set", "map"])
        )
        return
    if lt is not None and typ != "array":
        errs.append(
            errors.invalid_value(
                f"{path}.type", typ, "must be array if x-kubernetes-list-type is specified"
            )
        )
        return
    items = _d(s.get("items"))
    if keys and lt != "map":
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-list-type",
                lt,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )
        )
    if (
        lt == "set"
        and items.get("type") == "object"
        and items.get("x-kubernetes-map-type") != "atomic"
    ):
        errs.append(
            errors.invalid_value(
                f"{path}.items.x-kubernetes-map-type",
                items.get("x-kubernetes-map-type", "granular"),
                "must be atomic as item of a list with x-kubernetes-list-type=set",
            )
        )
    if (
        lt == "set"
        and items.get("type") == "array"
        and items.get("x-kubernetes-list-type", "atomic") != "atomic"
    ):
        errs.append(
            errors.invalid_value(
                f"{path}.items.x-kubernetes-list-type",
                items.get("x-kubernetes-list-type"),
                "must be atomic as item of a list with x-kubernetes-list-type=set",
            )
        )
    if lt != "map":
        return
    if not keys:
        errs.append(
            errors.required(
                f"{path}.x-kubernetes-list-map-keys",
                "must not be empty if x-kubernetes-list-type is map",
            )
        )
        return
    if items.get("type") != "object":
        errs.append(
            errors.invalid_value(
                f"{path}.items.type",
                items.get("type", ""),
                "must be object when x-kubernetes-list-type is map",
            )
        )
        return
    if len(set(map(str, keys))) != len(keys):
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-list-map-keys", keys, "must not contain duplicate entries"
            )
        )
    iprops = _d(items.get("properties"))
    if any(k not in iprops for k in keys):
        errs.append(
            errors.invalid_value(
                f"{path}.x-kubernetes-list-map-keys",
                keys,
                "entries must all be names of item properties",
            )
        )
        return
    required = set(_l(items.get("required")))
    for k in keys:
        ks = _d(iprops[k])
        kpath = f"{path}.items.properties[{k}]"
        if ks.get("type") not in ("string", "integer", "number", "boolean") and not ks.get(
            "x-kubernetes-int-or-string"
        ):
            errs.append(
                errors.invalid_value(
                    f"{kpath}.type",
                    ks.get("type", ""),
                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                )
            )
        if k not in required and "default" not in ks:
            errs.append(
                errors.required(
                    f"{kpath}.default",
                    "this property is in x-kubernetes-list-map-keys, so it must have a default "
                    "or be a required property",
                )
            )
        if ks.get("nullable") is True:
            errs.append(
                errors.forbidden(
                    f"{kpath}.nullable",
                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                )
            )


def _nested(s: Any, path: str, errs: FieldErrors) -> None:
    """A schema under allOf/anyOf/oneOf/not: value validation only, no structure."""
    if not isinstance(s, dict):
        errs.append(errors.invalid_value(path, s, "must be an object"))
        return
    for key, msg in _NESTED_FORBIDDEN:
        if key in s and s[key] not in (None, False, "", []):
            errs.append(errors.forbidden(f"{path}.{key}", msg))
    if s.get("nullable") is True:
        errs.append(errors.forbidden(f"{path}.nullable", "must be false to be structural"))
    props = _d(s.get("properties"))
    if "metadata" in props:
        errs.append(
            errors.forbidden(
                f"{path}.properties[metadata]", "must not be specified in a nested context"
            )
        )
    for k, v in props.items():
        _nested(v, f"{path}.properties[{k}]", errs)
    if isinstance(s.get("items"), dict):
        _nested(s["items"], f"{path}.items", errs)
    for j in _JUNCTORS:
        for i, sub in enumerate(_l(s.get(j))):
            _nested(sub, f"{path}.{j}[{i}]", errs)
    if "not" in s:
        _nested(s["not"], f"{path}.not", errs)
    if isinstance(s.get("pattern"), str):
        try:
            crdschema.compile_regex(s["pattern"])
        except ValueError as e:
            errs.append(
                errors.invalid_value(
                    f"{path}.pattern",
                    s["pattern"],
                    f"must be a valid regular expression, but isn't: {e}",
                )
            )


def _complete(s: Any, path: str, errs: FieldErrors) -> None:
    """Every property or items a junctor mentions exists in the structural part too."""
    if not isinstance(s, dict):
        return

    def check(structural: Obj, v: Obj, spath: str, vpath: str) -> None:
        for k, sub in _d(v.get("properties")).items():
            target = _d(structural.get("properties")).get(k)
            if not isinstance(target, dict):
                errs.append(
                    errors.required(
                        f"{spath}.properties[{k}]",
                        f"because it is defined in {vpath}.properties[{k}]",
                    )
                )
            else:
                check(target, _d(sub), f"{spath}.properties[{k}]", f"{vpath}.properties[{k}]")
        if isinstance(v.get("items"), dict):
            if not isinstance(structural.get("items"), dict):
                errs.append(
                    errors.required(f"{spath}.items", f"because it is defined in {vpath}.items")
                )
            else:
                check(structural["items"], v["items"], f"{spath}.items", f"{vpath}.items")
        for j in _JUNCTORS:
            for i, sub in enumerate(_l(v.get(j))):
                check(structural, _d(sub), spath, f"{vpath}.{j}[{i}]")
        if isinstance(v.get("not"), dict):
            check(structural, v["not"], spath, f"{vpath}.not")

    for j in _JUNCTORS:
        for i, sub in enumerate(_l(s.get(j))):
            check(s, _d(sub), path, f"{path}.{j}[{i}]")
    if isinstance(s.get("not"), dict):
        check(s, s["not"], path, f"{path}.not")
    for k, sub in _d(s.get("properties")).items():
        _complete(sub, f"{path}.properties[{k}]", errs)
    if isinstance(s.get("items"), dict):
        _complete(s["items"], f"{path}.items", errs)
    if isinstance(s.get("additionalProperties"), dict):
        _complete(s["additionalProperties"], f"{path}.additionalProperties", errs)


def _defaults(n: crdschema.Node, path: str, vpath: str, errs: FieldErrors) -> None:
    """Defaults must validate against their schema and hold no unknown fields."""
    if n.default is not crdschema.MISSING:
        value = copy.deepcopy(n.default)
        dpath = f"{path}.default"
        if value is None and not n.nullable:
            errs.append(
                errors.invalid_value(dpath, None, "must not be null for non-nullable field")
            )
        else:
            unknown = crdschema_apply.prune(n, value, vpath, root=False)
            if unknown:
                errs.append(
                    errors.invalid_value(
                        dpath, n.default, "must not have unknown fields: " + ", ".join(unknown)
                    )
                )
            crdschema_apply.apply_defaults(n, value)
            for e in crdschema.validate(n, value, vpath, root=False):
                errs.append(errors.invalid_value(dpath, n.default, e.text()))
    for k, c in (n.properties or {}).items():
        if vpath == "" and k == "metadata" and c.default is not crdschema.MISSING:
            errs.append(errors.forbidden(f"{path}.properties[metadata].default", "must not be set"))
            continue
        _defaults(c, f"{path}.properties[{k}]", crdschema.join(vpath, k), errs)
    if n.additional is not None:
        _defaults(n.additional, f"{path}.additionalProperties", vpath, errs)
    if n.items is not None:
        _defaults(n.items, f"{path}.items", f"{vpath}[0]", errs)
