"""The per-account budget: never more calls than allowed in any window, and 429 pauses."""

from __future__ import annotations

import asyncio
import time

from daemon.pipedrive.rate_limit import AccountRateLimiter


async def test_no_window_holds_more_than_the_budget() -> None:
    # 5 calls per 1 s window stands in for 100 per 60 s: same code, a test-sized window.
    limiter = AccountRateLimiter(5, window_s=1, burst_window_s=1)
    stamps: list[float] = []

    async def caller() -> None:
        for _ in range(4):
            await limiter.acquire()
            stamps.append(time.monotonic())

    await asyncio.gather(*(caller() for _ in range(3)))  # 12 calls from concurrent callers
    stamps.sort()
    assert len(stamps) == 12
    for index in range(len(stamps) - 5):
        assert stamps[index + 5] - stamps[index] >= 0.99, "6 calls inside one window"
    assert stamps[-1] - stamps[0] >= 2.0  # 12 calls at 5 per second need two refills


async def test_a_429_pauses_every_caller_of_the_account() -> None:
    limiter = AccountRateLimiter(100)
    limiter.pause(0.3)
    started = time.monotonic()
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    assert time.monotonic() - started >= 0.29


async def test_bursts_stay_within_pipedrives_two_second_window() -> None:
    # 3 calls per 1 s stands in for 20 per 2 s (counted over 3 s), under a roomy minute budget.
    limiter = AccountRateLimiter(100, burst=3, burst_window_s=1)
    stamps: list[float] = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(time.monotonic())
    for index in range(len(stamps) - 3):
        assert stamps[index + 3] - stamps[index] >= 0.99, "4 calls inside one burst window"
