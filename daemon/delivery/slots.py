"""How many POSTs each subscription may start now: the pure part of sharing delivery slots.

Limits, all per subscription: `per_subscription_concurrency` in flight (1 when `ordered`),
`max_per_second` starts in any sliding one-second window, nothing while disabled, and one
probe at a time, when due, while paused. `Slots` keeps the counts; the Deliverer asks it
before each claim and tells it what started and finished.

Sharing between subscriptions turns on whether a consumer answers. A subscription is
*answering* when its consumer answered a POST (any HTTP status) within `RESPONSIVE_S`;
otherwise, with POSTs in flight, it is *stalled*: its consumer hangs, or has not been heard
from yet. A hanging POST holds its slot for the whole timeout whatever the order of claims
(round-robin alone would not do), and shorter timeouts would punish slow consumers that do
answer, so:

- Stalled subscriptions start POSTs only within the general slots (`concurrency -
  reserve`), each up to an even share of them among the busy subscriptions (those with POSTs
  in flight), and never into the last `NEWCOMER_ROOM` free slots: however many hang, the
  `reserve` stays out of their reach.
- An answering subscription may take any slot the stalled ones do not hold, the reserve
  included, up to its own cap: the busy answering ones split `concurrency - stalled in
  flight - NEWCOMER_ROOM` evenly (never less than the even share above). So a slow consumer
  that keeps answering is not divided by the number of hanging ones beside it.
- A subscription with nothing in flight may always start one POST, from the reserve if need
  be; answering ones leave `NEWCOMER_ROOM` of it free for that. A healthy consumer's POST
  holds its slot for milliseconds, so its next event nearly always finds it idle and starts
  at once, however busy the others are.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from daemon.model import endpoint_health

WINDOW_S = 1.0  # `max_per_second` counts starts in any window this long
RATE_SPAN_MIN_S = 0.1  # `start_rate` never divides by less
# An answer this recent makes a subscription answering. Shorter than the default POST timeout
# (15 s), so a consumer that starts hanging loses its wider share before its first timeout;
# long enough that a consumer answering in seconds, in waves, keeps it between waves.
RESPONSIVE_S = 10.0
# Slots answering subscriptions leave to idle ones: a healthy POST holds one for
# milliseconds, so a few serve any number of subscriptions waking at once.
NEWCOMER_ROOM = 4


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
    shared: int  # of which at most this many for subscriptions not `answering`
    newcomers: frozenset[str]  # nothing in flight: one more even when `shared` is 0
    answering: frozenset[str]  # answered lately: bound by `capacity` alone


def reserve_for(concurrency: int) -> int:
    """A quarter of the slots, at least one (none when there is only one slot)."""
    return max(1, concurrency // 4) if concurrency > 1 else 0


class Slots:
    def __init__(self, limits: Mapping[str, Limits], concurrency: int = 64) -> None:
        self._limits = dict(limits)
        self._concurrency = concurrency
        self._reserve = reserve_for(concurrency)
        self.in_flight: Counter[str] = Counter()
        self._answered: dict[str, float] = {}  # when each consumer last answered (monotonic)
        self._starts: dict[str, deque[float]] = {name: deque() for name in limits}

    def reconfigure(self, limits: Mapping[str, Limits]) -> None:
        """A reload: new limits; what is in flight stays counted until it finishes, and a
        subscription no longer configured gets no capacity at all."""
        self._limits = dict(limits)
        self._starts = {name: self._starts.get(name, deque()) for name in limits}
        self._answered = {n: at for n, at in self._answered.items() if n in limits}

    def _window(self, name: str, moment: float) -> deque[float]:
        starts = self._starts[name]
        while starts and starts[0] <= moment - WINDOW_S:
            starts.popleft()
        return starts

    def capacity(
        self,
        states: Mapping[str, endpoint_health.Health],
        now: datetime,
        moment: float,
        held: Mapping[str, int] | None = None,
        names: Iterable[str] | None = None,
    ) -> dict[str, int]:
        """How many rows of each subscription (of `names`, or all) a claim may take now
        (`moment`: monotonic s); with `held`, how many may start: a subscription named there
        has only the slots this process holds of its cap (the rest are other replicas')."""
        result: dict[str, int] = {}
        for name in self._limits if names is None else names:
            limits = self._limits[name]
            state = states.get(name, endpoint_health.HEALTHY)
            cap = limits.in_flight_cap
            if held is not None and name in held:
                cap = min(cap, held[name])
            free = cap - self.in_flight[name]
            if state.state == "disabled":
                free = 0
            elif state.state == "paused":
                free = 1 if self.in_flight[name] == 0 and state.may_probe(now) else 0
            if limits.max_per_second is not None:
                free = min(free, limits.max_per_second - len(self._window(name, moment)))
            result[name] = max(0, free)
        return result

    def plan(
        self,
        states: Mapping[str, endpoint_health.Health],
        now: datetime,
        moment: float,
        held: Mapping[str, int] | None = None,
        names: Collection[str] | None = None,
    ) -> Plan:
        """`capacity`, with each busy subscription's share, how many more slots the stalled
        ones may take, and who may use the reserve (see the module's docstring). With `names`,
        the same for those alone (and the busy ones): a POST that ends plans only the
        subscriptions with rows claimed, not every configured one."""
        busy = [
            name for name, count in self.in_flight.items() if count > 0 and name in self._limits
        ]
        scope: Collection[str] = self._limits
        if names is not None:
            scope = {name for name in names if name in self._limits}.union(busy)
        capacity = self.capacity(states, now, moment, held, scope)
        answering = frozenset(name for name in scope if self.answered_lately(name, moment))
        stalled = [name for name in busy if name not in answering]
        general = self._concurrency - self._reserve
        share = max(1, general // max(1, len(busy)))
        stalled_in_flight = sum(self.in_flight[name] for name in stalled)
        room = min(NEWCOMER_ROOM, self._reserve)
        lendable = self._concurrency - room - stalled_in_flight
        answering_share = max(share, lendable // max(1, len(busy) - len(stalled)))
        for name in scope:
            if name in answering:
                limit = answering_share
            elif self.in_flight[name] > 0:
                limit = share
            else:
                continue  # idle, not answering: bound by `shared` (or its one reserved slot)
            capacity[name] = max(0, min(capacity[name], limit - self.in_flight[name]))
        newcomers = frozenset(
            name for name in scope if self.in_flight[name] == 0 and capacity[name] > 0
        )
        free = self._concurrency - room - sum(self.in_flight.values())
        shared = max(0, min(general - stalled_in_flight, free))
        return Plan(capacity, shared, newcomers, answering)

    def answered_lately(self, name: str, moment: float) -> bool:
        """Whether this subscription's consumer answered within the last `RESPONSIVE_S`."""
        answered = self._answered.get(name)
        return answered is not None and moment - answered <= RESPONSIVE_S

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

    def finished(self, name: str, moment: float, *, answered: bool) -> None:
        """A POST ended at `moment`; `answered`: its consumer sent a reply (any status), where
        a timeout, a refused connection or a POST never sent is no answer."""
        self.in_flight[name] -= 1
        if answered:
            self._answered[name] = moment

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
