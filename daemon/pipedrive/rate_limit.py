"""Keeping each Pipedrive account under its API call budget (polls, lookups, actions alike)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from daemon import clock as clock_module

MIN_WAIT_S = 0.01
# Pipedrive counts calls on its own clock, when they arrive: a window a little longer than
# its 60 s keeps any 60 s it sees within the limit despite latency jitter.
CLOCK_MARGIN_S = 2
# Pipedrive also limits each token per rolling 2 s (20 calls on the Lite plan, the floor of
# every plan); counted over 3 s for the same reason as above.
BURST_CALLS = 20
BURST_WINDOW_S = 3


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

    async def acquire(self) -> None:
        """Wait until one more call fits in the budget, then count it."""
        waited = False
        while True:
            now = self._clock.monotonic()
            pause = self._paused_until - now
            if pause > 0:
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

    def pause(self, seconds: float) -> None:
        """Pipedrive said 429: hold every call of this account for `seconds`."""
        self._on_wait()
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)
