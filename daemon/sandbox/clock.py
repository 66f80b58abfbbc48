"""Time formats of the Pipedrive API: v2 RFC 3339 at second precision, v1 "YYYY-MM-DD HH:MM:SS"."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
_V1 = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


def utc_now() -> datetime:
    """Wall clock in UTC, truncated to whole seconds like every Pipedrive timestamp."""
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_rfc3339(text: str) -> datetime | None:
    """Whole-second RFC 3339 only: v2 filters reportedly answer 400 to fractions and spaces."""
    if not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def parse_timestamp(text: str) -> datetime | None:
    """A write-side timestamp: RFC 3339 or the v1 form the v2 body descriptions still name."""
    if _V1.match(text):
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return None
    return parse_rfc3339(text)


def parse_date(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_clock_time(text: str) -> str | None:
    """'HH:MM' or 'HH:MM:SS' (activity due_time, duration) normalised to 'HH:MM:SS'."""
    if not _HHMM.match(text):
        return None
    return text if len(text) == 8 else f"{text}:00"
