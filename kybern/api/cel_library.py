"""The CEL environment of CRD validation rules: variables `self`/`oldSelf`, the CEL extension
libraries Kubernetes enables (optionals, bindings, math; the strings extension's functions are
declared here, so that `indexOf` can also take lists), and Kubernetes' own library functions
that rules commonly use — lists (`isSorted`, `sum`, `min`, `max`, `indexOf`,
`lastIndexOf`), regex (`find`, `findAll`), URLs (`url`, `isURL`, `getScheme`, `getHost`,
`getHostname`, `getPort`, `getEscapedPath`, `getQuery`), quantities (`quantity`, `isQuantity`,
`isInteger`, `asInteger`, `asApproximateFloat`, `sign`, `add`, `sub`, `compareTo`,
`isGreaterThan`, `isLessThan`) and sets (`sets.contains`, `sets.equivalent`,
`sets.intersects`). URL and Quantity values travel as one-entry maps."""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import ipaddress
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from kybern.api import crdschema, crdschema_formats, validation

_URL = "__kybern_url__"
_QTY = "__kybern_quantity__"
MAX_INT64 = 2**63 - 1


class LibraryError(ValueError):
    """A library function's error (becomes the rule's evaluation error)."""


# ---- lists --------------------------------------------------------------------------------------


def _is_sorted(items: list[Any]) -> bool:
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(items: list[Any]) -> Any:
    total: Any = 0
    if items and isinstance(items[0], float):
        total = 0.0
    for x in items:
        total = total + x
    return total


def _min(items: list[Any]) -> Any:
    if not items:
        raise LibraryError("min called on empty list")
    return min(items)


def _max(items: list[Any]) -> Any:
    if not items:
        raise LibraryError("max called on empty list")
    return max(items)


def _index_of(items: list[Any], x: Any) -> int:
    for i, v in enumerate(items):
        if v == x and type(v) is type(x):
            return i
    return -1


def _last_index_of(items: list[Any], x: Any) -> int:
    for i in range(len(items) - 1, -1, -1):
        if items[i] == x and type(items[i]) is type(x):
            return i
    return -1


# ---- regex --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    try:
        return crdschema.compile_regex(pattern)
    except ValueError as e:
        raise LibraryError(str(e)) from None


def _find(s: str, pattern: str) -> str:
    m = _regex(pattern).search(s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    out: list[str] = []
    if limit == 0:
        return out
    for m in _regex(pattern).finditer(s):
        out.append(m.group(0))
        if 0 < limit <= len(out):
            break
    return out


# ---- URLs ---------------------------------------------------------------------------------------


def _parse_url(s: str) -> Any:
    if not s or " " in s:
        raise LibraryError(f"URL parse error during conversion from string: {s}")
    parts = urlsplit(s)
    if not parts.scheme and not s.startswith("/"):
        raise LibraryError(
            f'URL parse error during conversion from string: parse "{s}": invalid URI for request'
        )
    return parts


def _url(s: str) -> dict[str, str]:
    _parse_url(s)
    return {_URL: s}


def _is_url(s: str) -> bool:
    try:
        _parse_url(s)
    except (LibraryError, ValueError):
        return False
    return True


def _u(u: dict[str, str]) -> Any:
    return urlsplit(u.get(_URL, ""))


def _hostname(u: dict[str, str]) -> str:
    netloc = _u(u).netloc.rsplit("@", 1)[-1]
    if netloc.startswith("["):
        return netloc[1 : netloc.index("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def _port(u: dict[str, str]) -> str:
    netloc = _u(u).netloc.rsplit("@", 1)[-1]
    if netloc.startswith("["):
        rest = netloc[netloc.find("]") + 1 :]
        return rest[1:] if rest.startswith(":") else ""
    return netloc.rsplit(":", 1)[1] if ":" in netloc else ""


def _host(u: dict[str, str]) -> str:
    return str(_u(u).netloc.rsplit("@", 1)[-1])


def _query(u: dict[str, str]) -> dict[str, list[str]]:
    return {k: list(v) for k, v in parse_qs(_u(u).query, keep_blank_values=True).items()}


# ---- quantities ---------------------------------------------------------------------------------


def _qty_value(q: dict[str, str]) -> Decimal:
    return validation.parse_quantity(q.get(_QTY, "0"))


def _quantity(s: str) -> dict[str, str]:
    try:
        return {_QTY: validation.canonical_quantity(s)}
    except ValueError as e:
        raise LibraryError(str(e)) from None


def _is_quantity(s: str) -> bool:
    try:
        validation.parse_quantity(s)
    except ValueError:
        return False
    return True


def _from_decimal(d: Decimal) -> dict[str, str]:
    text = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    return {_QTY: validation.canonical_quantity(text)}


def _as_integer(q: dict[str, str]) -> int:
    d = _qty_value(q)
    if d != d.to_integral_value() or abs(d) > MAX_INT64:
        raise LibraryError("cannot convert value to integer")
    return int(d)


def _is_integer(q: dict[str, str]) -> bool:
    d = _qty_value(q)
    return d == d.to_integral_value() and abs(d) <= MAX_INT64


def _sign(q: dict[str, str]) -> int:
    d = _qty_value(q)
    return (d > 0) - (d < 0)


def _cmp(a: dict[str, str], b: dict[str, str]) -> int:
    x, y = _qty_value(a), _qty_value(b)
    return (x > y) - (x < y)


# ---- strings (the CEL strings extension, with Kubernetes' list overloads of indexOf) ------------


def _char_at(s: str, i: int) -> str:
    if i < 0 or i > len(s):
        raise LibraryError(f"index out of range: {i}")
    return s[i] if i < len(s) else ""


def _str_index_of(s: str, sub: str, start: int = 0) -> int:
    if start < 0 or start > len(s):
        raise LibraryError(f"index out of range: {start}")
    return s.find(sub, start)


def _str_last_index_of(s: str, sub: str, last: int | None = None) -> int:
    if last is None:
        return s.rfind(sub)
    if last < 0 or last >= max(len(s), 1):
        raise LibraryError(f"index out of range: {last}")
    return s.rfind(sub, 0, last + len(sub))


def _ascii(s: str, upper: bool) -> str:
    table = str.maketrans(
        "abcdefghijklmnopqrstuvwxyz" if upper else "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if upper else "abcdefghijklmnopqrstuvwxyz",
    )
    return s.translate(table)


def _replace(s: str, old: str, new: str, n: int = -1) -> str:
    return s.replace(old, new, n if n >= 0 else -1)


def _split(s: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        parts = list(s)
        if n > 0 and len(parts) > n:
            parts = [*parts[: n - 1], "".join(parts[n - 1 :])]
        return parts
    return s.split(sep, n - 1) if n > 0 else s.split(sep)


def _substring(s: str, start: int, end: int | None = None) -> str:
    end = len(s) if end is None else end
    if start < 0 or end > len(s) or start > end:
        raise LibraryError(f"index out of range: {start}, {end}")
    return s[start:end]


# ---- sets ---------------------------------------------------------------------------------------


def _contains_all(a: list[Any], b: list[Any]) -> bool:
    return all(any(x == y and type(x) is type(y) for x in a) for y in b)


def _intersects(a: list[Any], b: list[Any]) -> bool:
    return any(any(x == y and type(x) is type(y) for x in a) for y in b)


# ---- typed strings ------------------------------------------------------------------------------


def _timestamp(t: datetime.datetime) -> Any:
    from google.protobuf import timestamp_pb2

    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t.astimezone(datetime.UTC).replace(tzinfo=None))
    return out


def _duration(d: datetime.timedelta) -> Any:
    from google.protobuf import duration_pb2

    out = duration_pb2.Duration()
    out.FromTimedelta(d)
    return out


def typed_string(fmt: str, v: str) -> Any:
    """A string of a schema format as CEL types it: timestamps and durations (as the protobuf
    well-known types, which the CEL runtime reads as such) and bytes."""
    if fmt in ("date-time", "datetime"):
        t = crdschema_formats.parse_date_time(v)
        return _timestamp(t) if t is not None else v
    if fmt == "date":
        try:
            d = datetime.date.fromisoformat(v)
        except ValueError:
            return v
        return _timestamp(datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.UTC))
    if fmt == "duration":
        dur = crdschema_formats.parse_duration(v)
        return _duration(dur) if dur is not None else v
    if fmt == "byte":
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            return v
    return v


def is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


# ---- the environment ----------------------------------------------------------------------------


def _decls() -> list[Any]:
    from cel_expr_python import cel

    t = cel.Type
    lst, dyn, s, b, i = t.List(t.DYN), t.DYN, t.STRING, t.BOOL, t.INT
    obj = t.Map(t.STRING, t.STRING)
    # the runtime dispatches on concrete kinds: `dyn` works only as the receiver
    elems = [
        ("int", t.INT),
        ("uint", t.UINT),
        ("double", t.DOUBLE),
        ("string", s),
        ("bool", b),
        ("bytes", t.BYTES),
        ("list", lst),
        ("map", t.Map(t.DYN, t.DYN)),
    ]

    def fn(name: str, *overloads: tuple[str, Any, list[Any], bool, Any]) -> Any:
        return cel.FunctionDecl(
            name,
            [
                cel.Overload(oid, ret, params, is_member=member, impl=impl)
                for oid, ret, params, member, impl in overloads
            ],
        )

    return [
        fn("isSorted", ("list_is_sorted", b, [lst], True, _is_sorted)),
        fn("sum", ("list_sum", dyn, [lst], True, _sum)),
        fn("min", ("list_min", dyn, [lst], True, _min)),
        fn("max", ("list_max", dyn, [lst], True, _max)),
        fn(
            "indexOf",
            *[(f"list_index_of_{n}", i, [lst, e], True, _index_of) for n, e in elems],
            ("string_index_of", i, [s, s], True, _str_index_of),
            ("string_index_of_int", i, [s, s, i], True, _str_index_of),
        ),
        fn(
            "lastIndexOf",
            *[(f"list_last_index_of_{n}", i, [lst, e], True, _last_index_of) for n, e in elems],
            ("string_last_index_of", i, [s, s], True, _str_last_index_of),
            ("string_last_index_of_int", i, [s, s, i], True, _str_last_index_of),
        ),
        fn("charAt", ("string_char_at_int", s, [s, i], True, _char_at)),
        fn("lowerAscii", ("string_lower_ascii", s, [s], True, lambda x: _ascii(x, False))),
        fn("upperAscii", ("string_upper_ascii", s, [s], True, lambda x: _ascii(x, True))),
        fn(
            "replace",
            ("string_replace_string_string", s, [s, s, s], True, _replace),
            ("string_replace_string_string_int", s, [s, s, s, i], True, _replace),
        ),
        fn(
            "split",
            ("string_split_string", t.List(s), [s, s], True, _split),
            ("string_split_string_int", t.List(s), [s, s, i], True, _split),
        ),
        fn(
            "substring",
            ("string_substring_int", s, [s, i], True, _substring),
            ("string_substring_int_int", s, [s, i, i], True, _substring),
        ),
        fn("trim", ("string_trim", s, [s], True, lambda x: x.strip())),
        fn(
            "join",
            ("list_join", s, [t.List(s)], True, lambda xs: "".join(xs)),
            ("list_join_string", s, [t.List(s), s], True, lambda xs, sep: sep.join(xs)),
        ),
        fn("find", ("string_find", s, [s, s], True, _find)),
        fn(
            "findAll",
            ("string_find_all", t.List(s), [s, s], True, _find_all),
            ("string_find_all_n", t.List(s), [s, s, i], True, _find_all),
        ),
        fn("url", ("string_to_url", obj, [s], False, _url)),
        fn("isURL", ("is_url_string", b, [s], False, _is_url)),
        fn("getScheme", ("url_get_scheme", s, [obj], True, lambda u: _u(u).scheme)),
        fn("getHost", ("url_get_host", s, [obj], True, _host)),
        fn("getHostname", ("url_get_hostname", s, [obj], True, _hostname)),
        fn("getPort", ("url_get_port", s, [obj], True, _port)),
        fn(
            "getEscapedPath",
            ("url_get_escaped_path", s, [obj], True, lambda u: quote(_u(u).path, safe="/%")),
        ),
        fn("getQuery", ("url_get_query", t.Map(s, t.List(s)), [obj], True, _query)),
        fn("quantity", ("string_to_quantity", obj, [s], False, _quantity)),
        fn("isQuantity", ("is_quantity_string", b, [s], False, _is_quantity)),
        fn("isInteger", ("quantity_is_integer", b, [obj], True, _is_integer)),
        fn("asInteger", ("quantity_get_integer", i, [obj], True, _as_integer)),
        fn(
            "asApproximateFloat",
            ("quantity_get_float", t.DOUBLE, [obj], True, lambda q: float(_qty_value(q))),
        ),
        fn("sign", ("quantity_get_sign", i, [obj], True, _sign)),
        fn(
            "add",
            (
                "quantity_add",
                obj,
                [obj, obj],
                True,
                lambda a, c: _from_decimal(_qty_value(a) + _qty_value(c)),
            ),
            (
                "quantity_add_int",
                obj,
                [obj, i],
                True,
                lambda a, c: _from_decimal(_qty_value(a) + c),
            ),
        ),
        fn(
            "sub",
            (
                "quantity_sub",
                obj,
                [obj, obj],
                True,
                lambda a, c: _from_decimal(_qty_value(a) - _qty_value(c)),
            ),
            (
                "quantity_sub_int",
                obj,
                [obj, i],
                True,
                lambda a, c: _from_decimal(_qty_value(a) - c),
            ),
        ),
        fn("compareTo", ("quantity_compare_to", i, [obj, obj], True, _cmp)),
        fn("isGreaterThan", ("quantity_gt", b, [obj, obj], True, lambda a, c: _cmp(a, c) > 0)),
        fn("isLessThan", ("quantity_lt", b, [obj, obj], True, lambda a, c: _cmp(a, c) < 0)),
        fn("sets.contains", ("sets_contains", b, [lst, lst], False, _contains_all)),
        fn(
            "sets.equivalent",
            (
                "sets_equivalent",
                b,
                [lst, lst],
                False,
                lambda a, c: _contains_all(a, c) and _contains_all(c, a),
            ),
        ),
        fn("sets.intersects", ("sets_intersects", b, [lst, lst], False, _intersects)),
        fn("isIP", ("is_ip_string", b, [s], False, is_ip)),
    ]


@functools.lru_cache(maxsize=1)
def env() -> Any:
    """The one CEL environment of validation rules (built on first use)."""
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_bindings, ext_math, ext_optional

    t = cel.Type
    return cel.NewEnv(
        variables={"self": t.DYN, "oldSelf": t.DYN, "__hasOld": t.BOOL},
        extensions=[
            ext_optional.ExtOptional(),
            ext_bindings.ExtBindings(),
            ext_math.ExtMath(),
        ],
        functions=_decls(),
    )
