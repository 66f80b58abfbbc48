"""The change feeds' state in SQL: feeds, the subscriptions reading them, and item states.

Each page of a listing commits in one transaction: the item states it changed, the events
they fired, the feed's watermark and the subscriptions' positions. A crash between pages
therefore repeats nothing (the states say what was seen) and loses nothing (the watermark
only moves past what was committed).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import database, leases, outbox, write_lock
from daemon.db.tables import feeds, item_states, subscription_state
from daemon.model import deliveries
from daemon.model.items import ItemStateRow, StoredItem

STATUS_OK = "ok"
STATUS_FAILING = "failing"


@dataclass(frozen=True)
class FeedState:
    account: str
    object_type: str
    watermark: datetime
    max_id: int | None
    status: str
    last_error: str | None
    last_poll_at: datetime | None


@dataclass(frozen=True)
class SubscriptionState:
    subscription: str
    account: str
    trigger: str
    start_at: datetime
    id_floor: int | None
    position: datetime
    status: str
    last_error: str | None
    last_poll_at: datetime | None
    started_at: datetime


@dataclass(frozen=True)
class CycleEnd:
    """How a feed's cycle ended: ok (`error` None) or failing, and when it began."""

    account: str
    object_type: str
    names: tuple[str, ...]
    error: str | None
    at: datetime


@dataclass(frozen=True)
class SubscriptionStart:
    """What the config says of a subscription on a feed."""

    name: str
    trigger: str
    start: datetime | None  # None: "now", the moment it is first started


def _subscription(row: Any) -> SubscriptionState:
    return SubscriptionState(
        subscription=row.subscription,
        account=row.account,
        trigger=row.trigger,
        start_at=row.start_at,
        id_floor=row.id_floor,
        position=row.position,
        status=row.status,
        last_error=row.last_error,
        last_poll_at=row.last_poll_at,
        started_at=row.started_at,
    )


def _feed(row: Any) -> FeedState:
    return FeedState(
        account=row.account,
        object_type=row.object_type,
        watermark=row.watermark,
        max_id=row.max_id,
        status=row.status,
        last_error=row.last_error,
        last_poll_at=row.last_poll_at,
    )


async def load_states(
    engine: AsyncEngine, names: Collection[str] | None = None
) -> dict[str, SubscriptionState]:
    """The named subscriptions' states (all of them when `names` is None), by name."""
    query = select(subscription_state)
    if names is not None:
        query = query.where(subscription_state.c.subscription.in_(list(names)))
    async with engine.connect() as connection:
        return {row.subscription: _subscription(row) for row in await connection.execute(query)}


async def last_polls(
    engine: AsyncEngine, accounts: Collection[str]
) -> dict[tuple[str, str], datetime]:
    """When each feed of `accounts` last listed, by (account, object type): a replica that
    takes an account over continues its schedule from there."""
    if not accounts:
        return {}
    query = select(feeds.c.account, feeds.c.object_type, feeds.c.last_poll_at).where(
        feeds.c.account.in_(list(accounts)), feeds.c.last_poll_at.is_not(None)
    )
    async with engine.connect() as connection:
        return {
            (row.account, row.object_type): row.last_poll_at
            for row in await connection.execute(query)
        }


async def open_feed(
    engine: AsyncEngine,
    *,
    account: str,
    object_type: str,
    subscriptions: Sequence[SubscriptionStart],
    now: datetime,
) -> tuple[FeedState, dict[str, SubscriptionState]]:
    """The feed and its subscriptions, created on the first attempt, before any API call, so
    `start = "now"` means the moment a subscription was first started even when Pipedrive is
    down then. A subscription whose trigger changed in the config starts afresh. Once all
    exist (every poll but the first), a read: no write transaction, no writer's turn."""
    key = (feeds.c.account == account) & (feeds.c.object_type == object_type)
    names = [s.name for s in subscriptions]
    async with engine.connect() as connection:
        row = (await connection.execute(select(feeds).where(key))).first()
        existing = {
            r.subscription: _subscription(r)
            for r in await connection.execute(
                select(subscription_state).where(subscription_state.c.subscription.in_(names))
            )
        }
    if row is not None and all(
        (state := existing.get(sub.name)) is not None
        and state.trigger == sub.trigger
        and state.account == account
        for sub in subscriptions
    ):
        return _feed(row), {sub.name: existing[sub.name] for sub in subscriptions}
    async with write_lock.begin(engine) as connection:
        row = (await connection.execute(select(feeds).where(key))).first()
        if row is None:
            starts = [s.start or now for s in subscriptions]
            await connection.execute(
                feeds.insert().values(
                    account=account,
                    object_type=object_type,
                    watermark=min([now, *starts]),
                    max_id=None,
                    started_at=now,
                    status=STATUS_OK,
                    updated_at=now,
                )
            )
            row = (await connection.execute(select(feeds).where(key))).one()
        feed = _feed(row)
        existing = {
            r.subscription: _subscription(r)
            for r in await connection.execute(
                select(subscription_state).where(subscription_state.c.subscription.in_(names))
            )
        }
        states: dict[str, SubscriptionState] = {}
        for sub in subscriptions:
            state = existing.get(sub.name)
            if state is not None and state.trigger == sub.trigger and state.account == account:
                states[sub.name] = state
                continue
            start_at = sub.start or now
            values = {
                "subscription": sub.name,
                "account": account,
                "trigger": sub.trigger,
                "start_at": start_at,
                "id_floor": feed.max_id,
                "position": min(start_at, feed.watermark),
                "started_at": now,
                "status": STATUS_OK,
                "last_error": None,
                "last_poll_at": None,
                "updated_at": now,
            }
            statement = database.dialect_insert(connection, subscription_state).values(values)
            await connection.execute(
                statement.on_conflict_do_update(index_elements=["subscription"], set_=values)
            )
            states[sub.name] = SubscriptionState(
                subscription=sub.name,
                account=account,
                trigger=sub.trigger,
                start_at=start_at,
                id_floor=feed.max_id,
                position=min(start_at, feed.watermark),
                status=STATUS_OK,
                last_error=None,
                last_poll_at=None,
                started_at=now,
            )
        return feed, states


async def set_max_id(
    engine: AsyncEngine,
    *,
    account: str,
    object_type: str,
    max_id: int,
    names: Collection[str],
    fence: leases.Fence | None = None,
) -> None:
    """The feed's first look at the highest id; subscriptions without a floor take it.
    Refused (LeaseLost) unless `fence` still holds."""
    async with write_lock.begin(engine) as connection:
        if fence is not None:
            await leases.fence(connection, fence)
        await connection.execute(
            update(feeds)
            .where(feeds.c.account == account, feeds.c.object_type == object_type)
            .values(max_id=max_id)
        )
        await connection.execute(
            update(subscription_state)
            .where(
                subscription_state.c.subscription.in_(list(names)),
                subscription_state.c.id_floor.is_(None),
            )
            .values(id_floor=max_id)
        )


async def load_items(
    engine: AsyncEngine, *, account: str, object_type: str, item_ids: Collection[str]
) -> dict[str, StoredItem]:
    if not item_ids:
        return {}
    query = select(
        item_states.c.item_id,
        item_states.c.version,
        item_states.c.content_hash,
        item_states.c.snapshot,
        item_states.c.lineage,
    ).where(
        item_states.c.account == account,
        item_states.c.object_type == object_type,
        item_states.c.item_id.in_(list(item_ids)),
    )
    async with engine.connect() as connection:
        return {
            row.item_id: StoredItem(
                row.version, row.content_hash, json.loads(row.snapshot), row.lineage
            )
            for row in await connection.execute(query)
        }


async def future_dated(engine: AsyncEngine, after: datetime) -> dict[tuple[str, str], int]:
    """Per feed (account, object type): how many items' stored versions are dated after
    `after` (a bad clock or an import put them in the future; see change_feed.listing_time)."""
    query = (
        select(item_states.c.account, item_states.c.object_type, func.count())
        .where(item_states.c.update_time > after)
        .group_by(item_states.c.account, item_states.c.object_type)
    )
    async with engine.connect() as connection:
        return {(account, obj): int(n) for account, obj, n in await connection.execute(query)}


async def commit_page(
    engine: AsyncEngine,
    *,
    account: str,
    object_type: str,
    items: Sequence[ItemStateRow],
    events: Sequence[deliveries.NewEvent],
    watermark: datetime,
    max_id: int | None,
    positions: Mapping[str, datetime],
    now: datetime,
    fence: leases.Fence | None = None,
) -> set[str]:
    """One page's outcome, atomically: item states, events, watermark and positions. Returns
    the `event_id`s queued now (not those queued by an earlier read of the same versions).
    Refused (LeaseLost), with nothing written, unless `fence` still holds."""
    async with write_lock.begin(engine) as connection:
        if fence is not None:
            await leases.fence(connection, fence)
        if items:
            statement = database.dialect_insert(connection, item_states)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["account", "object_type", "item_id"],
                    set_={
                        "version": statement.excluded.version,
                        "content_hash": statement.excluded.content_hash,
                        "update_time": statement.excluded.update_time,
                        "snapshot": statement.excluded.snapshot,
                        "lineage": statement.excluded.lineage,
                        "seen_at": statement.excluded.seen_at,
                    },
                ),
                [
                    {
                        "account": account,
                        "object_type": object_type,
                        "item_id": item.item_id,
                        "version": item.version,
                        "content_hash": item.content_hash,
                        "update_time": item.update_time,
                        "snapshot": item.snapshot,
                        "lineage": item.lineage,
                        "first_seen_at": now,
                        "seen_at": now,
                    }
                    for item in items
                ],
            )
        queued = await outbox.insert_events(connection, events, now)
        await connection.execute(
            update(feeds)
            .where(feeds.c.account == account, feeds.c.object_type == object_type)
            .values(watermark=watermark, max_id=max_id, updated_at=now)
        )
        for name, position in positions.items():
            await connection.execute(
                update(subscription_state)
                .where(subscription_state.c.subscription == name)
                .values(position=position, updated_at=now)
            )
    return queued


NOT_STARTED_TRIGGER = ""
"""The trigger of a row written for a subscription refused before it ever started: any real
trigger differs from it, so once the subscription can be served it starts afresh."""


async def record_refused(
    engine: AsyncEngine, *, account: str, name: str, error: str, now: datetime
) -> None:
    """One subscription of a feed cannot be served (its siblings go on): failing, with why."""
    values = {"status": STATUS_FAILING, "last_error": error, "last_poll_at": now}
    async with write_lock.begin(engine) as connection:
        updated = await connection.execute(
            update(subscription_state)
            .where(subscription_state.c.subscription == name)
            .values({**values, "updated_at": now})
        )
        if updated.rowcount:
            return
        await connection.execute(
            database.dialect_insert(connection, subscription_state)
            .values(
                subscription=name,
                account=account,
                trigger=NOT_STARTED_TRIGGER,
                start_at=now,
                id_floor=None,
                position=now,
                started_at=now,
                updated_at=now,
                **values,
            )
            .on_conflict_do_nothing(index_elements=["subscription"])
        )


async def record_cycles(engine: AsyncEngine, ends: Sequence[CycleEnd]) -> None:
    """Many cycles' ends in one transaction (the daemon's batches, see `polling.cycles`)."""
    if not ends:
        return
    feed_rows = [
        {
            "b_account": end.account,
            "b_object_type": end.object_type,
            "status": STATUS_OK if end.error is None else STATUS_FAILING,
            "last_error": end.error,
            "last_poll_at": end.at,
            "updated_at": end.at,
        }
        for end in ends
    ]
    subscription_rows = [
        {
            "b_subscription": name,
            "status": STATUS_OK if end.error is None else STATUS_FAILING,
            "last_error": end.error,
            "last_poll_at": end.at,
            "updated_at": end.at,
        }
        for end in ends
        for name in end.names
    ]
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(feeds).where(
                feeds.c.account == bindparam("b_account"),
                feeds.c.object_type == bindparam("b_object_type"),
            ),
            feed_rows,
        )
        if subscription_rows:
            await connection.execute(
                update(subscription_state).where(
                    subscription_state.c.subscription == bindparam("b_subscription")
                ),
                subscription_rows,
            )
