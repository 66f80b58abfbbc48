"""The daemon's lifecycle: open everything, poll and deliver until told to stop, close cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import admin, budget, database, drift, poller, reload, retention, supervision
from daemon.accounts import AccountPool
from daemon.config import Config
from daemon.delivery import Deliverer, delivery_http_client
from daemon.pipedrive import DEFAULT_RETRY, RetryOptions

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_engine(config: Config) -> AsyncIterator[AsyncEngine]:
    engine = database.create_engine(config.database.url)
    try:
        await database.check_revision(engine)
        yield engine
    finally:
        await engine.dispose()


async def _poll_safely(poll: poller.Poller, feed: poller.Feed) -> None:
    try:
        await poll.poll(feed)
    except Exception:
        # The database itself failed while recording the failure: next tick tries again.
        logger.exception(
            "poll of %s failed unexpectedly; retrying next cycle",
            feed.key,
            extra={"action": "poll.crashed"},
        )


async def _prune(engine: AsyncEngine, running: _Running) -> None:
    # The running config: a reload may have changed `[retention]`.
    await retention.prune(engine, running.config.retention, datetime.now(UTC))


def _shutdown(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)


def _schedule(scheduler: AsyncIOScheduler, poll: poller.Poller, feed: poller.Feed) -> None:
    scheduler.add_job(
        _poll_safely,
        IntervalTrigger(seconds=feed.interval_s),
        args=[poll, feed],
        id=feed.key,
        next_run_time=datetime.now(UTC),  # first poll right away
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        replace_existing=True,
    )


class _Running:
    """What a reload changes in the running daemon: accounts, delivery, the poll schedule."""

    def __init__(
        self,
        config: Config,
        engine: AsyncEngine,
        pool: AccountPool,
        deliverer: Deliverer,
        poll: poller.Poller,
        scheduler: AsyncIOScheduler,
    ) -> None:
        self.config = config
        self._engine = engine
        self._pool = pool
        self._deliverer = deliverer
        self._poll = poll
        self._scheduler = scheduler
        self.admin: admin.Admin | None = None  # set once the admin listener is up
        self._feeds = {f.key: f for f in poller.feeds(config, budget.fitted_intervals(config))}
        for feed in self._feeds.values():
            _schedule(scheduler, poll, feed)

    @property
    def feeds(self) -> list[poller.Feed]:
        return list(self._feeds.values())

    async def apply(self, new: Config) -> None:
        reload.log_changes(reload.changes(self.config, new))
        await drift.warn(self._engine, new)  # before a changed trigger's first poll
        await self._pool.apply(new)
        self._deliverer.reconfigure({s.name: s for s in new.subscriptions}, new.delivery)
        feeds = {f.key: f for f in poller.feeds(new, budget.fitted_intervals(new))}
        for key in self._feeds.keys() - feeds.keys():
            self._scheduler.remove_job(key)  # a poll in progress finishes; no new one starts
        for key, feed in feeds.items():
            if self._feeds.get(key) != feed:
                _schedule(self._scheduler, self._poll, feed)  # an added subscription: poll now
        self._feeds = feeds
        self.config = new
        if self.admin is not None:
            self.admin.reconfigure(new, self.feeds)
        self._deliverer.wake()


async def run(
    config: Config,
    stop: asyncio.Event,
    api_retry: RetryOptions = DEFAULT_RETRY,
    reloads: reload.Reloads | None = None,
) -> None:
    """Poll and deliver until `stop` is set, applying reloads as `reloads` asks. The caller
    has applied migrations."""
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(config))
        metrics = admin.metrics_for(config)
        pool = AccountPool(api_retry, metrics)
        stack.push_async_callback(pool.aclose)
        await pool.apply(config)
        http = await stack.enter_async_context(delivery_http_client(config.delivery.timeout))
        subscriptions = {s.name: s for s in config.subscriptions}
        deliverer = Deliverer(engine, http, subscriptions, config.delivery, metrics=metrics)
        poll = poller.Poller(
            engine, pool.clients, pool.caches, on_new_events=deliverer.wake, metrics=metrics
        )
        scheduler = AsyncIOScheduler()
        await drift.warn(engine, config)  # before the first poll acts on a changed trigger
        running = _Running(config, engine, pool, deliverer, poll, scheduler)
        scheduler.add_job(
            _prune,
            IntervalTrigger(seconds=config.retention.interval),
            args=[engine, running],
            id="retention",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        stack.callback(_shutdown, scheduler)
        running.admin = await stack.enter_async_context(
            admin.serving(config, engine, metrics, running.feeds, lambda: bool(scheduler.running))
        )
        logger.info(
            "started: %d subscriptions on %d accounts",
            len(subscriptions),
            len(config.accounts),
            extra={"action": "daemon.started"},
        )
        # READY=1 (migrations applied, first polls scheduled), STATUS= lines, WATCHDOG=1 pings.
        supervisor = await stack.enter_async_context(
            supervision.supervised(engine, len(subscriptions))
        )
        background: set[asyncio.Task[None]] = set()
        if reloads is not None:

            async def reloaded(rejected: bool) -> None:
                await supervisor.reloaded(len(running.config.subscriptions), rejected)

            background.add(asyncio.create_task(reloads.serve(running.apply, reloaded)))
        delivering = asyncio.create_task(deliverer.run(stop), name="delivery")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({delivering, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        supervisor.stopping()
        _shutdown(scheduler)  # stop polling first; in-flight deliveries get their grace
        await delivering  # re-raises if the delivery loop crashed
