"""The daemon's lifecycle: open everything, poll and deliver until told to stop, close cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import config as config_module
from daemon import metrics as metrics_module
from daemon.config import Config
from daemon.db import database, feed_store, instances, instant_webhooks
from daemon.db.tables import INSTANT_REGISTERED
from daemon.delivery.callbacks import Callbacks
from daemon.delivery.deliverer import Deliverer
from daemon.instant import announcements, coalesce, deletions, ingress, nudges, registration
from daemon.pipedrive import account_usage, token_budget
from daemon.pipedrive.client import DEFAULT_RETRY, RetryOptions
from daemon.polling import by_id, cycles, forecast, plan, poller, schedule
from daemon.service import gc_tuning, leases, reload, retention, supervision
from daemon.service import polls as polls_module
from daemon.service.accounts import AccountPool
from daemon.status import drift, listener

logger = logging.getLogger(__name__)


class _SkippedTicks(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances" line, logged at
    every tick while a poll outlasts its interval; `polls_module.Polls` says it once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


_SKIPPED_TICKS = _SkippedTicks()


async def _prune(engine: AsyncEngine, running: _Running, clock: clock_module.Clock) -> None:
    # Once per database, by the singleton's holder; the running config: a reload may have
    # changed `[retention]`.
    if running.keeper is not None and running.keeper.holds_singleton:
        await retention.prune(engine, running.config.retention, clock.now())
        await instances.prune(engine, clock.now())


def _shutdown(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)


def _schedule(
    scheduler: AsyncIOScheduler,
    polls: polls_module.Polls,
    poll: poller.Poller,
    feed: plan.Feed,
    interval_s: float,
    delay: float,
) -> None:
    """Lists `feed` every `interval_s`, first after `delay` (see `schedule.continue_after`):
    with thousands of feeds the listings spread over the interval instead of all at second 0,
    and keep that phase; a handful of feeds still list within a fraction of a second."""
    scheduler.add_job(
        polls.poll,
        IntervalTrigger(seconds=interval_s),
        args=[poll, feed],
        id=feed.key,
        # In APScheduler's time: it runs its intervals on the system clock, not on ours.
        next_run_time=datetime.now(UTC) + timedelta(seconds=delay),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        replace_existing=True,
    )


class _Running:
    """What a reload changes in the running daemon: accounts, delivery, the poll schedule.
    Only the feeds of accounts this replica holds (see `service.leases`) are scheduled."""

    def __init__(
        self,
        config: Config,
        engine: AsyncEngine,
        pool: AccountPool,
        deliverer: Deliverer,
        poll: poller.Poller,
        scheduler: AsyncIOScheduler,
        polls: polls_module.Polls,
        clock: clock_module.Clock,
    ) -> None:
        self.config = config
        self._polls = polls
        self._engine = engine
        self._pool = pool
        self._deliverer = deliverer
        self._poll = poll
        self._scheduler = scheduler
        self._clock = clock
        self.admin: listener.Admin | None = None  # set once the admin listener is up
        self.keeper: leases.LeaseKeeper | None = None  # set once made
        self.ingress: ingress.Ingress | None = None  # instant mode's, once serving
        self._held: set[str] = set()
        self._gained_before = False  # whether this process has taken accounts yet
        # Accounts whose Pipedrive webhook is registered and active (instant mode): their
        # feeds poll at `[instant] reconcile_interval`, nudges doing the rest.
        self._instant_healthy: set[str] = set()
        # ... and those where reconciliation found a change no nudge announced (Pipedrive
        # banned or lost the webhook's calls): polled as if unhealthy until a nudge comes.
        self._instant_silent: set[str] = set()
        self._announced = announcements.Announcements()
        # Accounts whose webhook called (any replica's ingress checked its credentials) since
        # the last check of the webhooks: it exists and is active, no need to list it.
        self._called: set[str] = set()
        self._rescheduling: set[asyncio.Task[None]] = set()
        self._budget_low: set[str] = set()  # reconciling at the stretched interval
        self._stretch_logged: dict[str, str] = {}  # account: the UTC day it was said
        self._feeds = {f.key: f for f in plan.feeds(config, forecast.fitted_intervals(config))}
        # Instant mode's delete webhooks, confirmed by the API (`*.deleted` of persons, ...).
        self.deletions = deletions.Confirmations(
            engine,
            lambda: self.config,
            pool.clients,
            pool.caches,
            fence_for=lambda a: self.keeper.fence(a) if self.keeper is not None else None,
            on_events=lambda events: deliverer.wake(),
            clock=clock,
        )

    @property
    def feeds(self) -> list[plan.Feed]:
        return list(self._feeds.values())

    def interval(self, feed: plan.Feed) -> float:
        """How often `feed` lists: its own interval, or in instant mode the reconciliation's
        while its account's webhook is healthy, and never slower than that when it is not."""
        instant = self.config.instant
        if instant is None or not self.config.account(feed.account).instant:
            return feed.interval_s
        if feed.account in self._instant_healthy and feed.account not in self._instant_silent:
            if not self._low_on_budget(feed.account):
                return instant.reconcile_interval
            return token_budget.stretched_reconcile(instant.reconcile_interval)
        return min(feed.interval_s, instant.reconcile_interval)

    def _say_stretched(self, account: str) -> None:
        """Once per account and UTC day: its reconciliation is stretched."""
        instant = self.config.instant
        today = account_usage.today(self._clock.now())
        if instant is None or self._stretch_logged.get(account) == today:
            return
        self._stretch_logged[account] = today
        logger.warning(
            "account %r: Pipedrive's daily token budget is below daily_token_budget x "
            "(1 - budget_share); reconciling every %gs instead of %gs until the reset",
            account, token_budget.stretched_reconcile(instant.reconcile_interval),
            instant.reconcile_interval,
            extra={"action": "instant.reconcile_stretched", "account": account},
        )  # fmt: skip

    def _low_on_budget(self, account: str) -> bool:
        usage = self._pool.usages.get(account)
        seen = usage.daily if usage is not None else None
        settings = self.config.account(account)
        return token_budget.budget_low(
            seen.remaining if seen is not None and seen.seen_on(self._clock.now()) else None,
            settings.daily_token_budget,
            settings.budget_share,
        )

    def usage_flushed(self) -> None:
        """After each flush of the accounts' usage: an instant account whose daily budget
        went low (or was renewed) reschedules its feeds at the new reconciliation interval."""
        if self.config.instant is None:
            return
        low = {a for a in self._held & self._instant_healthy if self._low_on_budget(a)}
        for account in low ^ self._budget_low:
            if account in low and account not in self._instant_silent:
                self._say_stretched(account)
            self._restart_soon(account)
        self._budget_low = low

    async def gained(self, accounts: Mapping[str, int]) -> None:
        """Schedule the feeds of accounts just taken, each continuing its schedule; in
        instant mode, the first accounts a process takes list soon instead: its ingress was
        down until now, so calls Pipedrive made meanwhile may be lost (its retries last
        minutes), and reconciliation could be minutes away."""
        self._held |= set(accounts)
        continuing = True
        if self.config.instant is not None:  # the previous holder's registration stands
            registered = await instant_webhooks.load_all(self._engine)
            self._instant_healthy |= {
                a for a in accounts if a in registered and registered[a].state == INSTANT_REGISTERED
            }
            self._trust_lookups(set(accounts))
            continuing = self._gained_before
        self._gained_before = True
        feeds = [f for f in self._feeds.values() if f.account in accounts]
        await self._start(feeds, continuing=continuing)

    async def set_instant_health(self, healthy: set[str]) -> None:
        """After a check of the webhooks: feeds of accounts whose health changed list at their
        new interval, continuing from their last listing."""
        changed = (healthy ^ self._instant_healthy) & self._held
        self._instant_healthy = set(healthy)
        self._trust_lookups(changed)
        await self._start([f for f in self._feeds.values() if f.account in changed])

    def nudged(self, nudge: nudges.Nudge) -> None:
        """A nudge reached this replica (from its ingress or relayed): remembered, so the
        change it announces is not taken for one Pipedrive failed to send."""
        self._announced.nudged(nudge, self._clock.monotonic())
        self._called.add(nudge.account)
        cache = self._pool.caches.get(nudge.account)
        if cache is not None:  # the object changed: its cached copy is stale
            cache.forget(nudge.object_type, nudge.entity_id)
        self.deletions.submit(nudge)
        if nudge.account in self._instant_silent:
            self._instant_silent.discard(nudge.account)
            self._trust_lookups({nudge.account})
            logger.info(
                "account %r: Pipedrive's webhook calls resumed; polling at the reconciliation "
                "interval again",
                nudge.account,
                extra={"action": "instant.nudges_resumed", "account": nudge.account},
            )
            self._restart_soon(nudge.account)

    def _trust_lookups(self, accounts: set[str]) -> None:
        """Keep related objects long where nudges evict them: the webhook healthy and calling
        (see `LookupCache.rely_on_webhooks`)."""
        for account in accounts:
            cache = self._pool.caches.get(account)
            if cache is not None:
                healthy = account in self._instant_healthy and account not in self._instant_silent
                cache.rely_on_webhooks(healthy)

    def called_since_last_check(self) -> set[str]:
        """The accounts whose webhook called since the last time this was asked."""
        called, self._called = self._called, set()
        return called

    def read_for(self, nudge: nudges.Nudge) -> tuple[bool, str | None]:
        """Whether a nudge calls for a read, and of which item (None: the feed is listed). A
        delete is listed where the listing serves deleted items (deals); elsewhere nothing
        would show it, and the deletion triggers confirm it with a call of their own. A nudge
        for an object no feed reads (a user) only refreshes lookups."""
        feed = self._feeds.get(f"{nudge.account}/{nudge.object_type}")
        if feed is None:
            return False, None
        if nudge.action != "delete":
            return True, nudge.entity_id
        return by_id.lists_deleted(feed.object), None

    async def read_now(
        self, account: str, object_type: str, item_ids: frozenset[str] | None
    ) -> None:
        """A nudge's read (see `instant.coalesce`): the items named, or the feed listed, now,
        if this replica holds the account; a listing in progress is followed by one more."""
        feed = self._feeds.get(f"{account}/{object_type}")
        if feed is not None and account in self._held:
            await self._polls.poll(self._poll, feed, nudged=True, item_ids=item_ids)

    def detected(self, feed: plan.Feed, item_ids: list[str]) -> None:
        """Events found by a listing: any that no nudge announced within the reconciliation
        interval means Pipedrive is not calling (a ban, a lost webhook). Judged a few
        seconds later: a listing made for one nudge may find a change whose own call is
        still on its way."""
        if self.config.instant is None:
            return
        asyncio.get_running_loop().call_later(
            ANNOUNCEMENT_GRACE_S, self._judge_announced, feed, item_ids
        )

    def _judge_announced(self, feed: plan.Feed, item_ids: list[str]) -> None:
        instant = self.config.instant
        if (
            instant is None
            or feed.account not in self._instant_healthy
            or feed.account in self._instant_silent
        ):
            return
        unannounced = self._announced.unannounced(
            feed.account, feed.object.name, item_ids, instant.reconcile_interval,
            self._clock.monotonic(),
        )  # fmt: skip
        if not unannounced:
            return
        self._record_unannounced(feed.account, len(unannounced))
        self._instant_silent.add(feed.account)
        self._trust_lookups({feed.account})
        logger.warning(
            "account %r: polling found %d change(s) of %s that Pipedrive's webhook did not "
            "announce (item %s); polling every %gs until its calls arrive again",
            feed.account,
            len(unannounced),
            feed.object.name,
            ", ".join(unannounced[:5]),
            min(feed.interval_s, instant.reconcile_interval),
            extra={"action": "instant.unannounced", "account": feed.account},
        )
        self._restart_soon(feed.account)

    def _record_unannounced(self, account: str, count: int) -> None:
        """For `status`, whichever replica found them (off the caller's path: a rare write)."""

        async def record() -> None:
            try:
                await instant_webhooks.add_unannounced(
                    self._engine, account, count, self._clock.now()
                )
            except Exception as error:  # the warning logged it; only status misses it
                logger.warning(
                    "account %r: cannot record the unannounced changes (%s)",
                    account,
                    type(error).__name__,
                    extra={"action": "instant.record_failed", "account": account},
                )

        task = asyncio.create_task(record(), name=f"unannounced {account}")
        self._rescheduling.add(task)
        task.add_done_callback(self._rescheduling.discard)

    def _restart_soon(self, account: str) -> None:
        """Reschedule the account's feeds at their new interval (from their last listing)."""
        feeds = [f for f in self._feeds.values() if f.account == account and account in self._held]
        task = asyncio.create_task(self._start(feeds), name=f"reschedule {account}")
        self._rescheduling.add(task)
        task.add_done_callback(self._rescheduling.discard)

    async def _start(self, feeds: list[plan.Feed], *, continuing: bool = True) -> None:
        if not feeds:
            return
        last = await feed_store.last_polls(self._engine, {f.account for f in feeds})
        now = self._clock.now()
        for feed in feeds:
            listed = last.get((feed.account, feed.object.name)) if continuing else None
            ago = (now - listed).total_seconds() if listed is not None else None
            interval = self.interval(feed)
            delay = schedule.continue_after(ago, feed.key, interval, len(feeds))
            _schedule(self._scheduler, self._polls, self._poll, feed, interval, delay)

    def lost(self, accounts: set[str]) -> None:
        """Stop scheduling the feeds of accounts given up or taken over; a poll in progress
        finishes, and its commits are refused if another replica took the account."""
        self._held -= accounts
        for feed in self._feeds.values():
            if feed.account in accounts:
                self._unschedule(feed.key)

    def _unschedule(self, key: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(key)  # a poll in progress finishes; no new one starts

    async def apply(self, new: Config) -> None:
        reload.log_changes(reload.changes(self.config, new))
        await drift.warn(self._engine, new)  # before a changed trigger's first poll
        await self._pool.apply(new)
        self._poll.take_on(((s.name, s.trigger) for s in new.subscriptions), self._clock.now())
        self._deliverer.reconfigure({s.name: s for s in new.subscriptions}, new.delivery)
        feeds = {f.key: f for f in plan.feeds(new, forecast.fitted_intervals(new))}
        for key in self._feeds.keys() - feeds.keys():
            self._unschedule(key)
        changed = [
            feed
            for key, feed in feeds.items()
            if self._feeds.get(key) != feed and feed.account in self._held
        ]
        self._feeds = feeds
        await self._start(changed, continuing=False)  # an added subscription: poll soon
        if self.keeper is not None:
            self.keeper.set_accounts([a.name for a in new.accounts])
        self.config = new
        if self.admin is not None:
            self.admin.reconfigure(new, self.feeds)
        if self.ingress is not None:
            self.ingress.reconfigure(new)
        self._deliverer.wake()


# How long after a listing finds a change its webhook call may still arrive (Pipedrive sends
# within a second or two; its retries come later and are not waited for).
ANNOUNCEMENT_GRACE_S = 5.0

# The first check of the webhooks waits this long after start, so this replica has taken its
# accounts (see `leases.LOOK_S`).
WEBHOOK_CHECK_DELAY_S = 2.0


async def _keep_webhooks_registered(
    engine: AsyncEngine,
    running: _Running,
    pool: AccountPool,
    keeper: leases.LeaseKeeper,
    clock: clock_module.Clock,
) -> None:
    """Instant mode: each replica checks the Pipedrive webhooks of the accounts it holds
    (their calls go through those accounts' rate limiters), soon after start and every
    `[instant] repair_interval`; without `[instant]`, ones of ours left behind are deleted."""
    await clock.sleep(WEBHOOK_CHECK_DELAY_S)
    first = True
    while True:
        config = running.config  # a reload may have changed `[instant]`
        held = {a: pool.clients[a] for a in keeper.held_accounts if a in pool.clients}
        try:
            proven = running.called_since_last_check()
            if first:  # listed whatever called: ours left behind are deleted at start
                proven, first = set(), False
            outcomes = await registration.repair_all(engine, config, held, clock, proven)
            await running.set_instant_health(
                {o.account for o in outcomes if o.did in registration.REGISTERED_OUTCOMES}
            )
        except Exception:  # each account's failure is recorded by repair_all; this is a bug
            logger.exception(
                "checking the Pipedrive webhooks failed; trying again at the next check",
                extra={"action": "instant.repair_crashed"},
            )
        interval = (
            config.instant.repair_interval
            if config.instant is not None
            else config_module.DEFAULT_INSTANT_REPAIR_S
        )
        await clock.sleep(interval)


def _endpoints(config: Config) -> dict[str, str]:
    return {s.name: s.endpoint for s in config.subscriptions}


async def run(
    config: Config,
    stop: asyncio.Event,
    api_retry: RetryOptions = DEFAULT_RETRY,
    reloads: reload.Reloads | None = None,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> None:
    """Poll and deliver until `stop` is set, applying reloads as `reloads` asks. The caller
    has applied migrations. The rate limiters, polls, delivery and the service's ticks read
    time and wait on `clock`; APScheduler runs the poll and retention intervals on its own."""
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(database.open_engine(config.database.url))
        metrics = listener.metrics_for(config)
        pool = AccountPool(api_retry, metrics, clock)
        stack.push_async_callback(pool.aclose)
        await pool.apply(config)
        http = await stack.enter_async_context(Callbacks(config.delivery.timeout))
        subscriptions = {s.name: s for s in config.subscriptions}
        deliverer = Deliverer(
            engine,
            http,
            subscriptions,
            config.delivery,
            clock=clock,
            metrics=metrics,
            holder=config.cluster.instance,
        )
        keeper: leases.LeaseKeeper | None = None
        running: _Running | None = None
        cycle_log = cycles.CycleLog(engine, clock)

        def detected(feed: plan.Feed, item_ids: list[str]) -> None:
            deliverer.wake()
            if running is not None:
                running.detected(feed, item_ids)

        poll = poller.Poller(
            engine,
            pool.clients,
            pool.caches,
            on_new_events=detected,
            clock=clock,
            metrics=metrics,
            fence_for=lambda account: keeper.fence(account) if keeper is not None else None,
            cycle_log=cycle_log,
            remember_feeds=True,
        )
        poll.take_on(((s.name, s.trigger) for s in config.subscriptions), clock.now())
        scheduler = AsyncIOScheduler()
        polls = polls_module.Polls(clock)
        scheduler_log = logging.getLogger("apscheduler.scheduler")
        scheduler_log.addFilter(_SKIPPED_TICKS)
        stack.callback(scheduler_log.removeFilter, _SKIPPED_TICKS)
        config_module.log_startup_warnings(config)
        forecast.log_startup_warnings(config)  # budget and calls a minute: once, at start
        await drift.warn(engine, config)  # before the first poll acts on a changed trigger
        running = _Running(config, engine, pool, deliverer, poll, scheduler, polls, clock)
        me = instances.Me(
            instance=config.cluster.instance,
            lease_s=config.cluster.lease,
            started_at=clock.now(),
            config_fingerprint=config_module.fingerprint(config),
            code_revision=database.head_revision(),
        )
        await instances.refuse_name_in_use(engine, me, clock.now())
        # Leases are renewed on connections of their own: never behind polls waiting for one.
        sole = engine.dialect.name == "sqlite"
        lease_engine = engine if sole else database.create_engine(config.database.url, pool_size=1)
        if not sole:
            stack.push_async_callback(lease_engine.dispose)
        keeper = leases.LeaseKeeper(
            lease_engine,
            me,
            [a.name for a in config.accounts],
            on_gained=running.gained,
            on_lost=running.lost,
            clock=clock,
            sole=sole,
        )
        running.keeper = keeper
        polls.holds = keeper.holds
        # Instant mode: nudges from Pipedrive's webhooks (this replica's ingress, or relayed
        # by another's) list their feed now, coalesced per `[instant] coalesce`.
        if config.instant is not None:
            coalescing = coalesce.Coalescing(running.read_now, config.instant.coalesce, clock)
            stack.push_async_callback(coalescing.aclose)
            stack.push_async_callback(running.deletions.aclose)

            def on_nudge(nudge: nudges.Nudge) -> None:
                assert running is not None
                running.nudged(nudge)
                wanted, item = running.read_for(nudge)
                if wanted:
                    coalescing.nudge(nudge.account, nudge.object_type, item)

            running.ingress = await stack.enter_async_context(
                ingress.serving(config, engine, on_nudge, keeper.holds, clock)
            )
        scheduler.add_job(
            _prune,
            IntervalTrigger(seconds=config.retention.interval),
            args=[engine, running, clock],
            id="retention",
            max_instances=1,
            coalesce=True,
        )
        # Bound before any poll starts: a taken port is one clear error with nothing to cancel.
        running.admin = await stack.enter_async_context(
            listener.serving(
                config,
                engine,
                metrics,
                running.feeds,
                lambda: bool(scheduler.running),
                pool.usages,
                clock,
            )
        )
        if running.admin is not None:
            running.admin.exports_database_gauges = lambda: keeper.holds_singleton
        instant_ingress = running.ingress
        metrics.replica(
            metrics_module.ReplicaFigures(
                config.cluster.instance,
                lambda: len(keeper.held_accounts),
                instant_ingress.counts.snapshot if instant_ingress is not None else None,
            )
        )
        scheduler.start()
        stack.callback(_shutdown, scheduler)
        # The replica's row before "started:": `status` says running from that line on, not
        # "never started" until the lease keeper's first look.
        await instances.beat(engine, me, clock.now())
        logger.info(
            "started: %d subscriptions on %d accounts",
            len(subscriptions),
            len(config.accounts),
            extra={"action": "daemon.started"},
        )
        # READY=1 (migrations applied, first polls scheduled), STATUS= lines, WATCHDOG=1 pings.
        supervisor = await stack.enter_async_context(
            supervision.supervised(engine, subscriptions, clock=clock, endpoints=_endpoints(config))
        )
        gc_tuning.settle()  # after start-up's allocations, before the work starts
        keeping = asyncio.create_task(keeper.run(), name="leases")
        logging_cycles = asyncio.create_task(cycle_log.run(), name="cycles")
        background: set[asyncio.Task[None]] = {
            asyncio.create_task(
                _keep_webhooks_registered(engine, running, pool, keeper, clock), name="webhooks"
            )
        }
        # Flushed last: the usage of polls that end during shutdown is counted too.
        usage_flusher = asyncio.create_task(
            account_usage.flush_forever(
                engine, pool.usages.values(), clock=clock, on_flushed=running.usage_flushed
            ),
            name="account-usage",
        )
        if reloads is not None:

            async def reloaded(rejected: bool) -> None:
                current = running.config
                await supervisor.reloaded(
                    [s.name for s in current.subscriptions], rejected, _endpoints(current)
                )

            background.add(asyncio.create_task(reloads.serve(running.apply, reloaded)))
        delivering = asyncio.create_task(deliverer.run(stop), name="delivery")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({delivering, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        await clock_module.cancel(background)
        supervisor.stopping()
        scheduler.pause()  # stop polling first; polls and deliveries in flight get the grace
        try:
            await polls.finish(config.delivery.timeout)
            await clock_module.cancel([logging_cycles])
            with contextlib.suppress(Exception):  # the last polls' outcomes, for status
                await asyncio.wait_for(cycle_log.flush(), 2)
            # Polls are over: the leases go at once, so the other replicas take this one's
            # accounts within a second, while deliveries in flight get their grace.
            await clock_module.cancel([keeping])
            with contextlib.suppress(Exception):  # status then says "stopped", not "killed"
                await asyncio.wait_for(keeper.stop(), 2)
            await delivering
        finally:
            await clock_module.cancel([keeping, logging_cycles, usage_flusher])
