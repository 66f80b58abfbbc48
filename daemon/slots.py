"""How many POSTs each subscription may start now: the pure part of sharing delivery slots.

Limits, all per subscription: `per_subscription_concurrency` in flight (1 when `ordered`),
`max_per_second` starts in any sliding one-second window, nothing while disabled, and one
probe at a time, when due, while paused. `Slots` keeps the counts; the Deliverer asks it
before each claim and tells it what started and finished.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from daemon import health

WINDOW_S = 1.0  # `max_per_second` counts starts in any window this long


@dataclass(frozen=True)
class Limits:
    concurrency: int
    ordered: bool = False
    max_per_second: int | None = None

    @property
    def in_flight_cap(self) -> int:
        return 1 if self.ordered else self.concurrency


class Slots:
    def __init__(self, limits: Mapping[str, Limits]) -> None:
        self._limits = dict(limits)
        self.in_flight: Counter[str] = Counter()
        self._starts: dict[str, deque[float]] = {name: deque() for name in limits}

    def reconfigure(self, limits: Mapping[str, Limits]) -> None:
        """A reload: new limits; what is in flight stays counted until it finishes, and a
        subscription no longer configured gets no capacity at all."""
        self._limits = dict(limits)
        self._starts = {name: self._starts.get(name, deque()) for name in limits}

    def _window(self, name: str, moment: float) -> deque[float]:
        starts = self._starts[name]
        while starts and starts[0] <= moment - WINDOW_S:
            starts.popleft()
        return starts

    def capacity(
        self, states: Mapping[str, health.Health], now: datetime, moment: float
    ) -> dict[str, int]:
        """How many rows of each subscription a claim may take now (`moment`: monotonic s)."""
        result: dict[str, int] = {}
        for name, limits in self._limits.items():
            state = states.get(name, health.HEALTHY)
            free = limits.in_flight_cap - self.in_flight[name]
            if state.state == "disabled":
                free = 0
            elif state.state == "paused":
                free = 1 if self.in_flight[name] == 0 and state.may_probe(now) else 0
            if limits.max_per_second is not None:
                free = min(free, limits.max_per_second - len(self._window(name, moment)))
            result[name] = max(0, free)
        return result

    def started(self, name: str, moment: float) -> None:
        self.in_flight[name] += 1
        if name in self._starts:
            self._starts[name].append(moment)

    def finished(self, name: str) -> None:
        self.in_flight[name] -= 1

    def next_window_opening(self, moment: float) -> float | None:
        """Seconds until a rate-capped subscription may start again, if one is waiting."""
        waits = [
            starts[0] + WINDOW_S - moment
            for name, starts in self._starts.items()
            if self._limits[name].max_per_second is not None
            and starts
            and len(self._window(name, moment)) >= (self._limits[name].max_per_second or 0)
        ]
        return max(0.0, min(waits)) if waits else None
