"""Keeping each Pipedrive account under its API call budget (polls, lookups, actions alike)."""

from __future__ import annotations

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
            wait = max(window.wait_s(now) for window in self._windows)
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

    def pause(self, seconds: float, reason: str = RATE_LIMITED) -> datetime:
        """Pipedrive said 429: hold every call of this account for `seconds`; returns the
        wall time the account is paused until."""
        self._on_wait()
        until = self._clock.monotonic() + seconds
        if until >= self._paused_until:
            self._paused_until, self._pause_reason = until, reason
        return self._clock.now() + timedelta(seconds=self._paused_until - self._clock.monotonic())
