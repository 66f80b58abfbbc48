"""The fake clock tests drive: sleeps end at once in virtual time, earliest deadline first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from daemon import clock as clock_module
from daemon.clock import SYSTEM, FakeClock

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_sleep_moves_wall_and_monotonic_time_together() -> None:
    clock = FakeClock(START, monotonic=0.0)
    await clock.sleep(90)
    assert clock.monotonic() == 90.0
    assert clock.now() == START + timedelta(seconds=90)


async def test_concurrent_sleepers_wake_in_deadline_order_in_overlapping_time() -> None:
    clock = FakeClock(START, monotonic=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    await asyncio.gather(sleeper("late", 5), sleeper("early", 2), sleeper("middle", 3))
    assert woke == [("early", 2.0), ("middle", 3.0), ("late", 5.0)]


async def test_advance_wakes_who_is_due_and_refuses_to_go_back() -> None:
    clock = FakeClock(START, monotonic=0.0)
    clock.advance(3600)
    assert clock.now() == START + timedelta(hours=1)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_a_cancelled_sleeper_does_not_hold_time_back() -> None:
    clock = FakeClock(START, monotonic=0.0)
    task = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    task.cancel()
    await clock.sleep(1)
    assert clock.monotonic() == 1.0


async def test_the_system_clock_is_aware_utc() -> None:
    assert SYSTEM.now().tzinfo is UTC
    assert SYSTEM.monotonic() <= SYSTEM.monotonic()


async def test_wait_times_out_on_the_clock() -> None:
    clock = FakeClock(START, monotonic=0.0)
    never = asyncio.get_running_loop().create_future()
    pending = await clock_module.wait(clock, {never}, 30)
    assert pending == {never}
    assert clock.monotonic() == 30.0


async def test_wait_returns_when_all_or_the_first_are_done() -> None:
    clock = FakeClock(START, monotonic=0.0)
    quick = asyncio.ensure_future(clock.sleep(1))
    slow = asyncio.ensure_future(clock.sleep(5))
    assert await clock_module.wait(clock, {quick, slow}, 60, first=True) == {slow}
    assert clock.monotonic() == 1.0
    assert await clock_module.wait(clock, {quick, slow}, 60) == set()
    assert clock.monotonic() == 5.0
