"""The outbox: queued events, their attempts and dead letters.

A poll's new events commit in one transaction with the feed's advanced watermark (see
`feed_store`), and the delivery loop claims due rows with a lease (`claimed_until`), so work a
crashed process had claimed comes back by itself once the lease runs out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.tables import dead_letters, deliveries, delivery_attempts


@dataclass(frozen=True)
class NewEvent:
    subscription: str
    event_id: str
    event_type: str
    item_id: str
    body: str
    error: str | None = None  # set when the item could not be mapped: dead-lettered at once


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    subscription: str
    event_type: str
    item_id: str
    body: str
    attempts: int
    created_at: datetime | None = None  # when the event was detected (delivery latency)


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    attempted_at: datetime
    status: int | None
    error: str | None
    duration_ms: int
    verdict: Literal["delivered", "retry", "dead"]
    next_attempt_at: datetime | None = None
    reply: str | None = None  # the start of the consumer's reply body, when it answered


def insert_ignoring_duplicates(connection: AsyncConnection, table: Any) -> Any:
    """INSERT that skips rows whose unique key exists: re-detecting an event is harmless."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _event_row(event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "subscription": event.subscription,
        "event_type": event.event_type,
        "item_id": event.item_id,
        "body": event.body,
        "created_at": now,
        "attempts": 0,
    }


async def insert_events(
    connection: AsyncConnection, events: Sequence[NewEvent], now: datetime
) -> None:
    """Queue new events in the caller's transaction; unmappable ones are dead-lettered at once
    with their raw object and the reason. An event already queued (same `event_id`) is kept."""
    good = [event for event in events if event.error is None]
    bad = [event for event in events if event.error is not None]
    if good:
        await connection.execute(
            insert_ignoring_duplicates(connection, deliveries),
            [{**_event_row(event, now), "next_attempt_at": now} for event in good],
        )
    if bad:
        await connection.execute(
            insert_ignoring_duplicates(connection, dead_letters),
            [
                {**_event_row(event, now), "last_error": event.error, "dead_at": now}
                for event in bad
            ],
        )


# How many candidate rows a claim reads per free slot: enough that rows of subscriptions at
# their cap do not crowd the others out of one claim.
CANDIDATES_PER_SLOT = 4


def pick_claims(
    candidates: Sequence[tuple[int, str]], capacity: Mapping[str, int], limit: int
) -> list[int]:
    """From due rows (oldest first), the ids to claim: at most `limit`, and no subscription
    past its remaining `capacity`, so one busy consumer cannot take every slot."""
    left = dict(capacity)
    chosen: list[int] = []
    for row_id, subscription in candidates:
        if len(chosen) >= limit:
            break
        if left.get(subscription, 0) > 0:
            left[subscription] -= 1
            chosen.append(row_id)
    return chosen


async def claim_due(
    engine: AsyncEngine,
    *,
    now: datetime,
    lease_until: datetime,
    capacity: Mapping[str, int],
    limit: int,
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first, at most `capacity[name]` of each
    subscription. On PostgreSQL, SKIP LOCKED lets several daemons claim side by side."""
    open_subscriptions = [name for name, free in capacity.items() if free > 0]
    if limit <= 0 or not open_subscriptions:
        return []
    due = and_(
        deliveries.c.delivered_at.is_(None),
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
    )
    # Walks the partial index on next_attempt_at and stops early, whatever the backlog.
    candidates = (
        select(deliveries.c.id, deliveries.c.subscription)
        .where(due, deliveries.c.subscription.in_(open_subscriptions))
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit * CANDIDATES_PER_SLOT)
    )
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        rows = (await connection.execute(candidates)).all()
        chosen = pick_claims([(row.id, row.subscription) for row in rows], capacity, limit)
        if not chosen:
            return []
        claimed = await connection.execute(
            update(deliveries)
            # `due` again: a row another claimer took since the read is not taken twice.
            .where(deliveries.c.id.in_(chosen), due)
            .values(claimed_until=lease_until)
            .returning(
                deliveries.c.id,
                deliveries.c.event_id,
                deliveries.c.subscription,
                deliveries.c.event_type,
                deliveries.c.item_id,
                deliveries.c.body,
                deliveries.c.attempts,
                deliveries.c.created_at,
            )
        )
        return [Claimed(*row) for row in claimed]


async def record_outcomes(engine: AsyncEngine, outcomes: Sequence[Outcome]) -> None:
    """Write a batch of attempt results in one transaction (one fsync for many POSTs)."""
    if not outcomes:
        return
    async with engine.begin() as connection:
        await connection.execute(
            insert(delivery_attempts),
            [
                {
                    "event_id": o.claimed.event_id,
                    "attempt": o.claimed.attempts + 1,
                    "attempted_at": o.attempted_at,
                    "status": o.status,
                    "error": o.error,
                    "duration_ms": o.duration_ms,
                    "reply": o.reply,
                }
                for o in outcomes
            ],
        )
        finished = [o for o in outcomes if o.verdict != "dead"]
        if finished:
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == bindparam("row_id"))
                .values(
                    attempts=bindparam("new_attempts"),
                    last_status=bindparam("status"),
                    last_error=bindparam("error"),
                    claimed_until=None,
                    delivered_at=bindparam("delivered_at"),
                    next_attempt_at=bindparam("next_at"),
                ),
                [
                    {
                        "row_id": o.claimed.id,
                        "new_attempts": o.claimed.attempts + 1,
                        "status": o.status,
                        "error": o.error,
                        "delivered_at": o.attempted_at if o.verdict == "delivered" else None,
                        "next_at": o.next_attempt_at or o.attempted_at,
                    }
                    for o in finished
                ],
            )
        dead = [o for o in outcomes if o.verdict == "dead"]
        if dead:
            await connection.execute(
                insert_ignoring_duplicates(connection, dead_letters),
                [
                    {
                        "event_id": o.claimed.event_id,
                        "subscription": o.claimed.subscription,
                        "event_type": o.claimed.event_type,
                        "item_id": o.claimed.item_id,
                        "body": o.claimed.body,
                        "created_at": o.attempted_at,
                        "attempts": o.claimed.attempts + 1,
                        "last_status": o.status,
                        "last_error": o.error,
                        "dead_at": o.attempted_at,
                    }
                    for o in dead
                ],
            )
            await connection.execute(
                deliveries.delete().where(deliveries.c.id.in_([o.claimed.id for o in dead]))
            )


@dataclass(frozen=True)
class SubscriptionCounts:
    pending: int
    delivered: int
    dead: int


async def counts(engine: AsyncEngine) -> dict[str, SubscriptionCounts]:
    async with engine.connect() as connection:
        outbox = await connection.execute(
            select(
                deliveries.c.subscription,
                func.count().filter(deliveries.c.delivered_at.is_(None)),
                func.count().filter(deliveries.c.delivered_at.is_not(None)),
            ).group_by(deliveries.c.subscription)
        )
        dead: dict[str, int] = dict(
            (
                await connection.execute(
                    select(dead_letters.c.subscription, func.count()).group_by(
                        dead_letters.c.subscription
                    )
                )
            ).all()
        )
        result = {
            name: SubscriptionCounts(pending, done, dead.pop(name, 0))
            for name, pending, done in outbox
        }
        result.update({name: SubscriptionCounts(0, 0, count) for name, count in dead.items()})
        return result


@dataclass(frozen=True)
class OutboxTotals:
    pending: int
    dead: int


async def outbox_totals(engine: AsyncEngine) -> OutboxTotals:
    """Pending and dead events over all subscriptions, cheap enough to ask every few seconds:
    the pending count walks the partial index of undelivered rows, never the delivered ones."""
    pending = (
        select(func.count())
        .select_from(deliveries)
        .where(deliveries.c.delivered_at.is_(None))
        .scalar_subquery()
    )
    dead = select(func.count()).select_from(dead_letters).scalar_subquery()
    async with engine.connect() as connection:
        row = (await connection.execute(select(pending, dead))).one()
    return OutboxTotals(pending=row[0], dead=row[1])
