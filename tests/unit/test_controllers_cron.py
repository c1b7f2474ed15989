"""The cron parser and schedule arithmetic of the CronJob controller: fields, lists, ranges,
steps, names, descriptors, @every, time zones, the day-of-month/day-of-week rule, errors, and
the most recent activation (with many missed starts)."""

from __future__ import annotations

import datetime

import pytest

from kybern.controllers import cron


def ts(s: str) -> float:
    return datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.UTC).timestamp()


def iso(t: float | None) -> str:
    assert t is not None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def nexts(spec: str, start: str, n: int = 3, tz: str | None = None) -> list[str]:
    s = cron.parse(spec, tz)
    out, t = [], ts(start)
    for _ in range(n):
        nt = cron.next_after(s, t)
        out.append(iso(nt))
        assert nt is not None
        t = nt
    return out


def test_fields() -> None:
    s = cron.parse("*/15 1-3,22 1 JAN-mar mon-FRI")
    assert s.minutes == {0, 15, 30, 45}
    assert s.hours == {1, 2, 3, 22}
    assert s.doms == {1} and s.months == {1, 2, 3} and s.dows == {1, 2, 3, 4, 5}
    assert not s.dom_star and not s.dow_star
    assert cron.parse("5/20 * * * *").minutes == {5, 25, 45}  # N/step means N-max/step
    assert cron.parse("10-30/10 * * * *").minutes == {10, 20, 30}
    star = cron.parse("* * ? * *")
    assert star.dom_star and star.dow_star and len(star.minutes) == 60
    assert not cron.parse("* * */2 * *").dom_star  # a step > 1 is a restriction


@pytest.mark.parametrize(
    ("spec", "start", "want"),
    [
        (
            "* * * * *",
            "2024-01-01 00:00:30",
            ["2024-01-01 00:01", "2024-01-01 00:02", "2024-01-01 00:03"],
        ),
        (
            "*/20 * * * *",
            "2024-01-01 00:05",
            ["2024-01-01 00:20", "2024-01-01 00:40", "2024-01-01 01:00"],
        ),
        (
            "0 0 29 2 *",
            "2024-01-01 00:00",
            ["2024-02-29 00:00", "2028-02-29 00:00", "2032-02-29 00:00"],
        ),
        (
            "@hourly",
            "2024-01-01 10:30",
            ["2024-01-01 11:00", "2024-01-01 12:00", "2024-01-01 13:00"],
        ),
        (
            "@daily",
            "2024-12-31 12:00",
            ["2025-01-01 00:00", "2025-01-02 00:00", "2025-01-03 00:00"],
        ),
        (
            "@weekly",
            "2024-01-01 00:00",
            ["2024-01-07 00:00", "2024-01-14 00:00", "2024-01-21 00:00"],
        ),
        (
            "@monthly",
            "2024-01-31 00:00",
            ["2024-02-01 00:00", "2024-03-01 00:00", "2024-04-01 00:00"],
        ),
        (
            "@yearly",
            "2024-06-01 00:00",
            ["2025-01-01 00:00", "2026-01-01 00:00", "2027-01-01 00:00"],
        ),
        # both day fields restricted: either matches (the 13th, or any Friday)
        (
            "0 0 13 * fri",
            "2024-09-01 00:00",
            ["2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00"],
        ),
        # day of week restricted, day of month '*': only Fridays
        (
            "0 0 * * 5",
            "2024-09-01 00:00",
            ["2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00"],
        ),
        (
            "30 23 31 * *",
            "2024-02-01 00:00",
            ["2024-03-31 23:30", "2024-05-31 23:30", "2024-07-31 23:30"],
        ),
    ],
)
def test_next_after(spec: str, start: str, want: list[str]) -> None:
    assert nexts(spec, start) == want


def test_time_zone() -> None:
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer
    assert nexts("0 9 * * *", "2024-03-09 00:00", 2, "America/New_York") == [
        "2024-03-09 14:00",
        "2024-03-10 13:00",
    ]
    assert nexts("CRON_TZ=Asia/Tokyo 0 0 * * *", "2024-01-01 00:00", 1) == ["2024-01-01 15:00"]
    with pytest.raises(cron.CronError, match="bad location"):
        cron.parse("* * * * *", "Mars/Olympus")


def test_every() -> None:
    s = cron.parse("@every 1h30m")
    assert s.every == 5400
    assert cron.next_after(s, 1000.0) == 6400.0
    assert cron.parse_duration("1.5s") == 1.5
    assert cron.parse("@every 10ms").every == 1.0  # at least a second


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("* * * *", "expected exactly 5 fields"),
        ("60 * * * *", "above maximum"),
        ("* * 0 * *", "below minimum"),
        ("5-1 * * * *", "beyond end of range"),
        ("*/0 * * * *", "positive"),
        ("x * * * *", "failed to parse int"),
        ("* * * * 7", "above maximum"),
        ("@fortnightly", "unrecognized descriptor"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("", "empty spec"),
    ],
)
def test_errors(spec: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.parse(spec)


def test_impossible_date_has_no_next() -> None:
    assert cron.next_after(cron.parse("0 0 30 2 *"), ts("2024-01-01 00:00")) is None


def test_most_recent() -> None:
    s = cron.parse("*/10 * * * *")
    t, n = cron.most_recent(s, ts("2024-01-01 00:00"), ts("2024-01-01 00:35"))
    assert iso(t) == "2024-01-01 00:30" and n == 3
    assert cron.most_recent(s, ts("2024-01-01 00:00"), ts("2024-01-01 00:05")) == (None, 0)
    # a year of missed minutes: found without walking every one, and flagged as > 100
    every_minute = cron.parse("* * * * *")
    t, n = cron.most_recent(every_minute, ts("2023-01-01 00:00"), ts("2024-01-01 12:34:56"))
    assert iso(t) == "2024-01-01 12:34" and n > 100
