"""Validation of API objects (plain dicts from JSON) with Kubernetes' own rules and wording: the
name checks of apimachinery (`is_dns1123_subdomain`, `is_qualified_name`, ...) returning message
lists, `validate_object_meta`/`validate_object_meta_update` for metadata, and the most common
per-kind rules of the built-in kinds behind `validate(kind, obj)`,
`validate_update(kind, new, old)` and `validate_status_update` (the `/status` subresource's
rules, as kube-apiserver's status strategies; implemented in `validation_kinds`), all returning
`list[errors.FieldError]` (empty when valid). Also `parse_quantity`/`canonical_quantity` for
resource quantities ("100m", "1Gi", "1e3")."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from decimal import ROUND_UP, Decimal, localcontext
from typing import Any, TypeGuard

from kybern.api import errors

FieldErrors = list[errors.FieldError]

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
PERCENT_FMT = "[0-9]+%"
FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"
ANNOTATIONS_LIMIT = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024
MAX_INT32 = 2**31 - 1

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
_QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_RE = {
    name: re.compile(fmt)
    for name, fmt in {
        "label": DNS1123_LABEL_FMT,
        "subdomain": DNS1123_SUBDOMAIN_FMT,
        "dns1035": DNS1035_LABEL_FMT,
        "qualified": QUALIFIED_NAME_FMT,
        "value": LABEL_VALUE_FMT,
        "configkey": CONFIG_KEY_FMT,
        "percent": PERCENT_FMT,
        "portname": "[-a-z0-9]+",
    }.items()
}


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def _match(kind: str, value: str) -> bool:
    return _RE[kind].fullmatch(value) is not None


# The name checks below remember the strings they found valid (names, namespaces, label keys and
# values repeat across objects), so that a repeated valid string costs a set lookup instead of
# the regular expressions: per check, bounded, emptied when full. Only exact `str`s are
# remembered; anything else, and every invalid value, takes the long way (`_..._checked`).
_VALID_MAX = 4096
_VALID_LABELS: set[str] = set()
_VALID_SUBDOMAINS: set[str] = set()
_VALID_QUALIFIED: set[str] = set()
_VALID_LABEL_VALUES: set[str] = set()


def _remembered(
    name: str, valid: set[str], check: Callable[[str], list[str]]
) -> Callable[[str], list[str]]:
    """`check` (the long way), answering [] at once for a string it found valid before."""

    def remembered(value: str) -> list[str]:
        if value.__class__ is str and value in valid:
            return []
        errs = check(value)
        if not errs and value.__class__ is str:
            if len(valid) >= _VALID_MAX:
                valid.clear()
            valid.add(value)
        return errs

    remembered.__name__ = remembered.__qualname__ = name
    remembered.__doc__ = check.__doc__
    return remembered


def _dns1123_label_checked(value: str) -> list[str]:
    """Why `value` is no RFC 1123 label ([] when it is one)."""
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _match("label", value):
        if _match("subdomain", value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def _dns1123_subdomain_checked(value: str) -> list[str]:
    """Why `value` is no RFC 1123 subdomain ([] when it is one)."""
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _match("subdomain", value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _match("dns1035", value):
        errs.append(regex_error(_DNS1035_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def _qualified_name_checked(value: str) -> list[str]:
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _match("qualified", name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def _label_value_checked(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _match("value", value):
        errs.append(regex_error(_LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


is_dns1123_label = _remembered("is_dns1123_label", _VALID_LABELS, _dns1123_label_checked)
is_dns1123_subdomain = _remembered(
    "is_dns1123_subdomain", _VALID_SUBDOMAINS, _dns1123_subdomain_checked
)
is_qualified_name = _remembered("is_qualified_name", _VALID_QUALIFIED, _qualified_name_checked)
is_valid_label_value = _remembered(
    "is_valid_label_value", _VALID_LABEL_VALUES, _label_value_checked
)


def is_path_segment_name(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def is_config_map_key(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _match("configkey", value):
        errs.append(
            regex_error(_CONFIG_KEY_MSG, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")
        )
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    ok = isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535
    return [] if ok else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    errs = [max_len_error(15)] if len(port) > 15 else []
    if not _match("portname", port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port.startswith("-") or port.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _name_check(rule: str, name: str, prefix: bool = False) -> list[str]:
    if prefix and rule != "path" and name.endswith("-"):
        name = name[:-1] + "a"
    return _NAME_CHECKS.get(rule, is_dns1123_subdomain)(name)


_NAME_CHECKS = {
    "label": is_dns1123_label,
    "dns1035": is_dns1035_label,
    "path": is_path_segment_name,
}


# ---------------------------------------------------------------- quantities

_QTY_FORMAT = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QTY_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.S)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_SUFFIX = {e: s for s, e in _DECIMAL.items()}


def _parse_quantity(value: str | int | float) -> tuple[Decimal, str]:
    if value.__class__ in _SCALARS:  # pods repeat the same few quantities: remembered
        return _parse_quantity_cached(value)
    return _parse_quantity_uncached(value)


_SCALARS = (str, int, float)  # exactly: a bool is refused, and is no cache key for 1


@functools.lru_cache(maxsize=4096, typed=True)
def _parse_quantity_cached(value: str | int | float) -> tuple[Decimal, str]:
    return _parse_quantity_uncached(value)


def _parse_quantity_uncached(value: str | int | float) -> tuple[Decimal, str]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"quantities must match the regular expression '{_QTY_FORMAT}'")
    text = str(value) if not isinstance(value, float) else repr(value)
    m = _QTY_RE.fullmatch(text)
    if not text or not re.fullmatch(_QTY_FORMAT[1:-1], text) or not m or not (m[2] or m[3]):
        raise ValueError(f"quantities must match the regular expression '{_QTY_FORMAT}'")
    number, suffix = Decimal(f"{m[1]}{m[2] or '0'}.{m[3] or '0'}"), m[4]
    if suffix and suffix[0] in ".0123456789+-":
        raise ValueError(f"quantities must match the regular expression '{_QTY_FORMAT}'")
    with localcontext() as ctx:
        ctx.prec = 80
        if suffix in _BINARY:
            return number * (Decimal(2) ** _BINARY[suffix]), "BinarySI"
        if suffix in _DECIMAL:
            return number.scaleb(_DECIMAL[suffix]), "DecimalSI"
        em = re.fullmatch(r"[eE]([+-]?[0-9]+)", suffix)
        if em:
            return number.scaleb(int(em[1])), "DecimalExponent"
    raise ValueError("unable to parse quantity's suffix")


def parse_quantity(value: str | int | float) -> Decimal:
    """The numeric value of a Kubernetes quantity; `ValueError` with Kubernetes' message if bad."""
    return _parse_quantity(value)[0]


def canonical_quantity(value: str | int | float) -> str:
    """The form the API server serializes a quantity in ("1000m" -> "1", "1024Mi" -> "1Gi")."""
    if value.__class__ in _SCALARS:
        return _canonical_cached(value)
    return _canonical(value)


@functools.lru_cache(maxsize=4096, typed=True)
def _canonical_cached(value: str | int | float) -> str:
    return _canonical(value)


def _canonical(value: str | int | float) -> str:
    number, fmt = _parse_quantity(value)
    with localcontext() as ctx:
        ctx.prec = 80
        number = number.quantize(Decimal("1e-9"), rounding=ROUND_UP)
        if number == 0:
            return "0"
        integral = number == number.to_integral_value()
        if fmt == "BinarySI" and integral and abs(number) >= 1024:
            n = int(number)
            for suffix, exp in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
                if n % (1 << exp) == 0:
                    return f"{n >> exp}{suffix}"
            return str(n)
        for exp in range(18, -12, -3):
            mantissa = number.scaleb(-exp)
            if mantissa == mantissa.to_integral_value():
                break
        digits = str(int(mantissa))
        if fmt == "DecimalExponent":
            return f"{digits}e{exp}" if exp else digits
        return digits + _DEC_SUFFIX[exp]


# ---------------------------------------------------------------- helpers


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _invalid(path: str, value: Any, detail: str) -> errors.FieldError:
    if isinstance(value, dict | list):
        return errors.FieldError(
            "FieldValueInvalid", path, f"Invalid value: {_json(value)}: {detail}"
        )
    return errors.invalid_value(path, value, detail)


def _c(path: str, *children: str) -> str:
    return ".".join([path, *children]) if path else ".".join(children)


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonneg(value: Any, path: str) -> FieldErrors:
    if _is_int(value) and value < 0:
        return [_invalid(path, value, IS_NEGATIVE)]
    return []


def _enum(value: Any, path: str, supported: list[str]) -> FieldErrors:
    if value is None or value in supported:
        return []
    if value == "":
        return [errors.required(path)]
    return [errors.not_supported(path, value, supported)]


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def validate_labels(labels: Any, path: str) -> FieldErrors:
    errs: FieldErrors = []
    for key, value in _d(labels).items():
        if msgs := is_qualified_name(key):
            errs += [_invalid(path, key, m) for m in msgs]
        if not isinstance(value, str):
            errs.append(_invalid(path, value, "must be a string"))
        elif msgs := is_valid_label_value(value):
            errs += [_invalid(path, value, m) for m in msgs]
    return errs


def validate_label_selector(selector: Any, path: str) -> FieldErrors:
    sel = _d(selector)
    errs = validate_labels(sel.get("matchLabels"), _c(path, "matchLabels"))
    for i, req in enumerate(_l(sel.get("matchExpressions"))):
        req, rpath = _d(req), f"{path}.matchExpressions[{i}]"
        op, values = req.get("operator"), _l(req.get("values"))
        if op in ("In", "NotIn") and not values:
            detail = "must be specified when `operator` is 'In' or 'NotIn'"
            errs.append(errors.required(_c(rpath, "values"), detail))
        elif op in ("Exists", "DoesNotExist") and values:
            detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            errs.append(errors.forbidden(_c(rpath, "values"), detail))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(_invalid(_c(rpath, "operator"), op, "not a valid selector operator"))
        key = str(req.get("key") or "")
        errs += [_invalid(_c(rpath, "key"), key, m) for m in is_qualified_name(key)]
    return errs


def label_selector_matches(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Whether a `metav1.LabelSelector` (dict) selects `labels`; the empty selector selects all."""
    labels = _d(labels)
    if any(labels.get(k) != v for k, v in _d(selector.get("matchLabels")).items()):
        return False
    for req in _l(selector.get("matchExpressions")):
        key, op, values = req.get("key"), req.get("operator"), _l(req.get("values"))
        present = key in labels
        if (
            (op == "In" and (not present or labels[key] not in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def validate_resource_requirements(res: Any, path: str, container: bool = True) -> FieldErrors:
    """`resources` requests/limits: parsable non-negative quantities, requests <= limits, and
    for containers known resource names."""
    res, errs = _d(res), []
    parsed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for part in _RESOURCE_PARTS:
        values = res.get(part)
        if not isinstance(values, dict) or not values:
            continue  # nothing to check (`_d` of it is empty)
        seen = parsed[part]
        for name, value in values.items():
            # the path is built only for an error
            standard = name in _STD_RESOURCES or name.startswith("hugepages-") or "/" in name
            if container and not standard:
                detail = "must be a standard resource for containers"
                errs.append(_invalid(f"{path}.{part}[{name}]", name, detail))
            if value.__class__ is str and value in _NONNEG_QUANTITIES:
                seen[name] = _NONNEG_QUANTITIES[value]  # valid and not negative, seen before
                continue
            try:
                quantity = seen[name] = parse_quantity(value)
            except ValueError as exc:
                errs.append(_invalid(f"{path}.{part}[{name}]", value, str(exc)))
                continue
            if quantity < 0:
                errs.append(
                    _invalid(f"{path}.{part}[{name}]", canonical_quantity(value), IS_NEGATIVE)
                )
            elif value.__class__ is str:
                if len(_NONNEG_QUANTITIES) >= _VALID_MAX:
                    _NONNEG_QUANTITIES.clear()
                _NONNEG_QUANTITIES[value] = quantity
    if not parsed["requests"] or not parsed["limits"]:
        return errs
    for name, req in parsed["requests"].items():
        if name in parsed["limits"] and req > parsed["limits"][name]:
            limit = canonical_quantity(res["limits"][name])
            detail = f"must be less than or equal to {name} limit of {limit}"
            value = canonical_quantity(res["requests"][name])
            errs.append(_invalid(f"{path}.requests[{name}]", value, detail))
    return errs


_RESOURCE_PARTS = ("limits", "requests")
_STD_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
# the quantity strings found valid and not negative, with their value (as the name checks
# remember valid names: bounded, emptied when full)
_NONNEG_QUANTITIES: dict[str, Decimal] = {}


def int_or_percent(value: Any, path: str) -> tuple[FieldErrors, int]:
    """Errors of an IntOrString like `maxSurge`, and its number (a percent's number)."""
    if isinstance(value, str):
        if not _match("percent", value):
            detail = regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                PERCENT_FMT,
                "1%",
                "93%",
            )
            return [_invalid(path, value, detail)], 0
        return [], int(value[:-1])
    if not _is_int(value):
        return [], 0
    return _nonneg(value, path), value


def validate_finalizer_names(values: Any, path: str, qualified: bool = True) -> FieldErrors:
    """Finalizer names of core kinds: qualified names, and unprefixed ones must be standard."""
    errs: FieldErrors = []
    for value in _l(values):
        value = str(value)
        msgs = is_qualified_name(value)
        errs += [_invalid(path, value, m) for m in msgs] if qualified else []
        if (
            not msgs
            and "/" not in value
            and value not in ("kubernetes", "orphan", "foregroundDeletion")
        ):
            detail = "name is neither a standard finalizer name nor is it fully qualified"
            errs.append(_invalid(path, value, detail))
    return errs


def base64_errors(path: str, value: Any) -> FieldErrors:
    if not isinstance(value, str):
        return [_invalid(path, "<secret contents redacted>", "must be a base64 string")]
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        return [_invalid(path, "<secret contents redacted>", f"illegal base64 data: {exc}")]
    return []


# ---------------------------------------------------------------- object metadata


def _meta_common(meta: dict[str, Any], path: str) -> FieldErrors:
    # paths are built only for an error, or where there is something to check
    generation = meta.get("generation")
    if (generation.__class__ is int or _is_int(generation)) and generation < 0:
        errs = [_invalid(_c(path, "generation"), generation, IS_NEGATIVE)]
    else:
        errs = []
    labels = meta.get("labels")
    if isinstance(labels, dict) and labels:  # else nothing to report
        errs += validate_labels(labels, _c(path, "labels"))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and annotations:
        apath, size = _c(path, "annotations"), 0
        for key, value in annotations.items():
            errs += [_invalid(apath, key, m) for m in is_qualified_name(key.lower())]
            size += len(key.encode()) + len(str(value).encode())
        if size > ANNOTATIONS_LIMIT:
            msg = f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes"
            errs.append(errors.FieldError("FieldValueTooLong", apath, msg))
    refs = meta.get("ownerReferences")
    if isinstance(refs, list) and refs:
        errs += _owner_references(refs, _c(path, "ownerReferences"))
    finalizers = meta.get("finalizers")
    if isinstance(finalizers, list) and finalizers:
        fpath = _c(path, "finalizers")
        for fin in finalizers:
            errs += [_invalid(fpath, fin, m) for m in is_qualified_name(str(fin))]
        if "orphan" in finalizers and "foregroundDeletion" in finalizers:
            detail = "finalizer orphan and foregroundDeletion cannot be both set"
            errs.append(_invalid(fpath, finalizers, detail))
    return errs


def _owner_references(refs: list[Any], rpath: str) -> FieldErrors:
    errs: FieldErrors = []
    controller = ""
    for ref in refs:
        ref = _d(ref)
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            errs.append(_invalid(_c(rpath, "apiVersion"), api_version, "version must not be empty"))
        for fld in ("kind", "name", "uid"):
            if not ref.get(fld):
                errs.append(_invalid(_c(rpath, fld), ref.get(fld) or "", "must not be empty"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                detail = (
                    'Only one reference can have Controller set to true. Found "true" in '
                    f"references for {controller} and {current}"
                )
                errs.append(_invalid(rpath, refs, detail))
            else:
                controller = current
    return errs


def validate_object_meta(
    meta: dict[str, Any], *, namespaced: bool | None, name_rule: str, path: str = "metadata"
) -> FieldErrors:
    """ObjectMeta on create. `name_rule` is 'subdomain', 'label', 'dns1035' or 'path';
    `namespaced=None` skips the namespace checks (scope unknown)."""
    meta = _d(meta)
    errs: FieldErrors = []
    name, generate = meta.get("name") or "", meta.get("generateName") or ""
    if generate:
        gpath = _c(path, "generateName")
        errs += [_invalid(gpath, generate, m) for m in _name_check(name_rule, generate, True)]
    if not name and not generate:
        errs.append(errors.required(_c(path, "name"), "name or generateName is required"))
    elif name and (msgs := _name_check(name_rule, name)):
        errs += [_invalid(_c(path, "name"), name, m) for m in msgs]
    namespace = meta.get("namespace") or ""
    if namespaced and not namespace:
        errs.append(errors.required(_c(path, "namespace")))
    elif namespaced:
        if msgs := is_dns1123_label(namespace):
            errs += [_invalid(_c(path, "namespace"), namespace, m) for m in msgs]
    elif namespaced is False and namespace:
        errs.append(errors.forbidden(_c(path, "namespace"), "not allowed on this type"))
    return errs + _meta_common(meta, path)


def _go_strings(values: list[str]) -> str:
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def validate_object_meta_update(
    new: dict[str, Any], old: dict[str, Any], *, path: str = "metadata"
) -> FieldErrors:
    """ObjectMeta on update. uid, creationTimestamp, deletionTimestamp and
    deletionGracePeriodSeconds are compared only when the new object carries them (the server
    copies them from the stored object otherwise, as Kubernetes' BeforeUpdate does)."""
    new, old = _d(new), _d(old)
    errs: FieldErrors = []
    if old.get("deletionTimestamp"):
        added = sorted(set(_l(new.get("finalizers"))) - set(_l(old.get("finalizers"))))
        if added:
            detail = (
                "no new finalizers can be added if the object is being deleted, found new "
                f"finalizers {_go_strings(added)}"
            )
            errs.append(errors.forbidden(_c(path, "finalizers"), detail))
    gen_new, gen_old = new.get("generation"), old.get("generation")
    if _is_int(gen_new) and _is_int(gen_old) and gen_new < gen_old:
        errs.append(_invalid(_c(path, "generation"), gen_new, "must not be decremented"))
    for fld, when_set in _META_IMMUTABLE:
        nv, ov = new.get(fld), old.get(fld)
        if nv == ov or (when_set and nv in (None, "")):  # equal JSON values: never a change
            continue
        if (nv or None) != (ov or None):
            errs.append(_invalid(_c(path, fld), nv, FIELD_IMMUTABLE))
    return errs + _meta_common(new, path)


# compared always, or only when the new object sets them (see validate_object_meta_update)
_META_IMMUTABLE = (
    ("name", False),
    ("namespace", False),
    ("uid", True),
    ("creationTimestamp", True),
    ("deletionTimestamp", True),
    ("deletionGracePeriodSeconds", True),
)


def validate(kind: str, obj: dict[str, Any]) -> FieldErrors:
    """The rules of built-in `kind` beyond `validate_object_meta` (spec, data, template, and
    core's standard-finalizer rule); unknown kinds have none."""
    return _kinds().validate(kind, obj)


def validate_update(kind: str, new: dict[str, Any], old: dict[str, Any]) -> FieldErrors:
    """Update-only rules of `kind` (immutable fields); callers also run `validate` on `new`
    and `validate_object_meta_update`."""
    return _kinds().validate_update(kind, new, old)


def validate_status_update(
    kind: str, new: dict[str, Any], old: dict[str, Any]
) -> FieldErrors | None:
    """All the rules of an update of `kind` through its `status` subresource, where the new
    object is the stored one with a new status, managedFields and possibly a sent uid (as
    `strategy.prepare_update` makes it): the metadata update and the status alone, as
    kube-apiserver's status strategy validates it, the spec being the stored (valid) one. None
    for a kind whose status update Kubernetes validates whole: the caller runs
    `validate_object_meta`, `validate_object_meta_update`, `validate` and `validate_update`."""
    result: FieldErrors | None = _kinds().validate_status_update(kind, new, old)
    return result


@functools.cache
def _kinds() -> Any:
    """`validation_kinds`, which imports this module (imported once, on first use)."""
    from kybern.api import validation_kinds

    return validation_kinds
