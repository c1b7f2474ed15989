"""Field selectors with Kubernetes semantics: `parse_fields` reads the `fieldSelector` query
parameter (`k=v`, `k==v`, `k!=v`, values escaped with `\\,`, `\\=`, `\\\\`) into a
`FieldSelector` whose `matches` runs on every watch event, `validate_fields` rejects
unsupported field labels as kube-apiserver does, and `object_fields` extracts the field set an
object is matched against (`exact_object_fields`: the set it will have once encoded by orjson and
decoded again, or None when that cannot be told without the round trip). Label selectors and
apimachinery's name/value validation live in `kybern.api.selectors`, which re-exports all of
this."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, TypeAlias

from kybern.api import errors


def escape_field_value(value: str) -> str:
    """`fields.EscapeValue`: prefix `\\`, `,` and `=` with a backslash."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    """`fields.UnescapeValue`; raises ValueError with the Kubernetes message when invalid."""
    if "\\" not in value and "," not in value and "=" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        c = m.group(1)
        if c is None:  # Kubernetes formats the rune with %v, i.e. as its code point number
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(m[0])}")
        if c == "" or c not in "\\,=":
            raise ValueError(f"invalid field selector: invalid escape sequence: \\{c}")
        return c

    return _UNESCAPE_RE.sub(one, value)


_UNESCAPE_RE = re.compile(r"\\(.?)|[,=]", re.DOTALL)
_SPLIT_RE = re.compile(r"\\.|,", re.DOTALL)


def _split_terms(text: str) -> list[str]:
    """Split on commas not escaped by a backslash (escapes are kept for unescape_field_value)."""
    terms: list[str] = []
    start = 0
    for m in _SPLIT_RE.finditer(text):
        if m[0] == ",":
            terms.append(text[start : m.start()])
            start = m.end()
    return [*terms, text[start:]]


# the first position holding an operator splits the term; "!=" and "==" win over "="
_TERM_RE = re.compile(r"(.*?)(!=|==|=)(.*)", re.DOTALL)


class FieldSelector:
    """A parsed field selector: the AND of `(field, op, value)` with op `=` or `!=`.

    A missing field compares as the empty string, as in Kubernetes."""

    __slots__ = ("_reqs",)

    def __init__(self, requirements: Iterable[tuple[str, str, str]] = ()) -> None:
        self._reqs: tuple[tuple[str, str, str], ...] = tuple(requirements)

    @property
    def requirements(self) -> list[tuple[str, str, str]]:
        return list(self._reqs)

    @property
    def empty(self) -> bool:
        return not self._reqs

    def matches(self, fields: Mapping[str, str]) -> bool:
        get = fields.get
        for field, op, value in self._reqs:
            if (get(field, "") == value) != (op == "="):
                return False
        return True

    def exact_value(self, field: str) -> str | None:
        """The value an `=`/`==` requirement on `field` demands, else None."""
        for f, op, value in self._reqs:
            if f == field and op == "=":
                return value
        return None

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{escape_field_value(v)}" for f, op, v in self._reqs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSelector) and self._reqs == other._reqs

    def __hash__(self) -> int:
        return hash(self._reqs)


_ALL_FIELDS = FieldSelector()


def parse_fields(text: str) -> FieldSelector:
    """Parse a `fieldSelector` query parameter (terms are sorted, `==` is normalized to `=`).

    Raises `errors.bad_request`, e.g. `invalid selector: 'a'; can't understand 'a'`."""
    if not text:
        return _ALL_FIELDS
    reqs: list[tuple[str, str, str]] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        m = _TERM_RE.fullmatch(part)
        if m is None:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = m.groups()
        try:
            value = unescape_field_value(rhs)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        reqs.append((lhs, "!=" if op == "!=" else "=", value))
    return FieldSelector(reqs) if reqs else _ALL_FIELDS


_ALWAYS_SUPPORTED = frozenset({"metadata.name", "metadata.namespace"})


def validate_fields(selector: FieldSelector, allowed: Iterable[str], kind: str = "") -> None:
    """Reject fields outside `allowed` (plus metadata.name/namespace, which every kind supports)
    with `field label not supported: <field>` as kube-apiserver does (400 BadRequest). `kind`
    is accepted for the caller's convenience; Kubernetes does not mention it in the message."""
    ok = _ALWAYS_SUPPORTED.union(allowed)
    for field, _, _ in selector._reqs:
        if field not in ok:
            raise errors.bad_request(f"field label not supported: {field}")


@lru_cache(maxsize=1024)
def _split_path(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _field_string(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value at a dotted path (`spec.nodeName`), "" when missing or not a scalar."""
    cur: Any = obj
    for part in _split_path(path):
        if cur.__class__ is dict or isinstance(cur, Mapping):
            cur = cur.get(part)
        else:
            cur = None
    return _field_string(cur)


FieldsSpec: TypeAlias = (
    Iterable[str] | Mapping[str, str] | Callable[[Mapping[str, Any]], Mapping[str, str]]
)


@lru_cache(maxsize=256)
def _paths_of(paths: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The field names `object_fields` fills for dotted `paths`, in order, with their parts."""
    names = ("metadata.name", "metadata.namespace", *paths)
    return tuple((p, _split_path(p)) for p in names)


def object_fields(obj: Mapping[str, Any], extra: FieldsSpec = ()) -> dict[str, str]:
    """The field set a field selector is matched against: always `metadata.name` and
    `metadata.namespace`, plus `extra` given as dotted paths (field name == path), a mapping of
    field name -> dotted path, or a callable returning additional fields. Missing -> ""."""
    if extra.__class__ is tuple:
        out: dict[str, str] = {}
        for name, parts in _paths_of(extra):
            cur: Any = obj
            for part in parts:
                if cur.__class__ is dict or isinstance(cur, Mapping):
                    cur = cur.get(part)
                else:
                    cur = None
            out[name] = _field_string(cur)
        return out
    out = {"metadata.name": field_value(obj, "metadata.name")}
    out["metadata.namespace"] = field_value(obj, "metadata.namespace")
    if callable(extra):
        out.update(extra(obj))
    elif isinstance(extra, Mapping):
        for name, path in extra.items():
            out[name] = field_value(obj, path)
    else:
        for path in extra:
            out[path] = field_value(obj, path)
    return out


_NOT_MAPPINGS = frozenset({str, int, float, bool, type(None), list, tuple})
_INT64 = (-(2**63), 2**64)  # the integers orjson encodes


def exact_object_fields(obj: dict[str, Any], paths: tuple[str, ...]) -> dict[str, str] | None:
    """`object_fields(obj, paths)` as it reads once `obj` has been through JSON (encoded by
    orjson, decoded again), taken from `obj` itself; None when that cannot be told without the
    round trip (something other than plain JSON types on the way: a float that is not finite
    reads as null, a dataclass becomes an object, a str subclass a plain string, ...)."""
    out: dict[str, str] = {}
    for name, parts in _paths_of(paths):
        cur: Any = obj
        for part in parts:
            cls = cur.__class__
            if cls is dict:
                cur = cur.get(part)
            elif cls in _NOT_MAPPINGS:
                cur = None
            else:
                return None
        cls = cur.__class__
        if cls is str:
            out[name] = cur
        elif cls is bool:
            out[name] = "true" if cur else "false"
        elif cur is None or cls is dict or cls is list or cls is tuple:
            out[name] = ""  # a tuple becomes a list
        elif cls is int and _INT64[0] <= cur < _INT64[1]:
            out[name] = str(cur)
        elif cls is float and math.isfinite(cur):
            out[name] = str(cur)
        else:
            return None
    return out
