"""Polling: one change feed per (account, object type), one listing per cycle, shared by every
trigger and subscription on it. Pages commit one by one (see `feed_store`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import errors, times
from daemon import metrics as metrics_module
from daemon.db import feed_store, installation, leases, outbox, transient
from daemon.errors import LeaseLost, PipedriveError
from daemon.model import deliveries
from daemon.payloads import envelope
from daemon.pipedrive import client as client_module
from daemon.pipedrive import lookups
from daemon.pipedrive.client import PipedriveClient
from daemon.polling import by_id, change_feed, cycles, events, plan
from daemon.polling.plan import Feed
from daemon.triggers.base import Item, ObjectType

logger = logging.getLogger(__name__)

# A backlog's page builds up to 500 payloads (about 0.1 ms each) in one go: the delivery loop
# gets the event loop back this often, so its POSTs in flight are not left waiting.
YIELD_EVERY = 50


@dataclass(frozen=True)
class _Opened:
    """A feed's marks as its last cycle left them in the database."""

    opened_as: tuple[tuple[feed_store.SubscriptionStart, ...], int | None]
    state: feed_store.FeedState
    subscriptions: dict[str, feed_store.SubscriptionState]


def _listing_params(obj: ObjectType, since: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {**obj.params, "updated_since": times.format_rfc3339_z(since)}
    if obj.paging == "cursor":
        params |= {"sort_by": "update_time", "sort_direction": "asc"}
    return params


class Poller:
    def __init__(
        self,
        engine: AsyncEngine,
        clients: Mapping[str, PipedriveClient],
        caches: Mapping[str, lookups.LookupCache],
        *,
        on_new_events: Callable[[Feed, list[str]], None] = lambda feed, item_ids: None,
        clock: clock_module.Clock = clock_module.SYSTEM,
        metrics: metrics_module.Metrics = metrics_module.NONE,
        fence_for: Callable[[str], leases.Fence | None] = lambda account: None,
        cycle_log: cycles.CycleLog | None = None,
        remember_feeds: bool = False,
    ) -> None:
        self._engine = engine
        # The lease a feed's marks are written under (see `db.leases`): None writes unfenced.
        self._fence_for = fence_for
        self._fenced_off: set[tuple[str, int]] = set()  # (feed, epoch) already logged
        # The daemon's: cycle outcomes written in batches (see `cycles`), and each feed's
        # marks remembered from its last cycle instead of read again, while this process is
        # their only writer (the same lease epoch, the same subscriptions, no failure since).
        self._cycle_log = cycle_log
        self._remember = remember_feeds
        self._opened: dict[str, _Opened] = {}
        # `start = "now"` of a subscription never started before: when this process took it
        # on (see `take_on`), else its first poll that reached the database.
        self._taken_on: dict[tuple[str, str], datetime] = {}
        self._metrics = metrics
        self._clients = clients
        self._caches = caches
        self._on_new_events = on_new_events
        self._clock = clock.now  # a poll reads wall time only; its waits are the client's
        self._installation: str | None = None
        # One outage line for every feed (they share the database), apart from delivery's.
        self._outage = transient.Outage()
        # Per feed, the unexpected errors already logged with their traceback since its last
        # good cycle: a bug that fails every poll is shown once, not every interval.
        self._crashes: dict[str, set[tuple[str, str]]] = {}

    def take_on(self, subscriptions: Iterable[tuple[str, str]], at: datetime) -> None:
        """(name, trigger) pairs this process serves from `at` on (its start, or the reload
        that added them or changed their trigger): a subscription never started before starts
        then, not at its first poll that reaches the database. Neither the database being
        down nor a feed's place in the spread of first polls (up to its interval) then leaves
        out what was created meanwhile. Pairs taken on already keep their moment."""
        for pair in subscriptions:
            self._taken_on.setdefault(pair, at)

    async def poll(self, feed: Feed) -> None:
        """One cycle. Any failure is recorded on the feed's subscriptions, never only logged;
        what earlier pages committed stays committed. A database outage is logged once, when
        it begins (and once when it ends), not at every poll; nothing is raised."""
        now = self._clock()
        try:
            feed = await self._refuse_unservable(feed, now)
        except Exception as error:
            self._database_failed(feed, "recording refused subscriptions", error)
            return
        if not feed.subscriptions:
            return
        message: str | None = None
        try:
            await self._cycle(feed, now)
        except LeaseLost as lost:
            # Another replica took the account over: its holder records the feed's state.
            self._opened.pop(feed.key, None)
            self._fenced(feed, lost)
            return
        except Exception as error:  # a bug or an outage: recorded, and the next cycle retries
            message = errors.describe(error)
            self._cycle_failed(feed, error, message)
        else:
            self._crashes.pop(feed.key, None)
        if message is not None:
            self._opened.pop(feed.key, None)  # read again next time
        end = feed_store.CycleEnd(feed.account, feed.object.name, tuple(feed.names), message, now)
        if self._cycle_log is not None:
            self._cycle_log.add(end)
            if message is None:  # its reads and commits reached the database
                self._outage.recovered()
        else:
            try:
                await feed_store.record_cycles(self._engine, [end])
            except Exception as error:  # the database is down (the cycle's failure said so)
                self._database_failed(feed, "recording the poll", error)
            else:
                self._outage.recovered()
        self._metrics.poll(feed.account, feed.object.name, ok=message is None)
        cache = self._caches.get(feed.account)  # gone if a reload removed the account
        if cache is not None:
            cache.forget_expired()

    async def read(self, feed: Feed, item_ids: frozenset[str] | None) -> None:
        """A nudge's read (instant mode): the items it named, one `GET .../{id}` each where
        that costs fewer tokens than a listing and the feed can take it (see `_read_by_id`);
        otherwise, or if that fails, a poll. `item_ids` None: a poll."""
        if item_ids is None or not by_id.readable(feed.object, item_ids):
            await self.poll(feed)
            return
        try:
            done = await self._read_by_id(feed, item_ids, self._clock())
        except LeaseLost as lost:
            self._opened.pop(feed.key, None)
            self._fenced(feed, lost)
            return
        except Exception as error:  # the listing reads it, and records a failure that lasts
            self._opened.pop(feed.key, None)
            logger.info(
                "feed %s: reading item(s) %s by id failed (%s); listing the feed instead",
                feed.key,
                ", ".join(sorted(item_ids)),
                errors.describe(error),
                extra={"action": "poll.by_id_failed", "account": feed.account},
            )
            done = False
        if not done:
            await self.poll(feed)

    async def _read_by_id(self, feed: Feed, item_ids: frozenset[str], now: datetime) -> bool:
        """The named items through the change feed, as a listing would see them, but moving
        no mark: the watermark says everything up to it was listed, which a read by id does
        not. So a later listing finds these versions known (no second event), and anything
        else changed meanwhile still ahead of the watermark. False (nothing read) where only
        a listing will do: a feed not started yet, a subscription still backfilling (a
        listing would fire the versions again for it), one that cannot be served."""
        if plan.unservable(feed):
            return False
        opened, fence = await self._open(feed, now)
        state, subs = opened.state, opened.subscriptions
        readers = self._readers(feed, subs, state.max_id)
        if state.max_id is None or any(r.position < state.watermark for r in readers):
            self._opened[feed.key] = opened
            return False
        obj = feed.object
        client = self._clients[feed.account]
        page = await by_id.fetch(client, obj, item_ids)
        if page:
            decision = await self._decide(feed, page, readers, state.watermark, served_at=None)
            await self._commit_read(feed, client, decision, opened, fence, now)
        if self._remember:
            self._opened[feed.key] = opened
        return True

    async def _commit_read(
        self,
        feed: Feed,
        client: PipedriveClient,
        decision: change_feed.PageDecision,
        opened: _Opened,
        fence: leases.Fence | None,
        now: datetime,
    ) -> None:
        """What a read by id found: item states and events, the marks as they were."""
        new_events, failed = await self._events(feed, client, decision, now)
        items = [s for s in decision.states if s.item_id not in failed]
        if not items and not new_events:
            return
        state = opened.state
        queued = await feed_store.commit_page(
            self._engine,
            account=feed.account,
            object_type=feed.object.name,
            items=items,
            events=new_events,
            watermark=state.watermark,
            max_id=state.max_id,
            positions={name: sub.position for name, sub in opened.subscriptions.items()},
            now=now,
            fence=fence,
        )
        self._committed(feed, decision, failed, new_events, queued)

    def _committed(
        self,
        feed: Feed,
        decision: change_feed.PageDecision,
        failed: set[str],
        new_events: list[deliveries.NewEvent],
        queued: set[str],
    ) -> None:
        """What a committed page says: its future-dated versions, and the events queued now
        (a look-back re-reads versions already queued, an unreadable item's dead letter among
        them, and those are not news)."""
        new_events = [event for event in new_events if event.event_id in queued]
        future = [f for f in decision.future if f.item_id not in failed]
        if future:
            self._report_future(feed, future)
        if new_events:
            self._metrics.events(new_events)
            self._log_detected(new_events)
            self._on_new_events(feed, [event.item_id for event in new_events])

    async def _refuse_unservable(self, feed: Feed, now: datetime) -> Feed:
        """The feed without the subscriptions it cannot serve, each recorded as refused."""
        refused = plan.unservable(feed)
        for name, reason in refused.items():
            logger.error(
                "subscription %r: %s",
                name,
                reason,
                extra={"action": "poll.refused", "subscription": name},
            )
            await feed_store.record_refused(
                self._engine, account=feed.account, name=name, error=reason, now=now
            )
        if not refused:  # one subscription's value never stalls its siblings
            return feed
        return replace(
            feed, subscriptions=tuple(s for s in feed.subscriptions if s.name not in refused)
        )

    def _fenced(self, feed: Feed, lost: LeaseLost) -> None:
        """Once per lease epoch: a stale write refused is expected after a takeover."""
        if (feed.key, lost.epoch) in self._fenced_off:
            return
        self._fenced_off.add((feed.key, lost.epoch))
        logger.warning(
            "feed %s: this replica no longer holds account %r (it gave the lease up, or another "
            "replica took it over); the page it listed was not written (%s)",
            feed.key,
            feed.account,
            lost,
            extra={"action": "poll.fenced", "account": feed.account},
        )

    def _cycle_failed(self, feed: Feed, error: Exception, message: str) -> None:
        if transient.known(error) is not None:
            self._outage.failed(f"polling {feed.key}", error)
            return
        if not isinstance(error, PipedriveError):
            self._crashed(feed, "poll crashed", error)
        for name in feed.names:
            logger.warning(
                "subscription %r: poll failed, will retry next cycle: %s",
                name,
                message,
                extra={"action": "poll.failed", "subscription": name},
            )

    def _database_failed(self, feed: Feed, what: str, error: Exception) -> None:
        if transient.known(error) is not None:
            self._outage.failed(f"{what} of {feed.key}", error)
        else:
            self._crashed(feed, f"{what} failed", error)

    def _crashed(self, feed: Feed, what: str, error: Exception) -> None:
        """A traceback, once per distinct error per feed until the feed polls cleanly."""
        seen = self._crashes.setdefault(feed.key, set())
        original = getattr(error, "orig", None) or error  # SQLAlchemy's text holds parameters
        key = (type(original).__qualname__, str(original))
        if key in seen:
            return
        seen.add(key)
        logger.error(
            "feed %s: %s; retrying each cycle (said again only for a different error)",
            feed.key,
            what,
            exc_info=error,
            extra={"action": "poll.crashed"},
        )

    async def _open(self, feed: Feed, now: datetime) -> tuple[_Opened, leases.Fence | None]:
        """The feed's marks (remembered from its last cycle, or read and created), and the
        lease they are written under."""
        starts = tuple(
            feed_store.SubscriptionStart(
                s.name,
                s.trigger,
                s.start
                if isinstance(s.start, datetime)
                else self._taken_on.get((s.name, s.trigger)),
            )
            for s in feed.subscriptions
        )
        fence = self._fence_for(feed.account)
        opened_as = (starts, fence.epoch if fence is not None else None)
        remembered = self._opened.pop(feed.key, None)
        if remembered is not None and remembered.opened_as == opened_as:
            return remembered, fence
        state, subs = await feed_store.open_feed(
            self._engine,
            account=feed.account,
            object_type=feed.object.name,
            subscriptions=starts,
            now=now,
        )
        return _Opened(opened_as, state, subs), fence

    @staticmethod
    def _readers(
        feed: Feed, subs: Mapping[str, feed_store.SubscriptionState], max_id: int | None
    ) -> list[change_feed.Reader]:
        return [
            change_feed.Reader(
                name=s.name,
                trigger=s.definition,
                filter=s.compiled_filter(),
                start=subs[s.name].start_at,
                id_floor=subs[s.name].id_floor if subs[s.name].id_floor is not None else max_id,
                position=subs[s.name].position,
                include_custom_fields=s.include_custom_fields,
            )
            for s in feed.subscriptions
        ]

    async def _decide(
        self,
        feed: Feed,
        page: Sequence[Item],
        readers: Sequence[change_feed.Reader],
        watermark: datetime,
        *,
        served_at: datetime | None,
        digests: Sequence[str] | None = None,
    ) -> change_feed.PageDecision:
        """What a page (a listing's, or items read by id) changes against what is stored of
        its items; `watermark` is the feed's at the start of the cycle."""
        stored = await feed_store.load_items(
            self._engine,
            account=feed.account,
            object_type=feed.object.name,
            item_ids=[str(item.get("id")) for item in page],
        )
        await asyncio.sleep(0)  # a page of 500 is hashed before this: deliveries' turn
        return change_feed.decide(
            page,
            stored,
            readers,
            feed.object,
            watermark=watermark,
            look_back=timedelta(seconds=feed.look_back_s),
            digests=digests,
            ceiling=change_feed.listing_time(served_at, self._clock()),
        )

    async def _cycle(self, feed: Feed, now: datetime) -> None:
        obj = feed.object
        opened, fence = await self._open(feed, now)
        opened_as, state, subs = opened.opened_as, opened.state, opened.subscriptions
        client = self._clients[feed.account]
        max_id = state.max_id
        if max_id is None and not obj.string_ids:
            max_id = await self._highest_id(client, obj)
            await feed_store.set_max_id(
                self._engine,
                account=feed.account,
                object_type=obj.name,
                max_id=max_id,
                names=feed.names,
                fence=fence,
            )
            # As set_max_id wrote: subscriptions without a floor take this one.
            subs = {
                name: sub if sub.id_floor is not None else replace(sub, id_floor=max_id)
                for name, sub in subs.items()
            }
        readers = self._readers(feed, subs, max_id)
        look_back = timedelta(seconds=feed.look_back_s)
        since = min([state.watermark, *(r.position for r in readers)]) - look_back
        watermark = state.watermark
        # What the database holds: a page that changes none of it (an idle feed's empty
        # listing) commits nothing, so an idle poll writes only its cycle's outcome.
        committed = (watermark, max_id, {r.name: r.position for r in readers})
        last_page: set[tuple[Any, str]] = set()
        async for page in client.pages(
            obj.path, _listing_params(obj, since), offset=obj.paging == "offset"
        ):
            digests = [change_feed.content_hash(item) for item in page]
            last_page = client_module.check_advances(
                {(item.get("id"), digest) for item, digest in zip(page, digests, strict=True)},
                last_page,
                f"account {feed.account!r}: GET {obj.path}",
            )
            decision = await self._decide(
                feed, page, readers, state.watermark, served_at=page.served_at, digests=digests
            )
            new_events, failed = await self._events(feed, client, decision, now)
            newest = decision.newest_update
            if newest is not None:
                watermark = max(watermark, newest)
                readers = [replace(r, position=max(r.position, newest)) for r in readers]
            if decision.max_id is not None:
                max_id = max(max_id or 0, decision.max_id)
            items = [s for s in decision.states if s.item_id not in failed]
            marks = (watermark, max_id, {r.name: r.position for r in readers})
            queued: set[str] = set()
            if items or new_events or marks != committed:
                queued = await feed_store.commit_page(
                    self._engine,
                    account=feed.account,
                    object_type=obj.name,
                    items=items,
                    events=new_events,
                    watermark=watermark,
                    max_id=max_id,
                    positions=marks[2],
                    now=now,
                    fence=fence,
                )
                committed = marks
            self._committed(feed, decision, failed, new_events, queued)
        if self._remember:
            watermark_, max_id_, positions = committed
            self._opened[feed.key] = _Opened(
                opened_as,
                replace(state, watermark=watermark_, max_id=max_id_),
                {
                    name: replace(sub, position=positions.get(name, sub.position))
                    for name, sub in subs.items()
                },
            )

    async def _highest_id(self, client: PipedriveClient, obj: ObjectType) -> int:
        """A new feed's first call: the newest id, so that subscriptions know which items
        existed when they started (a later one with a backdated add_time is still new)."""
        if obj.paging == "cursor":
            params = {**obj.params, "sort_by": "id", "sort_direction": "desc", "limit": 1}
        else:
            params = {**obj.params, "sort": "id DESC", "limit": 1}
        async for page in client.pages(obj.path, params, offset=obj.paging == "offset"):
            ids = [i["id"] for i in page if isinstance(i.get("id"), int)]
            return max(ids, default=0)
        return 0

    async def _events(
        self,
        feed: Feed,
        client: PipedriveClient,
        decision: change_feed.PageDecision,
        now: datetime,
    ) -> tuple[list[deliveries.NewEvent], set[str]]:
        """The page's events; an item whose payload cannot be built is dead-lettered with its
        raw object, and its state is not stored, so a later version that maps is delivered."""
        failed: set[str] = set()
        if not decision.firings and not decision.rejected:
            return [], failed
        origin = await self._origin(client, now)
        result = [events.rejected(r, origin, now) for r in decision.rejected]
        if not decision.firings:
            return result, failed
        cache = self._caches[feed.account]
        request = lookups.LookupRequest()
        for firing in decision.firings:
            request = request | events.needs(firing.reader.trigger, firing.current, firing.previous)
        resolved = await cache.resolve(client, request)
        catalog = None
        fields_path = feed.object.fields_path
        if fields_path and any(f.reader.include_custom_fields for f in decision.firings):
            catalog = await cache.field_catalog(client, fields_path)
        for built, firing in enumerate(decision.firings, 1):
            try:
                result.append(events.event(firing, origin, resolved, catalog, now))
            except Exception as error:  # a payload error of any kind: never stalls the feed
                failed.add(firing.item_id)
                result.append(events.unmappable(firing, origin, error, now))
            if built % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let deliveries in flight go on during a big page
        return await self._without_pre_upgrade_copies(result, decision.firings), failed

    async def _without_pre_upgrade_copies(
        self, built: list[deliveries.NewEvent], firings: Sequence[change_feed.Firing]
    ) -> list[deliveries.NewEvent]:
        """Events queued before revision 0008 keep the ids they were made with; a version
        read again since (a look-back, a backfilling subscription) is not queued twice."""
        legacy = {(f.reader.name, f.item_id): events.legacy_id(f) for f in firings}
        queued = await outbox.held(self._engine, legacy.values())
        if not queued:
            return built
        return [e for e in built if legacy.get((e.subscription, e.item_id)) not in queued]

    async def _origin(self, client: PipedriveClient, now: datetime) -> envelope.Origin:
        """What event ids are made of besides the event: the company (asked of Pipedrive once
        per client) and this database's installation id (read once per process)."""
        if self._installation is None:
            self._installation = await installation.installation_id(self._engine, now)
        return envelope.Origin(await client.company_id(), self._installation)

    def _report_future(self, feed: Feed, future: Sequence[change_feed.FutureDated]) -> None:
        """Once per stored version: a re-listed one is not new, so it is not said again."""
        self._metrics.future_dated(feed.account, feed.object.name, len(future))
        for item in future:
            logger.warning(
                "feed %s: item %s is dated in the future (update_time %s, after the listing's "
                "time): delivered, but the feed reads on from the listing's time",
                feed.key,
                item.item_id,
                times.format_iso(item.update_time),
                extra={
                    "action": "poll.future_dated",
                    "account": feed.account,
                    "item_id": item.item_id,
                },
            )

    @staticmethod
    def _log_detected(new_events: Sequence[deliveries.NewEvent]) -> None:
        per_subscription: dict[str, int] = {}
        for event in new_events:
            if event.error is not None:
                logger.error(
                    "subscription %r: item %s dead-lettered: %s",
                    event.subscription,
                    event.item_id,
                    event.error,
                    extra={
                        "action": "poll.unmappable",
                        "subscription": event.subscription,
                        "event_id": event.event_id,
                    },
                )
            per_subscription[event.subscription] = per_subscription.get(event.subscription, 0) + 1
        for name, count in per_subscription.items():
            logger.info(
                "subscription %r: %d new events",
                name,
                count,
                extra={"action": "poll.detected", "subscription": name, "count": count},
            )
