"""Time formats of the Pipedrive API: v2 RFC 3339 at second precision, v1 "YYYY-MM-DD HH:MM:SS"."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

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


def lead_time(moment: datetime) -> str:
    """v1 leads answer ISO 8601 with milliseconds, as in the spec example (…T11:30:36.551Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_iso8601(text: str) -> datetime | None:
    """v1 `updated_since` (notes, leads): RFC 3339, fractions allowed; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if "T" not in text:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class SandboxClock:
    """The sandbox's notion of now: the base clock, unless a test set or advanced it.

    Frozen time makes same-second edits and backdating deterministic; `advance` moves a frozen
    clock (freezing the wall clock first if needed). Thread-safe: one attribute swap.
    """

    def __init__(self, base: Callable[[], datetime] = utc_now) -> None:
        self._base = base
        self._frozen: datetime | None = None

    def __call__(self) -> datetime:
        frozen = self._frozen
        return frozen if frozen is not None else self._base()

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("the sandbox clock needs an aware datetime (UTC)")
        self._frozen = moment.astimezone(UTC).replace(microsecond=0)

    def advance(self, seconds: float) -> datetime:
        moment = self() + timedelta(seconds=seconds)
        self._frozen = moment.replace(microsecond=0)
        return self._frozen

    def release(self) -> None:
        """Back to the base clock."""
        self._frozen = None


def parse_any(stored: str) -> datetime:
    """A time the sandbox itself stored (v2, v1 or lead form); ValueError if it is none."""
    moment = parse_iso8601(stored.replace(" ", "T"))
    if moment is None:
        raise ValueError(f"not a stored time: {stored!r}")
    return moment
