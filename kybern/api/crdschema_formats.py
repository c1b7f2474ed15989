"""String formats of CRD schemas (`format:` on `type: string`), checked as Kubernetes' OpenAPI
validator does: the formats it knows (date, date-time, duration, byte, uri, email, hostname,
ipv4, ipv6, cidr, mac, uuid/uuid3/uuid4/uuid5, isbn/isbn10/isbn13, creditcard, ssn, hexcolor,
rgbcolor, bsonobjectid, password) are checked, any other format is accepted unchecked.
Numeric formats (int32, int64, float, double) describe numbers and are not checked here."""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_DURATION_GO = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w))+$")
_DURATION_WORDS = re.compile(
    r"^\s*(\d+)\s*(ns|us|µs|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|"
    r"sec|minutes?|mins?|hours?|hr|days?|weeks?|wk)\s*$"
)
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_MAC = re.compile(
    r"^([0-9A-Fa-f]{2}([:-])){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}([:-])){7}[0-9A-Fa-f]{2}$|"
    r"^([0-9A-Fa-f]{2}([:-])){19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$|"
    r"^([0-9A-Fa-f]{4}\.){3}[0-9A-Fa-f]{4}$|^([0-9A-Fa-f]{4}\.){9}[0-9A-Fa-f]{4}$"
)
_UUID = {
    "uuid": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I),
    "uuid3": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I),
    "uuid4": re.compile(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I
    ),
    "uuid5": re.compile(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I
    ),
}
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGBCOLOR = re.compile(
    r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])"
    r"\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
)
_BSON = re.compile(r"^[0-9a-fA-F]{24}$")
_CREDIT = re.compile(
    r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|"
    r"3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})$"
)


def _date(s: str) -> bool:
    m = _DATE.match(s)
    if not m:
        return False
    try:
        datetime.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def parse_date_time(s: str) -> datetime.datetime | None:
    """An RFC 3339 date-time (as the `date-time` format accepts it), None if not one."""
    m = _DATE_TIME.match(s)
    if not m:
        return None
    frac = (m[7] or ".0")[1:7].ljust(6, "0")
    tz = datetime.UTC
    if m[8] and m[8] not in "Zz":
        sign = -1 if m[8][0] == "-" else 1
        digits = m[8][1:].replace(":", "")
        tz = datetime.timezone(
            sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        )
    try:
        return datetime.datetime(
            int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(frac), tz
        )
    except ValueError:
        return None


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")


def parse_duration(s: str) -> datetime.timedelta | None:
    """A Go-style duration (`1h30m`, `250ms`, also days/weeks) or `3 days`; None if invalid."""
    if _DURATION_GO.match(s):
        sign = -1.0 if s.startswith("-") else 1.0
        total = sum(float(n) * _UNITS[u] for n, u in _GO_PART.findall(s))
        return datetime.timedelta(seconds=sign * total)
    m = _DURATION_WORDS.match(s)
    if m:
        unit = m[2]
        for key, secs in (
            ("ns", 1e-9),
            ("nano", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("micro", 1e-6),
            ("ms", 1e-3),
            ("milli", 1e-3),
            ("sec", 1.0),
            ("min", 60.0),
            ("hour", 3600.0),
            ("hr", 3600.0),
            ("day", 86400.0),
            ("week", 604800.0),
            ("wk", 604800.0),
        ):
            if unit.startswith(key):
                return datetime.timedelta(seconds=int(m[1]) * secs)
        return datetime.timedelta(seconds=int(m[1]) * _UNITS[unit])
    return None


def _byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _uri(s: str) -> bool:
    if not s or any(c.isspace() for c in s):
        return False
    try:
        parts = urlsplit(s)
    except ValueError:
        return False
    return bool(parts.scheme) or s.startswith("/")


def _ip(version: int) -> Callable[[str], bool]:
    def check(s: str) -> bool:
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False

    return check


def _cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _isbn10(s: str) -> bool:
    d = s.replace("-", "").replace(" ", "")
    if len(d) != 10 or not d[:9].isdigit() or not (d[9].isdigit() or d[9] in "Xx"):
        return False
    total = sum((10 - i) * int(c) for i, c in enumerate(d[:9]))
    total += 10 if d[9] in "Xx" else int(d[9])
    return total % 11 == 0


def _isbn13(s: str) -> bool:
    d = s.replace("-", "").replace(" ", "")
    if len(d) != 13 or not d.isdigit():
        return False
    return sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(d)) % 10 == 0


def _luhn(s: str) -> bool:
    d = s.replace("-", "").replace(" ", "")
    if not _CREDIT.match(d):
        return False
    total = 0
    for i, c in enumerate(reversed(d)):
        n = int(c)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


CHECKS: dict[str, Callable[[str], bool]] = {
    "date": _date,
    "date-time": lambda s: parse_date_time(s) is not None,
    "datetime": lambda s: parse_date_time(s) is not None,
    "duration": lambda s: parse_duration(s) is not None,
    "byte": _byte,
    "uri": _uri,
    "email": lambda s: _EMAIL.match(s) is not None,
    "hostname": lambda s: len(s) <= 255 and _HOSTNAME.match(s) is not None,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "mac": lambda s: _MAC.match(s) is not None,
    "uuid": lambda s: _UUID["uuid"].match(s) is not None,
    "uuid3": lambda s: _UUID["uuid3"].match(s) is not None,
    "uuid4": lambda s: _UUID["uuid4"].match(s) is not None,
    "uuid5": lambda s: _UUID["uuid5"].match(s) is not None,
    "isbn": lambda s: _isbn10(s) or _isbn13(s),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _luhn,
    "ssn": lambda s: _SSN.match(s) is not None,
    "hexcolor": lambda s: _HEXCOLOR.match(s) is not None,
    "rgbcolor": lambda s: _RGBCOLOR.match(s) is not None,
    "bsonobjectid": lambda s: _BSON.match(s) is not None,
    "password": lambda s: True,
}


def check(fmt: str, value: str) -> bool:
    """Whether `value` is valid for string format `fmt` (unknown formats: always)."""
    fn = CHECKS.get(fmt)
    return True if fn is None else fn(value)
