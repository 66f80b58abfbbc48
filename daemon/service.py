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

from daemon import budget, database, poller, retention, supervision
from daemon.accounts import open_accounts
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


async def _prune(engine: AsyncEngine, config: Config) -> None:
    await retention.prune(engine, config.retention, datetime.now(UTC))


def _shutdown(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)


async def run(config: Config, stop: asyncio.Event, api_retry: RetryOptions = DEFAULT_RETRY) -> None:
    """Poll and deliver until `stop` is set. The caller has applied migrations."""
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(config))
        accounts = await stack.enter_async_context(open_accounts(config, api_retry))
        http = await stack.enter_async_context(delivery_http_client(config.delivery.timeout))
        subscriptions = {s.name: s for s in config.subscriptions}
        deliverer = Deliverer(engine, http, subscriptions, config.delivery)
        poll = poller.Poller(
            engine, accounts.clients, accounts.caches, on_new_events=deliverer.wake
        )
        scheduler = AsyncIOScheduler()
        for feed in poller.feeds(config, budget.fitted_intervals(config)):
            scheduler.add_job(
                _poll_safely,
                IntervalTrigger(seconds=feed.interval_s),
                args=[poll, feed],
                id=feed.key,
                next_run_time=datetime.now(UTC),  # first poll right away
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        scheduler.add_job(
            _prune,
            IntervalTrigger(seconds=config.retention.interval),
            args=[engine, config],
            id="retention",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        stack.callback(_shutdown, scheduler)
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
        delivering = asyncio.create_task(deliverer.run(stop), name="delivery")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({delivering, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        supervisor.stopping()
        _shutdown(scheduler)  # stop polling first; in-flight deliveries get their grace
        await delivering  # re-raises if the delivery loop crashed
