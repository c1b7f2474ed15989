"""Cron schedules as Kubernetes parses them (robfig/cron's standard parser): five fields —
minute, hour, day of month, month, day of week — with `*`/`?`, lists, ranges, steps (`*/5`,
`1-30/2`, `10/15`), month and weekday names, the descriptors @yearly/@annually, @monthly,
@weekly, @daily/@midnight, @hourly and `@every <duration>`, and an optional `TZ=`/`CRON_TZ=`
prefix. When both day fields are restricted a day matching either runs (cron's rule).
`next_after` and `most_recent` compute activation times in the schedule's time zone."""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass

_MONTHS = {
    m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())
}
_DOWS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (min, max, names) per field
_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 6, _DOWS),
)
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
UTC = datetime.UTC


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    doms: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    dows: frozenset[int] = frozenset()
    dom_star: bool = False
    dow_star: bool = False
    every: float = 0.0  # @every: a constant delay in seconds
    tz: datetime.tzinfo = UTC


def parse_duration(text: str) -> float:
    """A Go duration (`1h30m`, `90s`, `1.5h`)."""
    pos, total = 0, 0.0
    if not text:
        raise CronError("empty duration")
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise CronError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def _number(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"failed to parse int from {text}")
    return int(text)


def _field(expr: str, index: int) -> tuple[frozenset[int], bool]:
    """The values of one field and whether it counts as `*` (no step > 1)."""
    lo, hi, names = _BOUNDS[index]
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        range_step = part.split("/")
        if len(range_step) > 2:
            raise CronError(f"too many slashes: {part}")
        bounds = range_step[0].split("-")
        single = False
        if bounds[0] in ("*", "?"):
            if len(bounds) > 1:
                raise CronError(f"too many hyphens: {part}")
            start, end, part_star = lo, hi, True
        else:
            part_star = False
            start = _number(bounds[0], names)
            if len(bounds) == 1:
                end, single = start, True
            elif len(bounds) == 2:
                end = _number(bounds[1], names)
            else:
                raise CronError(f"too many hyphens: {part}")
        step = 1
        if len(range_step) == 2:
            step = _number(range_step[1], {})
            if single:
                end = hi
            if step > 1:
                part_star = False
        if start < lo:
            raise CronError(f"beginning of range ({start}) below minimum ({lo}): {part}")
        if end > hi:
            raise CronError(f"end of range ({end}) above maximum ({hi}): {part}")
        if start > end:
            raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        if step == 0:
            raise CronError(f"step of range should be a positive number: {part}")
        values.update(range(start, end + 1, step))
        star = star or part_star
    return frozenset(values), star


def parse(spec: str, time_zone: str | None = None) -> Schedule:
    text = spec.strip()
    tz: datetime.tzinfo = UTC
    name = time_zone or ""
    if text.startswith(("TZ=", "CRON_TZ=")):
        head, _, text = text.partition(" ")
        name = head.split("=", 1)[1]
        text = text.strip()
    if name:
        try:
            tz = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise CronError(f"provided bad location {name}: {e}") from None
    if not text:
        raise CronError("empty spec string")
    if text.startswith("@every"):
        delay = parse_duration(text[len("@every") :].strip())
        return Schedule(every=max(float(int(delay)), 1.0), tz=tz)
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    parsed = [_field(f, i) for i, f in enumerate(fields)]
    return Schedule(
        minutes=parsed[0][0],
        hours=parsed[1][0],
        doms=parsed[2][0],
        months=parsed[3][0],
        dows=parsed[4][0],
        dom_star=parsed[2][1],
        dow_star=parsed[4][1],
        tz=tz,
    )


def _day_matches(s: Schedule, t: datetime.datetime) -> bool:
    dom = t.day in s.doms
    dow = (t.weekday() + 1) % 7 in s.dows
    if s.dom_star or s.dow_star:
        return dom and dow
    return dom or dow


def _first_of_next_month(t: datetime.datetime) -> datetime.datetime:
    y, m = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=y, month=m, day=1, hour=0, minute=0)


def next_after(s: Schedule, after: float) -> float | None:
    """The first activation strictly after `after` (epoch seconds); None if none within five
    years (an impossible date such as Feb 30)."""
    if s.every:
        return float(int(after) + int(s.every))
    local = datetime.datetime.fromtimestamp(after, s.tz).replace(
        tzinfo=None, second=0, microsecond=0
    )
    t = local + datetime.timedelta(minutes=1)
    limit = t.year + 5
    while t.year <= limit:
        if t.month not in s.months:
            t = _first_of_next_month(t)
            continue
        if not _day_matches(s, t):
            t = t.replace(hour=0, minute=0) + datetime.timedelta(days=1)
            continue
        if t.hour not in s.hours:
            t = t.replace(minute=0) + datetime.timedelta(hours=1)
            continue
        if t.minute not in s.minutes:
            t += datetime.timedelta(minutes=1)
            continue
        ts = t.replace(tzinfo=s.tz).timestamp()
        if ts > after:
            return ts
        t += datetime.timedelta(minutes=1)  # a wall time repeated or skipped by DST
    return None


def most_recent(s: Schedule, earliest: float, now: float) -> tuple[float | None, int]:
    """The latest activation in (earliest, now] and how many there were (counting stops a
    little past 100, which is all a caller needs to warn about missed starts)."""
    t = next_after(s, earliest)
    if t is None or t > now:
        return None, 0
    last, count = t, 0
    while t is not None and t <= now and count <= 100:
        last, count = t, count + 1
        t = next_after(s, t)
    if t is None or t > now:
        return last, count
    window = 60.0
    while True:  # too many to walk: find the last one before now from behind
        cand = next_after(s, max(now - window, last))
        if cand is not None and cand <= now:
            break
        window *= 2
    last = cand
    t = next_after(s, cand)
    while t is not None and t <= now:
        last = t
        t = next_after(s, t)
    return last, count + 1
