"""The per-account budget: never more calls than allowed in any window, and 429 pauses.
Time is a `FakeClock`: the waits happen in virtual time, so the test takes no real seconds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from daemon.clock import FakeClock
from daemon.errors import PipedriveRateLimited
from daemon.pipedrive import rate_limit
from daemon.pipedrive.rate_limit import AccountRateLimiter


async def test_no_window_holds_more_than_the_budget() -> None:
    # 5 calls per 1 s window stands in for 100 per 60 s: same code, a test-sized window.
    clock = FakeClock()
    limiter = AccountRateLimiter(5, window_s=1, burst_window_s=1, clock=clock)
    stamps: list[float] = []

    async def caller() -> None:
        for _ in range(4):
            await limiter.acquire()
            stamps.append(clock.monotonic())

    await asyncio.gather(*(caller() for _ in range(3)))  # 12 calls from concurrent callers
    stamps.sort()
    assert len(stamps) == 12
    for index in range(len(stamps) - 5):
        assert stamps[index + 5] - stamps[index] >= 1.0, "6 calls inside one window"
    assert stamps[-1] - stamps[0] == 2.0  # 12 calls at 5 per second need two refills, no more


async def test_a_429_pauses_every_caller_of_the_account() -> None:
    clock = FakeClock()
    limiter = AccountRateLimiter(100, clock=clock)
    limiter.pause(0.3)
    assert limiter.paused
    started = clock.monotonic()
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    assert clock.monotonic() - started >= 0.3 - 1e-9  # float: 1000.3 - 1000 < 0.3
    assert not limiter.paused


async def test_bursts_stay_within_pipedrives_two_second_window() -> None:
    # 3 calls per 1 s stands in for 20 per 2 s (counted over 3 s), under a roomy minute budget.
    clock = FakeClock()
    limiter = AccountRateLimiter(100, burst=3, burst_window_s=1, clock=clock)
    stamps: list[float] = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(clock.monotonic())
    for index in range(len(stamps) - 3):
        assert stamps[index + 3] - stamps[index] >= 1.0, "4 calls inside one burst window"
    assert stamps[-1] - stamps[0] == 2.0  # and no slower than the window asks


async def test_a_wait_is_reported_once_per_call() -> None:
    clock = FakeClock()
    waits: list[None] = []
    limiter = AccountRateLimiter(1, window_s=60, clock=clock, on_wait=lambda: waits.append(None))
    await limiter.acquire()
    await limiter.acquire()  # waits a whole window, reported once
    assert clock.monotonic() == 1060.0 and len(waits) == 1


async def test_a_pause_longer_than_a_call_may_wait_fails_the_call_at_once_with_its_reason() -> None:
    clock = FakeClock()
    limiter = AccountRateLimiter(100, clock=clock)
    limiter.pause(3600, "Pipedrive's daily token budget is spent")
    started = clock.monotonic()
    with pytest.raises(PipedriveRateLimited) as caught:
        await limiter.acquire(max_wait_s=120)
    assert clock.monotonic() == started  # no waiting out an hour
    assert "daily token budget is spent" in str(caught.value)
    assert rate_limit.parse_pause(str(caught.value)) == (
        clock.now() + timedelta(seconds=3600),
        "Pipedrive's daily token budget is spent",
    )
    await limiter.acquire(max_wait_s=7200)  # a caller who may wait that long does
    assert clock.monotonic() - started >= 3600 - 1e-6


DAILY = "Pipedrive's daily token budget is spent"


@pytest.mark.parametrize(
    ("retry_after", "reset", "daily_left", "message", "seconds", "daily"),
    [
        # A Retry-After of 11 days, the burst window free in 2 s, budget left: 2 s.
        (999999.0, 2.0, 5000, "Request over limit", 2.0, False),
        # No burst header: the Retry-After, capped at a minute.
        (999999.0, None, None, "Request over limit", rate_limit.MAX_BURST_PAUSE_S, False),
        (5.0, None, None, "Request over limit", 5.0, False),
        # Nothing said: the burst window.
        (None, None, None, "Request over limit", rate_limit.DEFAULT_PAUSE_S, False),
        (0.0, 0.0, 10, "Request over limit", rate_limit.MIN_PAUSE_S, False),
        # The daily budget is spent (header 0, or the body says so): believed, to the reset.
        (999999.0, 2.0, 0, "Request over limit", 7200.0, True),
        (None, 2.0, 5, "Request over limit", 7200.0, True),  # less left than the call costs
        (600.0, None, None, "Daily token limit reached", 600.0, True),
        (None, None, 0, "Request over limit", 7200.0, True),
    ],
)
def test_how_long_a_429_pauses_the_account(
    retry_after: float | None,
    reset: float | None,
    daily_left: int | None,
    message: str,
    seconds: float,
    daily: bool,
) -> None:
    pause = rate_limit.pause_after_429(
        retry_after=retry_after,
        window_reset=reset,
        daily_remaining=daily_left,
        message=message,
        call_cost=10,
        to_daily_reset=7200.0,
    )
    assert pause.seconds == seconds
    assert (pause.reason.startswith(DAILY)) is daily


@pytest.mark.parametrize(
    ("remaining", "reset", "hold_s"),
    [
        ("0", "2", 2.0),  # the window is spent: wait for its reset
        ("2", "1", 1.0),  # within the margin: calls already on their way take the rest
        (" 1 ", "0.5", 0.5),
        ("3", "2", 0.0),  # room left: no wait
        ("40", "2", 0.0),
        ("0", "999999", rate_limit.MAX_BURST_HOLD_S),  # not the 2 s window: capped
        ("0", "0", 0.0),  # already reset
        (None, "2", 0.0),  # Pipedrive sometimes sends no rate headers
        ("0", None, 0.0),
        ("", "2", 0.0),
        ("zero", "2", 0.0),
        ("-1", "2", 0.0),
        ("0", "soon", 0.0),
        ("0", "-2", 0.0),
        ("0", "nan", 0.0),
        ("0", "inf", 0.0),
        ("²", "2", 0.0),  # a digit to str.isdigit, not to int()
    ],
)
def test_how_long_pipedrives_burst_headers_hold_the_next_call(
    remaining: str | None, reset: str | None, hold_s: float
) -> None:
    assert rate_limit.burst_hold(remaining, reset) == hold_s


async def test_a_hold_delays_the_next_calls_on_top_of_the_windows() -> None:
    clock = FakeClock()
    waits: list[None] = []
    limiter = AccountRateLimiter(100, on_wait=lambda: waits.append(None), clock=clock)
    await limiter.acquire()
    limiter.hold(1.5)
    limiter.hold(0.5)  # a shorter hold never shortens a longer one
    started = clock.monotonic()
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    assert clock.monotonic() - started == pytest.approx(1.5)
    assert len(waits) == 2  # each held call is a rate-limit wait, as for a full window
    assert not limiter.paused  # a hold is no 429 pause: nothing to fail a call for
    limiter.hold(0.0)
    before = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() == before


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (" 1.5 ", 1.5), ("0", 0.0), (None, None), ("", None), ("soon", None),
     ("-1", None), ("inf", None), ("nan", None)],
)  # fmt: skip
def test_one_reading_of_x_ratelimit_reset(header: str | None, seconds: float | None) -> None:
    # A 429's pause and the next call's pacing read the header the same way.
    assert rate_limit.reset_seconds(header) == seconds
