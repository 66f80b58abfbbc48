"""Keeping each Pipedrive account under its API call budget (polls, lookups, actions alike)."""

from __future__ import annotations

import asyncio
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

MIN_WAIT_S = 0.01
# Pipedrive counts calls on its own clock, when they arrive: a window a little longer than
# its 60 s keeps any 60 s it sees within the limit despite latency jitter.
CLOCK_MARGIN_S = 2


class AccountRateLimiter:
    """At most `calls_per_minute` calls in any `window_s` (60) seconds (a moving window, so no burst
    at a window's edge can double it), and a pause for everyone after Pipedrive answers 429."""

    def __init__(self, calls_per_minute: int, window_s: int = 60 + CLOCK_MARGIN_S) -> None:
        self._item = RateLimitItemPerSecond(calls_per_minute, window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._paused_until = 0.0

    async def acquire(self) -> None:
        """Wait until one more call fits in the budget, then count it."""
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if await self._limiter.hit(self._item, "calls"):
                return
            stats = await self._limiter.get_window_stats(self._item, "calls")
            await asyncio.sleep(max(MIN_WAIT_S, stats.reset_time - time.time()))

    @property
    def paused(self) -> bool:
        """Whether calls are held after a 429 now."""
        return self._paused_until > time.monotonic()

    def pause(self, seconds: float) -> None:
        """Pipedrive said 429: hold every call of this account for `seconds`."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
