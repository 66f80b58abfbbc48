"""Prometheus metrics: counters the daemon's parts bump where an outcome is known, and gauges
read from the database at scrape time.

Every part takes a `Metrics` in its constructor; the default, `NONE`, does nothing, so tests
and commands that do not serve `/metrics` pay nothing. `PrometheusMetrics` keeps its own
registry (never the process-global one), so several daemons can run in one test process.
Label values are account names, subscription names, trigger names, object types and route
templates: bounded by the config, never an item id.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from daemon import clock as clock_module
from daemon.model import deliveries, subscription_state
from daemon.pipedrive import costs

PREFIX = "pipedrive_triggers_"
# Detection to delivery: from a second (a live consumer) to the three days of retries.
LATENCY_BUCKETS_S = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400,
)  # fmt: skip
# The `state` label values of the `subscription_state` gauge, each 0 or 1 (`not_started`).
STATES = tuple(state.value for state in subscription_state.State)
REFUSED_PREFIX = "refused:"  # how `targets` words a refusal by the private-address guard


class Metrics:
    """What the daemon reports as it works. This base class does nothing: see `NONE`."""

    def poll(self, account: str, object_type: str, *, ok: bool) -> None:
        """A poll cycle of the feed (account, object type) ended."""

    def api_call(self, account: str, method: str, path: str, status: str) -> None:
        """One request to Pipedrive ended: `status` is the HTTP status, `timeout` or `error`."""

    def rate_limit_wait(self, account: str) -> None:
        """A call had to wait for the account's rate limit (its window, or a 429's pause)."""

    def events(self, new_events: Sequence[deliveries.NewEvent]) -> None:
        """A poll committed these events to the outbox."""

    def future_dated(self, account: str, object_type: str, count: int) -> None:
        """A poll stored `count` new item versions dated after the listing that served them."""

    def delivery(self, outcome: deliveries.Outcome) -> None:
        """One delivery attempt's outcome is known."""

    def replica(self, live: ReplicaFigures) -> None:
        """This process's replica figures, read at every scrape."""


@dataclass(frozen=True)
class ReplicaFigures:
    """Read at scrape time: the replica's name, how many accounts it polls, and (in instant
    mode) the calls its ingress answered by outcome."""

    instance: str
    accounts_held: Callable[[], int]
    nudges: Callable[[], Mapping[str, int]] | None = None


class _Replica(Collector):
    def __init__(self, figures: ReplicaFigures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "replica",
            "This replica's [cluster] instance (always 1): joins its series to its name.",
            labels=["instance"],
        )
        info.add_metric([self._figures.instance], 1)
        held = GaugeMetricFamily(
            PREFIX + "accounts_held", "Accounts whose lease this replica holds: it polls them."
        )
        held.add_metric([], self._figures.accounts_held())
        yield from (info, held)
        if self._figures.nudges is not None:
            nudges = CounterMetricFamily(
                PREFIX + "instant_nudges",
                "Calls of Pipedrive's webhooks to this replica's ingress, by outcome.",
                labels=["outcome"],
            )
            for outcome, count in self._figures.nudges().items():
                nudges.add_metric([outcome], count)
            yield nudges


NONE = Metrics()


def delivery_outcome(outcome: deliveries.Outcome) -> str:
    """The `outcome` label: delivered, retry, dead, or refused (the guard refused the callback's
    address and the event will be retried). An attempt that dead-letters counts as dead,
    whatever failed, so `dead` counts every event that reached the dead letters."""
    if outcome.verdict != "retry":
        return outcome.verdict
    if outcome.error is not None and outcome.error.startswith(REFUSED_PREFIX):
        return "refused"
    return "retry"


class PrometheusMetrics(Metrics):
    """Counters in a registry of their own; also, for `/readyz`, since when each feed has been
    failing."""

    def __init__(self, *, clock: clock_module.Clock = clock_module.SYSTEM) -> None:
        self._monotonic = clock.monotonic  # how long a feed has failed is an interval
        self.registry = CollectorRegistry(auto_describe=True)
        self._polls = Counter(
            PREFIX + "polls_total",
            "Poll cycles by account, object type and outcome (ok, failed).",
            ["account", "object", "outcome"],
            registry=self.registry,
        )
        self._api_calls = Counter(
            PREFIX + "api_calls_total",
            "Pipedrive API requests by account, endpoint (method and route template) and status.",
            ["account", "endpoint", "status"],
            registry=self.registry,
        )
        self._api_tokens = Counter(
            PREFIX + "api_tokens_total",
            "Pipedrive API tokens spent, by account (from the daemon's table of route costs).",
            ["account"],
            registry=self.registry,
        )
        self._rate_limit_waits = Counter(
            PREFIX + "rate_limit_waits_total",
            "Pipedrive calls that waited for the account's rate limit.",
            ["account"],
            registry=self.registry,
        )
        self._events = Counter(
            PREFIX + "events_total",
            "Events detected and queued in the outbox, by subscription and trigger.",
            ["subscription", "trigger"],
            registry=self.registry,
        )
        self._future_dated = Counter(
            PREFIX + "future_dated_items",
            "New item versions dated after the listing that served them (a bad clock, an "
            "import): delivered, but the feed's watermark stays at the listing's time.",
            ["account", "object"],
            registry=self.registry,
        )
        self._deliveries = Counter(
            PREFIX + "deliveries_total",
            "Delivery attempts by subscription and outcome (delivered, retry, dead, refused).",
            ["subscription", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            PREFIX + "delivery_latency_seconds",
            "Seconds from an event's detection to its successful delivery.",
            ["subscription"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._failing_since: dict[tuple[str, str], float] = {}

    def poll(self, account: str, object_type: str, *, ok: bool) -> None:
        self._polls.labels(account, object_type, "ok" if ok else "failed").inc()
        if ok:
            self._failing_since.pop((account, object_type), None)
        else:
            self._failing_since.setdefault((account, object_type), self._monotonic())

    def api_call(self, account: str, method: str, path: str, status: str) -> None:
        self._api_calls.labels(account, costs.endpoint(method, path), status).inc()
        self._api_tokens.labels(account).inc(costs.spent(method, path, status))

    def rate_limit_wait(self, account: str) -> None:
        self._rate_limit_waits.labels(account).inc()

    def events(self, new_events: Sequence[deliveries.NewEvent]) -> None:
        for (subscription, trigger), count in Tally(
            (event.subscription, event.event_type) for event in new_events
        ).items():
            self._events.labels(subscription, trigger).inc(count)

    def future_dated(self, account: str, object_type: str, count: int) -> None:
        self._future_dated.labels(account, object_type).inc(count)

    def delivery(self, outcome: deliveries.Outcome) -> None:
        subscription = outcome.claimed.subscription
        self._deliveries.labels(subscription, delivery_outcome(outcome)).inc()
        detected = outcome.claimed.created_at
        if outcome.verdict == "delivered" and detected is not None:
            finished = outcome.attempted_at.timestamp() + outcome.duration_ms / 1000
            self._latency.labels(subscription).observe(max(0.0, finished - detected.timestamp()))

    def replica(self, live: ReplicaFigures) -> None:
        self.registry.register(_Replica(live))

    def failing_for(self, account: str, object_type: str) -> float | None:
        """Seconds the feed has been failing without a successful cycle, None when it is not."""
        since = self._failing_since.get((account, object_type))
        return None if since is None else self._monotonic() - since


@dataclass(frozen=True)
class SubscriptionGauges:
    """One subscription's outbox and state, read from the database at scrape time."""

    subscription: str
    state: subscription_state.State
    pending: int = 0
    oldest_pending_at: datetime | None = None
    dead: int = 0


class _Scrape(Collector):
    """One scrape: the counters, then the gauges read for it."""

    def __init__(
        self, counters: CollectorRegistry, rows: Iterable[SubscriptionGauges] | None, now: datetime
    ) -> None:
        self._counters = counters
        self._rows = None if rows is None else list(rows)
        self._now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._counters.collect()
        if self._rows is None:
            return  # the database could not be read: a missing series says so, a zero would lie
        pending = GaugeMetricFamily(
            PREFIX + "outbox_pending",
            "Events in the outbox not yet delivered (due or waiting for a retry).",
            labels=["subscription"],
        )
        oldest = GaugeMetricFamily(
            PREFIX + "outbox_oldest_pending_seconds",
            "Age of the oldest undelivered event, from its detection (0 when none is pending).",
            labels=["subscription"],
        )
        dead = GaugeMetricFamily(
            PREFIX + "dead_letters", "Events in the dead letters.", labels=["subscription"]
        )
        state = GaugeMetricFamily(
            PREFIX + "subscription_state",
            "1 for the subscription's current state, 0 for the others.",
            labels=["subscription", "state"],
        )
        for row in self._rows:
            age = 0.0
            if row.oldest_pending_at is not None:
                age = max(0.0, (self._now - row.oldest_pending_at).total_seconds())
            pending.add_metric([row.subscription], row.pending)
            oldest.add_metric([row.subscription], age)
            dead.add_metric([row.subscription], row.dead)
            for name in STATES:
                state.add_metric([row.subscription, name], 1 if row.state == name else 0)
        yield from (pending, oldest, dead, state)


def exposition(
    metrics: PrometheusMetrics,
    gauges: Iterable[SubscriptionGauges] | None,
    now: datetime,
    accept: str | None = None,
) -> tuple[bytes, str]:
    """The `/metrics` body and its content type (Prometheus text, or OpenMetrics when the
    scraper's `Accept` asks for it): the counters, then the gauges of this scrape (none when
    the database could not be read)."""
    encoder, content_type = choose_encoder(accept or "")
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Scrape(metrics.registry, gauges, now))
    return encoder(scrape), content_type
