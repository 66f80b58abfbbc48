"""Every time format the daemon reads or writes: what each parser takes and refuses, and the
exact text of each formatter a contract depends on."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from daemon import times

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PLUS_ONE = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # v1: UTC
        ("2026-01-02T03:04:05.250Z", datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)),
        ("2026-01-02T04:04:05+01:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_pipedrive(text: str, expected: datetime) -> None:
    parsed = times.parse_pipedrive(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-01-02", "expected a timestamp, got '2026-01-02'"),
        ("2026-01-02T03:04Z", "expected a timestamp"),
        ("yesterday", "expected a timestamp"),
        ("2026-02-30T00:00:00Z", "not a representable instant: '2026-02-30T00:00:00Z'"),
        ("0001-01-01T00:00:00+01:00", "not a representable instant"),  # before year 1 in UTC
    ],
)
def test_parse_pipedrive_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem.replace("(", r"\(")):
        times.parse_pipedrive(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04", datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),  # minutes are enough
        ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T04:04:05+01:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_date_time(text: str, expected: datetime) -> None:
    assert times.parse_date_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-01-02", "2026-13-01T00:00", "noon", "0001-01-01T00:00+01:00"]
)
def test_parse_date_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected an RFC 3339 date-time"):
        times.parse_date_time(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T01:00:00+01:00", datetime(2026, 1, 1, 1, tzinfo=PLUS_ONE)),  # zone kept
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = times.parse_rfc3339(text)
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "2026-01-01", "now", ""])
def test_parse_rfc3339_wants_a_zone(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339 time with a zone"):
        times.parse_rfc3339(text)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC)),
        (datetime(2026, 1, 1, 12), datetime(2026, 1, 1, 12, tzinfo=UTC)),  # zoneless is UTC
        (datetime(2026, 1, 1, 13, tzinfo=PLUS_ONE), datetime(2026, 1, 1, 12, tzinfo=UTC)),
    ],
)
def test_as_utc(moment: datetime, expected: datetime) -> None:
    assert times.as_utc(moment) == expected and times.as_utc(moment).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-02-28", date(2026, 2, 28)), ("2024-02-29", date(2024, 2, 29))],
)
def test_parse_date(text: str, expected: date) -> None:
    assert times.parse_date(text) == expected


@pytest.mark.parametrize("text", ["2026-02-29", "2026-2-28", "20260228", "2026-02-28T00:00"])
def test_parse_date_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected a date YYYY-MM-DD"):
        times.parse_date(text)


@pytest.mark.parametrize(
    ("text", "length", "expected"),
    [
        ("09:30", False, (9, 30, 0)),
        ("23:59:59", False, (23, 59, 59)),
        ("00:45", True, (0, 45, 0)),
        ("36:00", True, (36, 0, 0)),  # a duration's hours may pass 23
        ("1:30:15", True, (1, 30, 15)),
    ],
)
def test_parse_clock(text: str, length: bool, expected: tuple[int, int, int]) -> None:
    assert times.parse_clock(text, length=length) == expected


@pytest.mark.parametrize(
    ("text", "length", "problem"),
    [
        ("24:00", False, "expected a time of day HH:MM or HH:MM:SS, got '24:00'"),
        ("9:30", False, "expected a time of day"),
        ("12:60", False, "expected a time of day"),
        ("12:00:60", False, "expected a time of day"),
        ("01:75", True, "expected a duration HH:MM or HH:MM:SS, got '01:75'"),
        ("45", True, "expected a duration"),
    ],
)
def test_parse_clock_refuses(text: str, length: bool, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem):
        times.parse_clock(text, length=length)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        (" 5m ", 300.0),
        ("2h", 7200.0),
        ("1.5d", 129_600.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert times.parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "must be a duration such as"),
        ("2 weeks", "must be a duration such as"),
        ("-5s", "must be a duration such as"),
        (None, "must be a duration such as"),
        (math.inf, "must be a finite duration"),
        (math.nan, "must be a finite duration"),
    ],
)
def test_parse_duration_refuses(value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        times.parse_duration(value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("Tue, 24 Nov 2026 12:01:00 GMT", 60.0),
        ("Tue, 24 Nov 2026 12:02:00 GMT", 120.0),
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Tue, 24 Nov 2026 12:01:00 -0000", None),  # RFC 2822's "unknown zone" is naive
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert times.parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("header", "moment"),
    [
        ("Tue, 24 Nov 2026 12:00:00 GMT", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
        ("Tue, 24 Nov 2026 13:00:00 +0100", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
        ("Tue, 24 Nov 2026 12:00:00 -0000", None),  # no zone said
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_http_date(header: str | None, moment: datetime | None) -> None:
    parsed = times.parse_http_date(header)
    assert parsed == moment
    assert parsed is None or parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 4, 4, 5, tzinfo=PLUS_ONE), "2026-01-02T03:04:05Z"),
    ],
)
def test_format_rfc3339_z(moment: datetime, text: str) -> None:
    assert times.format_rfc3339_z(moment) == text


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 123_999, tzinfo=UTC), "2026-01-02T03:04:05.123Z"),
        (datetime(2026, 1, 2, 4, 4, 5, tzinfo=PLUS_ONE), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000Z"),  # zoneless is UTC
    ],
)
def test_format_connector(moment: datetime, text: str) -> None:
    assert times.format_connector(moment) == text


def test_the_other_formatters() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    assert times.format_iso(moment) == "2026-01-02T03:04:05.678000+00:00"
    assert times.format_iso_seconds(moment) == "2026-01-02T03:04:05+00:00"
    assert times.format_wall(moment) == "2026-01-02 03:04:05"
    assert times.format_wall(moment.astimezone(PLUS_ONE)) == "2026-01-02 03:04:05"
    assert times.format_wall_z(moment) == "2026-01-02 03:04:05Z"
    assert times.format_date(date(2026, 1, 2)) == "2026-01-02"
    assert times.format_clock((9, 5, 7)) == "09:05:07"
    assert times.format_clock((36, 0, 0), seconds=False) == "36:00"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),  # clock skew
        (0, "0s"),
        (4.9, "4s"),  # whole units, rounded down
        (119.9, "119s"),
        (120, "2m"),
        (7199, "119m"),
        (7200, "2h"),
        (172_799, "47h"),
        (172_800, "2d"),
        (10 * 86_400 + 3600, "10d"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert times.format_age(seconds) == text


def test_what_is_written_reads_back() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert times.parse_pipedrive(times.format_rfc3339_z(moment)) == moment
    assert times.parse_date_time(times.format_connector(moment)) == moment
    assert times.parse_rfc3339(times.format_iso(moment)) == moment
