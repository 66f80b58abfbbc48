"""The one clock the daemon schedules by, injectable so tests drive time instead of waiting
(convoy's pkg/clock): wall time for what is stored, monotonic time for intervals, and sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# How many turns of the event loop a fake sleep waits before time jumps: enough for every
# task made runnable by the same step to run and go to sleep too, so concurrent sleepers wake
# in the order of their deadlines rather than the order they asked.
_SETTLE_TURNS = 8


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, UTC, aware."""
        ...

    def monotonic(self) -> float:
        """Seconds that only move forwards, for intervals and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real one."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM = SystemClock()


async def wait(
    clock: Clock,
    futures: Collection[asyncio.Future[Any]],
    seconds: float,
    *,
    first: bool = False,
) -> set[asyncio.Future[Any]]:
    """`asyncio.wait` with its timeout on `clock`: until all of `futures` are done (or the
    first of them, with `first`) or `seconds` have passed. Returns those still pending."""
    waiting = set(futures)
    pending = {future for future in waiting if not future.done()}
    if not pending or (first and pending != waiting):
        return pending
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        while pending and not timer.done():
            await asyncio.wait({*pending, timer}, return_when=asyncio.FIRST_COMPLETED)
            pending = {future for future in pending if not future.done()}
            if first and pending != waiting:
                break
    finally:
        timer.cancel()
    return pending


class FakeClock:
    """Time that moves only when a test says so (`advance`) or when every task is asleep on it:
    `sleep` returns at once, in virtual time, after the other runnable tasks have had their
    turn, and the earliest deadline wakes first. Wall and monotonic time move together."""

    def __init__(self, start: datetime | None = None, *, monotonic: float = 1000.0) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._monotonic = monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jump: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time on, waking whoever is due by then."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._move_to(self._monotonic + seconds)

    def _move_to(self, moment: float) -> None:
        if moment > self._monotonic:
            self._wall += timedelta(seconds=moment - self._monotonic)
            self._monotonic = moment
        while self._sleepers and self._sleepers[0][0] <= self._monotonic:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        deadline = self._monotonic + max(0.0, seconds)
        heapq.heappush(self._sleepers, (deadline, next(self._order), waiter))
        if self._jump is None or self._jump.done():
            self._jump = asyncio.create_task(self._jump_when_settled())
        await waiter

    async def _jump_when_settled(self) -> None:
        while self._sleepers:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            self._sleepers = [s for s in self._sleepers if not s[2].done()]  # cancelled
            heapq.heapify(self._sleepers)
            if self._sleepers:
                self._move_to(self._sleepers[0][0])


async def cancel(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and wait until every one has ended (what they raise is theirs: a
    background task that is stopped has nothing left to say)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
