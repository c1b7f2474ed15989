"""Label and field selectors with Kubernetes semantics: `parse_labels` reads the query-string
label selector grammar (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`)
with apimachinery's key/value validation and error texts, `from_label_selector_object` turns a
`metav1.LabelSelector` into the same `LabelSelector`, and `selector_from_set` builds one from a
label map. Field selectors (`parse_fields`, `validate_fields`, `object_fields`,
`exact_object_fields`, ...) live in `kybern.api.selectors_fields` and are re-exported here, so
`selectors.X` names both kinds. Selectors are parsed once into compact tuples so `matches` is
cheap enough to run on every watch event; `str()` renders the canonical Kubernetes form, which
parses back to an equal selector."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kybern.api import errors
from kybern.api.selectors_fields import FieldSelector as FieldSelector
from kybern.api.selectors_fields import FieldsSpec as FieldsSpec
from kybern.api.selectors_fields import escape_field_value as escape_field_value
from kybern.api.selectors_fields import exact_object_fields as exact_object_fields
from kybern.api.selectors_fields import field_value as field_value
from kybern.api.selectors_fields import object_fields as object_fields
from kybern.api.selectors_fields import parse_fields as parse_fields
from kybern.api.selectors_fields import unescape_field_value as unescape_field_value
from kybern.api.selectors_fields import validate_fields as validate_fields

# --- apimachinery validation (pkg/util/validation) --------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(_QNAME_FMT)
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_INT64_RE = re.compile(r"[+-]?[0-9]+")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


_QNAME_ERR = _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
_DNS1123_ERR = _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
_LABEL_VALUE_ERR = _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")


def qualified_name_errors(value: str) -> list[str]:
    """`validation.IsQualifiedName`: an optional DNS-subdomain prefix, '/', and a name part."""
    errs: list[str] = []
    parts = value.split("/")
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        if len(prefix.encode()) > 253:
            errs.append("prefix part must be no more than 253 characters")
        if prefix and not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            errs.append("prefix part " + _DNS1123_ERR)
    elif len(parts) > 2:
        return [
            "a qualified name "
            + _QNAME_ERR
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part " + "must be no more than 63 characters")
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _QNAME_ERR)
    return errs


def label_value_errors(value: str) -> list[str]:
    """`validation.IsValidLabelValue`: empty, or a qualified-name-like string of <= 63 bytes."""
    errs: list[str] = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 characters")
    if value and not _QNAME_RE.fullmatch(value):
        errs.append(_LABEL_VALUE_ERR)
    return errs


def _invalid(path: str, shown: str, detail: str) -> str:
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(msgs: list[str]) -> str:
    seen = list(dict.fromkeys(msgs))
    return seen[0] if len(seen) == 1 else "[" + ", ".join(seen) + "]"


# --- label selectors --------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPS = "in, notin, =, ==, !=, gt, lt"
_ALL_OPS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN, EXISTS, "!")
_OP_TEXT = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", GREATER_THAN: ">", LESS_THAN: "<"}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement; `values` are sorted and de-duplicated."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        op, joined = self.operator, ",".join(self.values)
        if op in (EXISTS, DOES_NOT_EXIST):
            return ("!" if op == DOES_NOT_EXIST else "") + self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({joined})"
        return self.key + _OP_TEXT[op] + joined


def _parse_int64(s: str) -> int | None:
    if not _INT64_RE.fullmatch(s):
        return None
    n = int(s)
    return n if -(2**63) <= n < 2**63 else None


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """`labels.NewRequirement`: validate and build one requirement (bad_request on error)."""
    vals = list(values)
    errs: list[str] = []
    key_errs = qualified_name_errors(key)
    if key_errs:
        errs.append(_invalid("key", errors.go_quote(key), "; ".join(key_errs)))
    vpath = "values"
    detail = ""
    if operator in (IN, NOT_IN) and not vals:
        detail = "for 'in', 'notin' operators, values set can't be empty"
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and len(vals) != 1:
        detail = "exact-match compatibility requires one single value"
    elif operator in (EXISTS, DOES_NOT_EXIST) and vals:
        detail = "values set must be empty for exists and does not exist"
    elif operator in (GREATER_THAN, LESS_THAN) and len(vals) != 1:
        detail = "for 'Gt', 'Lt' operators, exactly one value is required"
    if detail:
        errs.append(
            _invalid(vpath, "[]string{" + ", ".join(errors.go_quote(v) for v in vals) + "}", detail)
        )
    if operator in (GREATER_THAN, LESS_THAN):
        int_msg = "for 'Gt', 'Lt' operators, the value must be an integer"
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(_invalid(f"{vpath}[{i}]", errors.go_quote(v), int_msg))
    elif operator not in _ALL_OPS:
        supported = ", ".join(f'"{o}"' for o in _ALL_OPS)
        errs.append(f'operator: Unsupported value: "{operator}": supported values: {supported}')
    for i, v in enumerate(vals):
        v_errs = label_value_errors(v)
        if v_errs:
            errs.append(_invalid(f"{vpath}[{i}][{key}]", errors.go_quote(v), "; ".join(v_errs)))
    if errs:
        raise errors.bad_request(_aggregate(errs))
    return Requirement(key, operator, tuple(sorted(set(vals))))


def _compile(r: Requirement) -> Callable[[Callable[[str], Any]], bool]:
    """One requirement as a predicate over `labels.get` (None means the label is absent)."""
    k, op, vals = r.key, r.operator, r.values
    v, s = (vals[0] if vals else ""), frozenset(vals)
    if op in (EQUALS, DOUBLE_EQUALS, IN):
        return (lambda get: get(k) == v) if len(s) == 1 else (lambda get: get(k) in s)
    if op in (NOT_EQUALS, NOT_IN):
        return (lambda get: get(k) != v) if len(s) == 1 else (lambda get: get(k) not in s)
    if op in (EXISTS, DOES_NOT_EXIST):
        exists = op == EXISTS
        return lambda get: (get(k) is not None) is exists
    bound, gt = (_parse_int64(v) if len(vals) == 1 else None), op == GREATER_THAN

    def compare(get: Callable[[str], Any]) -> bool:
        have = get(k)
        n = _parse_int64(have) if isinstance(have, str) else None
        return n is not None and bound is not None and (n > bound if gt else n < bound)

    return compare


class LabelSelector:
    """A parsed label selector: the AND of its requirements (sorted by key).

    `LabelSelector()` / `LabelSelector.everything()` matches everything (`empty` is True);
    `LabelSelector.nothing()` matches nothing (what a nil `metav1.LabelSelector` means)."""

    __slots__ = ("_checks", "_nothing", "_reqs")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self._reqs: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing
        self._checks = tuple(_compile(r) for r in self._reqs)

    @classmethod
    def everything(cls) -> LabelSelector:
        return _EVERYTHING

    @classmethod
    def nothing(cls) -> LabelSelector:
        return _NOTHING

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return self._reqs

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every label set)."""
        return not self._reqs and not self._nothing

    @property
    def matches_nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        get = labels.get if labels is not None else _NO_LABELS.get
        for check in self._checks:
            if not check(get):
                return False
        return True

    def exact_value(self, key: str) -> str | None:
        """The single value `key` must equal (`=`, `==`, or `in` with one value), else None."""
        r = next((r for r in self._reqs if r.key == key), None)
        exact = r is not None and r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1
        return r.values[0] if r is not None and exact else None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._reqs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSelector) and (self._reqs, self._nothing) == (
            other._reqs,
            other._nothing,
        )

    def __hash__(self) -> int:
        return hash((self._reqs, self._nothing))


_NO_LABELS: dict[str, str] = {}
_EVERYTHING = LabelSelector()
_NOTHING = LabelSelector(nothing=True)

_ID, _EOS = "\0id", "\0eos"  # token kinds; symbols and keywords are their own kind
_SPECIAL = frozenset("=!(),><")
_TOKEN_OPS = {"in": IN, "notin": NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS, "!=": NOT_EQUALS}
_TOKEN_OPS.update({">": GREATER_THAN, "<": LESS_THAN})
_TOKEN_RE = re.compile(r"!=|==|[=!(),><]|[^=!(),>< \t\r\n]+")  # whitespace separates tokens


def _lex(s: str) -> list[tuple[str, str]]:
    kinds = [(t if t in _SPECIAL or t in _TOKEN_OPS else _ID, t) for t in _TOKEN_RE.findall(s)]
    return [*kinds, (_EOS, "")]


class _Parser:
    """apimachinery's recursive-descent label selector parser, with its error messages."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True, advance: int = 0) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        self.pos += advance
        return (_ID if values and tok in ("in", "notin") else tok), lit

    def take(self, values: bool = True) -> tuple[str, str]:
        return self.peek(values, 1)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok == _EOS:
                return reqs
            if tok not in (_ID, "!"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except ValueError as e:
                raise ValueError(f"unable to parse requirement: {e}") from None
            except errors.StatusError as e:
                raise ValueError(f"unable to parse requirement: {e.message}") from None
            tok, lit = self.take()
            if tok == _EOS:
                return reqs
            if tok != ",":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.peek()
            if tok not in (_ID, "!"):
                raise ValueError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        op = ""
        tok, lit = self.take()
        if tok == "!":
            op = DOES_NOT_EXIST
            tok, lit = self.take()
        if tok != _ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        key_errs = qualified_name_errors(lit)
        if key_errs:
            raise ValueError(_invalid("<nil>", errors.go_quote(lit), "; ".join(key_errs)))
        key = lit
        if op != DOES_NOT_EXIST and self.peek()[0] in (_EOS, ","):
            op = EXISTS
        if op in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, op)
        tok, lit = self.take(values=False)
        if tok not in _TOKEN_OPS:
            raise ValueError(f"found '{lit}', expected: {_BINARY_OPS}")
        op = _TOKEN_OPS[tok]
        vals = self.value_set() if op in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, op, sorted(vals))

    def value_set(self) -> set[str]:
        tok, lit = self.take()
        if tok != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return {""}
        if tok not in (_ID, ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        out: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == _ID:
                out.add(lit)
                tok2, lit2 = self.peek()
                if tok2 not in (",", ")"):
                    raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == ",":
                if not out:
                    out.add("")
                tok2, _ = self.peek()
                if tok2 == ",":
                    self.take()
                    out.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")
            if tok2 == ")":
                self.take()
                if tok == ",":
                    out.add("")
                return out

    def exact_value(self) -> set[str]:
        tok, lit = self.peek()
        if tok in (_EOS, ","):
            return {""}
        self.take()
        if tok == _ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_labels(text: str) -> LabelSelector:
    """Parse a `labelSelector` query parameter; an empty string selects everything.

    Raises `errors.bad_request` with apimachinery's message, e.g. `unable to parse requirement:
    <nil>: Invalid value: "a b": ...` or `found 'x', expected: ',' or 'end of string'`."""
    if not text.strip(" \t\r\n"):
        return _EVERYTHING
    try:
        reqs = _Parser(text).parse()
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    return LabelSelector(reqs)


_EXPR_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """`metav1.LabelSelectorAsSelector`: None (a nil selector) matches nothing; `{}` (no
    matchLabels and no matchExpressions) matches everything. Invalid keys/values/operators
    raise `errors.bad_request` with the Kubernetes message."""
    if sel is None:
        return _NOTHING
    labels, exprs = sel.get("matchLabels") or {}, sel.get("matchExpressions") or []
    if not (
        isinstance(labels, Mapping)
        and all(isinstance(v, str) for v in labels.values())
        and isinstance(exprs, list)
        and all(isinstance(e, Mapping) and isinstance(e.get("key", ""), str) for e in exprs)
        and all(isinstance(e.get("values") or [], list) for e in exprs)
        and all(isinstance(v, str) for e in exprs for v in e.get("values") or [])
    ):
        raise errors.bad_request("invalid label selector: " + json.dumps(sel, default=str))
    reqs = [new_requirement(k, EQUALS, [labels[k]]) for k in sorted(labels)]
    for expr in exprs:
        op = expr.get("operator")
        if not isinstance(op, str) or op not in _EXPR_OPS:
            shown = errors.go_quote(op if isinstance(op, str) else "")
            raise errors.bad_request(f"{shown} is not a valid label selector operator")
        reqs.append(new_requirement(expr.get("key", ""), _EXPR_OPS[op], expr.get("values") or []))
    return LabelSelector(reqs) if reqs else _EVERYTHING


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """`labels.SelectorFromSet` (no validation): equality on every pair; None/{} matches all."""
    if not labels:
        return _EVERYTHING
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in labels.items())
