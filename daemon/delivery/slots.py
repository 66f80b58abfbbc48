"""How many POSTs each subscription may start now: the pure part of sharing delivery slots.

Limits, all per subscription: `per_subscription_concurrency` in flight (1 when `ordered`),
`max_per_second` starts in any sliding one-second window, nothing while disabled, and one
probe at a time, when due, while paused. `Slots` keeps the counts; the Deliverer asks it
before each claim and tells it what started and finished.

Sharing between subscriptions is a reserve: `reserve` of the process's slots can only be
taken by a subscription that has nothing in flight, one slot at a time. A consumer that
hangs, or answers slowly, always has POSTs in flight, so however many such subscriptions
there are they can hold at most `concurrency - reserve` slots together, and the general
slots are split evenly among the busy subscriptions. A healthy subscription's POSTs finish in
milliseconds, so its next event nearly always finds it with nothing in flight and starts at
once from the reserve. (Round-robin alone would not do: a hanging POST holds its slot for the
whole timeout whatever the order of claims; shorter timeouts would punish slow consumers
that do answer.)
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from daemon.model import endpoint_health

WINDOW_S = 1.0  # `max_per_second` counts starts in any window this long
RATE_SPAN_MIN_S = 0.1  # `start_rate` never divides by less


@dataclass(frozen=True)
class Limits:
    concurrency: int
    ordered: bool = False
    max_per_second: int | None = None

    @property
    def in_flight_cap(self) -> int:
        return 1 if self.ordered else self.concurrency


@dataclass(frozen=True)
class Plan:
    capacity: dict[str, int]  # at most this many more POSTs per subscription
    shared: int  # of which at most this many for subscriptions with POSTs in flight
    newcomers: frozenset[str]  # nothing in flight: may take one reserved slot


def reserve_for(concurrency: int) -> int:
    """A quarter of the slots, at least one (none when there is only one slot)."""
    return max(1, concurrency // 4) if concurrency > 1 else 0


class Slots:
    def __init__(self, limits: Mapping[str, Limits], concurrency: int = 64) -> None:
        self._limits = dict(limits)
        self._concurrency = concurrency
        self._reserve = reserve_for(concurrency)
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
        self, states: Mapping[str, endpoint_health.Health], now: datetime, moment: float
    ) -> dict[str, int]:
        """How many rows of each subscription a claim may take now (`moment`: monotonic s)."""
        result: dict[str, int] = {}
        for name, limits in self._limits.items():
            state = states.get(name, endpoint_health.HEALTHY)
            free = limits.in_flight_cap - self.in_flight[name]
            if state.state == "disabled":
                free = 0
            elif state.state == "paused":
                free = 1 if self.in_flight[name] == 0 and state.may_probe(now) else 0
            if limits.max_per_second is not None:
                free = min(free, limits.max_per_second - len(self._window(name, moment)))
            result[name] = max(0, free)
        return result

    def plan(
        self, states: Mapping[str, endpoint_health.Health], now: datetime, moment: float
    ) -> Plan:
        """`capacity`, with the even share of the general slots and who may use the reserve."""
        capacity = self.capacity(states, now, moment)
        busy = [name for name in self._limits if self.in_flight[name] > 0]
        general = self._concurrency - self._reserve
        share = max(1, general // max(1, len(busy)))
        for name in busy:
            capacity[name] = max(0, min(capacity[name], share - self.in_flight[name]))
        total = sum(self.in_flight.values())
        newcomers = frozenset(
            name for name in self._limits if self.in_flight[name] == 0 and capacity[name] > 0
        )
        return Plan(capacity, max(0, general - total), newcomers)

    def started(self, name: str, moment: float) -> None:
        self.in_flight[name] += 1
        if name in self._starts:
            self._window(name, moment).append(moment)  # pruned here: bounded by the rate

    def start_rate(self, name: str, moment: float) -> float:
        """POSTs started per second lately: how fast this subscription's consumer takes them.
        Measured over the last second's starts, from the first of them, so it rises within a
        tenth of a second when a backlog begins rather than after a whole second."""
        if name not in self._starts:
            return 0.0
        starts = self._window(name, moment)
        return len(starts) / max(RATE_SPAN_MIN_S, moment - starts[0]) if starts else 0.0

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
