"""Every time the daemon reads or writes, parsed and formatted in one place, so each format a
contract depends on (Pipedrive's filters, the connector's payloads, `status`) has one home.

Parsers raise `ValueError` with a message a caller can put after the name of the field, except
`parse_retry_after`, whose header is advice that may be absent or bad (None).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

# v2 gives RFC 3339 ("2026-01-02T03:04:05Z"), v1 "2026-01-02 03:04:05" (UTC), leads add millis.
_PIPEDRIVE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
# A date-time field must carry a time of day: fromisoformat alone takes a bare date as midnight.
_DATE_TIME_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_OF_DAY = re.compile(r"(?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?")
# A length of time is not a time of day: its hours may pass 23.
_LENGTH = re.compile(r"(?P<h>\d{1,4}):(?P<m>\d{2})(?::(?P<s>\d{2}))?")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_DURATION_EXAMPLES = 'must be a duration such as 30, "30s", "5m" or "2h"'
_SECONDS_PER_MINUTE = _MINUTES_PER_HOUR = 60
_HOURS_PER_DAY = 24
_AGE_STEPS = ((120, 1, "s"), (7200, 60, "m"), (172_800, 3600, "h"))  # below, per unit, unit
_SECONDS_PER_DAY = 86_400


# Reading


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a zoneless time is UTC already (Pipedrive, SQLite)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_rfc3339(text: str) -> datetime:
    """A time a person wrote (config `start`, `--since`): RFC 3339 with a zone, kept in it."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an RFC 3339 time with a zone, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"expected an RFC 3339 time with a zone, got {text!r}")
    return moment


def parse_pipedrive(text: str) -> datetime:
    """A Pipedrive timestamp (v2 RFC 3339 or v1 `YYYY-MM-DD hh:mm:ss`, whole seconds with an
    optional fraction) in UTC. Anything that is not a real instant (e.g.
    "0001-01-01T00:00:00+01:00", before year 1 in UTC) is refused, not a crash."""
    if not _PIPEDRIVE.match(text):
        raise ValueError(f"expected a timestamp, got {text!r}")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
        return as_utc(moment)
    except (ValueError, OverflowError):
        raise ValueError(f"not a representable instant: {text!r}") from None


def parse_date_time(text: str) -> datetime:
    """A date-time field of a Pipedrive object, or one SQLite hands back as text: ISO 8601 down
    to at least minutes, in UTC (a zoneless one is UTC, as Pipedrive documents its times and
    SQLite stores ours). Looser than `parse_pipedrive`."""
    if _DATE_TIME_PREFIX.match(text):
        try:
            return as_utc(datetime.fromisoformat(text))
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"expected an RFC 3339 date-time, got {text!r}")


def parse_date(text: str) -> date:
    """`YYYY-MM-DD`, a real calendar date."""
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}")


def parse_clock(text: str, *, length: bool = False) -> tuple[int, int, int]:
    """(hours, minutes, seconds) of `HH:MM[:SS]`: a time of day up to 23:59:59, or with
    `length` a duration whose hours may pass 23 (an activity's `duration`)."""
    match = (_LENGTH if length else _TIME_OF_DAY).fullmatch(text)
    if match:
        hours, minutes, seconds = int(match["h"]), int(match["m"]), int(match["s"] or 0)
        in_range = minutes < _MINUTES_PER_HOUR and seconds < _SECONDS_PER_MINUTE
        if in_range and (length or hours < _HOURS_PER_DAY):
            return hours, minutes, seconds
    what = "a duration" if length else "a time of day"
    raise ValueError(f"expected {what} HH:MM or HH:MM:SS, got {text!r}")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as "5s", "30m", "2h", "1d"."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_EXAMPLES)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
    else:
        raise ValueError(_DURATION_EXAMPLES)
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration")
    return seconds


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (a reply's `Date`, a Retry-After date) in UTC; None if absent, bad or
    without a zone: a header is advice, not a contract."""
    try:
        moment = parsedate_to_datetime(value or "")
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


# Writing


def format_rfc3339_z(moment: datetime) -> str:
    """`2026-01-01T12:00:00Z`: Pipedrive v2 filters take whole seconds only (fractions: 400)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_connector(moment: datetime) -> str:
    """`yyyy-MM-ddTHH:mm:ss.fffZ` in UTC, the connector's date-time format (milliseconds
    truncated); a value without a zone is taken as UTC, as Pipedrive documents its times."""
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def format_date(day: date) -> str:
    """`YYYY-MM-DD`."""
    return day.isoformat()


def format_clock(value: tuple[int, int, int], *, seconds: bool = True) -> str:
    """`HH:MM:SS`, or `HH:MM` without `seconds`, from (hours, minutes, seconds)."""
    hours, minutes, secs = value
    return f"{hours:02d}:{minutes:02d}:{secs:02d}" if seconds else f"{hours:02d}:{minutes:02d}"


def format_iso(moment: datetime) -> str:
    """Full ISO 8601 with the zone (`status --json`, the outbox's JSON): machines read it."""
    return moment.isoformat()


def format_iso_seconds(moment: datetime) -> str:
    """ISO 8601 to the second with the zone, for messages and log fields."""
    return moment.isoformat(timespec="seconds")


def format_wall(moment: datetime) -> str:
    """`2026-01-01 12:00:00` (UTC), for people: the `status` table and the admin page."""
    return f"{as_utc(moment):%Y-%m-%d %H:%M:%S}"


def format_wall_short(moment: datetime, now: datetime) -> str:
    """`12:00:00` when `moment` falls on `now`'s day (UTC), else `2026-01-01 12:00`: the
    `status` table, where a column of full timestamps would crowd out the states."""
    utc = as_utc(moment)
    if utc.date() == as_utc(now).date():
        return f"{utc:%H:%M:%S}"
    return f"{utc:%Y-%m-%d %H:%M}"


def format_wall_z(moment: datetime) -> str:
    """`2026-01-01 12:00:00Z`: `format_wall` where the zone is not said around it (`status`'s
    daemon line)."""
    return format_wall(moment) + "Z"


def format_age(seconds: float) -> str:
    """How long ago, for people: whole units rounded down, `59s`, `119s`, `2m`, `119m`, `2h`,
    `47h`, `2d` (a negative age, from clock skew, is `0s`)."""
    whole = max(0, int(seconds))
    for below, unit_s, unit in _AGE_STEPS:
        if whole < below:
            return f"{whole // unit_s}{unit}"
    return f"{whole // _SECONDS_PER_DAY}d"
