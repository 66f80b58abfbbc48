"""Keeping each Pipedrive account under its API call budget (polls, lookups, actions alike)."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon import clock as clock_module
from daemon import times
from daemon.errors import PipedriveRateLimited

MIN_WAIT_S = 0.01
# Pipedrive counts calls on its own clock, when they arrive: a window a little longer than
# its 60 s keeps any 60 s it sees within the limit despite latency jitter.
CLOCK_MARGIN_S = 2
# Pipedrive also limits each token per rolling 2 s (20 calls on the Lite plan, the floor of
# every plan); counted over 3 s for the same reason as above.
BURST_CALLS = 20
BURST_WINDOW_S = 3
# Pipedrive's own burst limit: per token, per rolling 2 s (20 calls on Lite, 40 Growth, ...).
PIPEDRIVE_BURST_WINDOW_S = 2

# How long a 429 pauses the account unless Pipedrive's daily budget is known to be spent: its
# burst window resets within 2 s, so a longer Retry-After (one of 999999 s was seen) is not
# believed past a minute; then calls are tried again.
MAX_BURST_PAUSE_S = 60.0
DEFAULT_PAUSE_S = 2.0  # Pipedrive's burst window, when the 429 names no wait
MIN_PAUSE_S = 1.0
# Pacing by Pipedrive's own burst headers: when an answer says this few calls or fewer are left
# in its window (`x-ratelimit-remaining`), the account's next call waits for the window's
# reset (`x-ratelimit-reset`, relative seconds). The margin covers calls already on their way
# (a page of a poll while a nudged read answers); the cap, a value too large to be the 2 s
# window's (the 429 pause above believes at most a minute, for the same reason).
BURST_MARGIN = 2
MAX_BURST_HOLD_S = 3.0
DAILY_BUDGET_SPENT = "Pipedrive's daily token budget is spent"
RATE_LIMITED = "Pipedrive answered 429 (rate limit)"


@dataclass(frozen=True)
class Pause:
    """How long a 429 holds the account's calls, and why (said by status and errors)."""

    seconds: float
    reason: str


def pause_after_429(
    *,
    retry_after: float | None,
    window_reset: float | None,
    daily_remaining: int | None,
    message: str,
    call_cost: int,
    to_daily_reset: float,
) -> Pause:
    """The pause a 429 asks for. Pipedrive answers 429 both for its 2 s burst window and for
    the company's daily token budget, and documents `Retry-After` for neither: a long wait is
    believed only when the budget is known to be spent (`x-daily-ratelimit-token-remaining`
    below the refused call's cost, or a body that says "daily"), and then until the daily
    reset at most; otherwise the burst window's `x-ratelimit-reset` or `Retry-After`, capped."""
    spent = (daily_remaining is not None and daily_remaining < call_cost) or (
        "daily" in message.lower()
    )
    if spent:
        asked = retry_after if retry_after is not None else to_daily_reset
        left = "" if daily_remaining is None else f" ({daily_remaining} tokens left)"
        return Pause(
            max(MIN_PAUSE_S, min(asked, to_daily_reset)),
            f"{DAILY_BUDGET_SPENT}{left}; it resets at midnight UTC",
        )
    known = [s for s in (retry_after, window_reset) if s is not None]
    seconds = min(known) if known else DEFAULT_PAUSE_S
    return Pause(max(MIN_PAUSE_S, min(seconds, MAX_BURST_PAUSE_S)), RATE_LIMITED)


def reset_seconds(text: str | None) -> float | None:
    """Seconds in an `x-ratelimit-reset` header (relative, a fraction allowed), None if absent
    or not a finite non-negative number: the one reading of that header."""
    try:
        seconds = float((text or "").strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def burst_hold(remaining: str | None, reset: str | None) -> float:
    """How long the account's next call waits after an answer carrying these
    `x-ratelimit-remaining` / `x-ratelimit-reset` values: until the burst window resets
    (capped at `MAX_BURST_HOLD_S`) once `BURST_MARGIN` calls or fewer are left in it, else 0.
    A missing or malformed header decides nothing (0): Pipedrive sometimes sends none."""
    left = (remaining or "").strip()
    seconds = reset_seconds(reset)
    if not (left.isascii() and left.isdigit()) or int(left) > BURST_MARGIN or seconds is None:
        return 0.0
    return min(seconds, MAX_BURST_HOLD_S)


def describe_pause(until: datetime, reason: str) -> str:
    """How a pause reads in an error (and so in status): `parse_pause` reads it back."""
    return f"calls paused until {times.format_rfc3339_z(until)} ({reason})"


_PAUSE = re.compile(r"calls paused until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \((.*)\)")


def parse_pause(text: str | None) -> tuple[datetime, str] | None:
    """(until, reason) of the pause an error names (see `describe_pause`), else None."""
    found = _PAUSE.search(text or "")
    if found is None:
        return None
    return times.parse_rfc3339(found.group(1)).astimezone(UTC), found.group(2)


class _MovingWindow:
    """At most `limit` calls in any `window_s` seconds: the times of the last `limit` calls,
    so a call fits once the oldest of them is `window_s` old (no edge where two fixed windows
    could let twice the limit through)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._calls: deque[float] = deque(maxlen=limit)

    def wait_s(self, now: float) -> float:
        """How long until one more call fits (0: now)."""
        if len(self._calls) < self.limit:
            return 0.0
        return max(0.0, self._calls[0] + self.window_s - now)

    def hit(self, now: float) -> None:
        self._calls.append(now)


class AccountRateLimiter:
    """At most `calls_per_minute` calls in any `window_s` (60) seconds (a moving window, so no burst
    at a window's edge can double it), at most `BURST_CALLS` in Pipedrive's 2 s burst window,
    a hold until that window resets when Pipedrive's headers say it is (nearly) spent (`hold`),
    and a pause for everyone after Pipedrive answers 429.

    The windows are counted here on the injected clock's monotonic time (the `limits` library's
    moving window reads the wall clock itself, so a test could not drive it; this is the same
    rule in a dozen lines, exact, and immune to the wall clock being set back)."""

    def __init__(
        self,
        calls_per_minute: int,
        window_s: int = 60 + CLOCK_MARGIN_S,
        burst: int = BURST_CALLS,
        burst_window_s: int = BURST_WINDOW_S,
        *,
        on_wait: Callable[[], None] = lambda: None,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        # Told of each wait (metrics): a 429's pause, or a call that found a window full.
        self._on_wait = on_wait
        self._clock = clock
        self._windows = (
            _MovingWindow(min(burst, calls_per_minute), burst_window_s),
            _MovingWindow(calls_per_minute, window_s),
        )
        self._paused_until = 0.0
        self._pause_reason = ""
        self._held_until = 0.0  # Pipedrive's burst window, as its headers report it

    async def acquire(self, max_wait_s: float | None = None) -> None:
        """Wait until one more call fits in the budget, then count it. A 429's pause longer
        than `max_wait_s` is not waited out: PipedriveRateLimited says until when and why."""
        waited = False
        while True:
            now = self._clock.monotonic()
            pause = self._paused_until - now
            if pause > 0:
                if max_wait_s is not None and pause > max_wait_s:
                    until = self._clock.now() + timedelta(seconds=pause)
                    raise PipedriveRateLimited(
                        describe_pause(until, self._pause_reason), retry_after=pause
                    )
                await self._clock.sleep(pause)  # a 429's pause: counted once, by `pause`
                continue
            wait = max(self._held_until - now, *(window.wait_s(now) for window in self._windows))
            if wait <= 0:
                for window in self._windows:
                    window.hit(now)
                return
            if not waited:
                self._on_wait()
                waited = True
            await self._clock.sleep(max(MIN_WAIT_S, wait))

    @property
    def paused(self) -> bool:
        """Whether calls are held after a 429 now."""
        return self._paused_until > self._clock.monotonic()

    def hold(self, seconds: float) -> None:
        """Pipedrive's headers say its burst window is (nearly) spent (see `burst_hold`): the
        next calls wait `seconds`, as for a full window of our own (no error, no 429)."""
        if seconds > 0:
            self._held_until = max(self._held_until, self._clock.monotonic() + seconds)

    def pause(self, seconds: float, reason: str = RATE_LIMITED) -> datetime:
        """Pipedrive said 429: hold every call of this account for `seconds`; returns the
        wall time the account is paused until."""
        self._on_wait()
        until = self._clock.monotonic() + seconds
        if until >= self._paused_until:
            self._paused_until, self._pause_reason = until, reason
        return self._clock.now() + timedelta(seconds=self._paused_until - self._clock.monotonic())
