"""Keeping each Pipedrive account under its API call budget (polls, lookups, actions alike)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

MIN_WAIT_S = 0.01
# Pipedrive counts calls on its own clock, when they arrive: a window a little longer than
# its 60 s keeps any 60 s it sees within the limit despite latency jitter.
CLOCK_MARGIN_S = 2
# Pipedrive also limits each token per rolling 2 s (20 calls on the Lite plan, the floor of
# every plan); counted over 3 s for the same reason as above.
BURST_CALLS = 20
BURST_WINDOW_S = 3


class AccountRateLimiter:
    """At most `calls_per_minute` calls in any `window_s` (60) seconds (a moving window, so no burst
    at a window's edge can double it), at most `BURST_CALLS` in Pipedrive's 2 s burst window,
    and a pause for everyone after Pipedrive answers 429."""

    def __init__(
        self,
        calls_per_minute: int,
        window_s: int = 60 + CLOCK_MARGIN_S,
        burst: int = BURST_CALLS,
        burst_window_s: int = BURST_WINDOW_S,
        *,
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        # Told of each wait (metrics): a 429's pause, or a call that found a window full.
        self._on_wait = on_wait
        self._windows = (
            RateLimitItemPerSecond(min(burst, calls_per_minute), burst_window_s),
            RateLimitItemPerSecond(calls_per_minute, window_s),
        )
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._paused_until = 0.0

    async def acquire(self) -> None:
        """Wait until one more call fits in the budget, then count it."""
        waited = False
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # a 429's pause: counted once, by `pause`
                continue
            full = None
            for window in self._windows:
                if not await self._limiter.test(window, "calls"):
                    full = window
                    break
            if full is None:
                for window in self._windows:
                    await self._limiter.hit(window, "calls")
                return
            if not waited:
                self._on_wait()
                waited = True
            stats = await self._limiter.get_window_stats(full, "calls")
            await asyncio.sleep(max(MIN_WAIT_S, stats.reset_time - time.time()))

    @property
    def paused(self) -> bool:
        """Whether calls are held after a 429 now."""
        return self._paused_until > time.monotonic()

    def pause(self, seconds: float) -> None:
        """Pipedrive said 429: hold every call of this account for `seconds`."""
        self._on_wait()
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
