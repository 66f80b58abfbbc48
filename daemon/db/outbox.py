"""The outbox: one table of events, each pending, delivered or dead, and their attempts.

A poll's new events commit in one transaction with the feed's advanced watermark (see
`feed_store`), and the delivery loop claims due rows with a lease (`claimed_until`), so work a
crashed process had claimed comes back by itself once the lease runs out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon import times
from daemon.db import bulk_inserts, database, delivery_limits, health_store, write_lock
from daemon.db.tables import (
    STATE_DEAD,
    STATE_DELIVERED,
    STATE_PENDING,
    deliveries,
    delivery_attempts,
)
from daemon.model.deliveries import Claimed, NewEvent, Outcome


def in_state(state: str) -> Any:
    """`state = '<state>'` with the value written into the SQL, not bound: PostgreSQL can use
    a partial index (`WHERE state = 'pending'`) only when it sees the value when planning,
    and psycopg's prepared statements get generic plans that cannot."""
    return deliveries.c.state == literal(state, literal_execute=True)


def insert_ignoring_duplicates(connection: AsyncConnection, table: Any) -> Any:
    """INSERT that skips rows whose unique key exists: re-detecting an event is harmless."""
    return database.dialect_insert(connection, table).on_conflict_do_nothing()


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
) -> set[str]:
    """Queue new events in the caller's transaction; unmappable ones are dead-lettered at once
    with their raw object and the reason. An event already queued (same `event_id`, in any
    state) is kept as it is: a re-detected dead letter is not revived. Returns the `event_id`s
    that were queued now."""
    if not events:
        return set()
    if connection.dialect.name == "postgresql":
        return set((await connection.execute(bulk_inserts.events_insert(events, now))).scalars())
    inserted = await connection.execute(
        insert_ignoring_duplicates(connection, deliveries).returning(deliveries.c.event_id),
        [
            {
                **_event_row(event, now),
                "next_attempt_at": now,
                "state": STATE_PENDING if event.error is None else STATE_DEAD,
                "last_error": event.error,
                "dead_at": None if event.error is None else now,
            }
            for event in events
        ],
    )
    return set(inserted.scalars())


async def held(engine: AsyncEngine, event_ids: Collection[str]) -> set[str]:
    """Which of these `event_id`s the outbox holds, in any state."""
    if not event_ids:
        return set()
    query = select(deliveries.c.event_id).where(deliveries.c.event_id.in_(list(event_ids)))
    async with engine.connect() as connection:
        return set((await connection.execute(query)).scalars())


# How many candidate rows a claim reads per free slot: enough that rows of subscriptions at
# their cap do not crowd the others out of one claim.
CANDIDATES_PER_SLOT = 4


def pick_claims(
    candidates: Sequence[tuple[int, str]],
    capacity: Mapping[str, int],
    limit: int,
    *,
    shared: int | None = None,
    newcomers: Collection[str] = (),
    answering: Collection[str] = (),
) -> list[int]:
    """From due rows (oldest first), the ids to claim: at most `limit`, no subscription past
    its remaining `capacity`, taken round-robin by subscription so one backlog does not fill
    a claim. With `shared`, only that many may go to subscriptions not `answering` (whose
    consumers did not answer lately: `slots` explains why), but each of the `newcomers`
    (nothing in flight) gets one row when `shared` is used up (a reserved slot); `capacity`
    alone bounds the `answering` ones."""
    queues: dict[str, list[int]] = {}
    for row_id, subscription in candidates:
        if capacity.get(subscription, 0) > 0:
            queues.setdefault(subscription, []).append(row_id)
    left = dict(capacity)
    reserve_unused = set(newcomers)
    shared_left = shared
    chosen: list[int] = []
    while queues and len(chosen) < limit:
        for subscription in list(queues):
            if len(chosen) >= limit:
                break
            newcomer = subscription in reserve_unused
            if shared_left is not None and subscription not in answering:
                if shared_left > 0:
                    shared_left -= 1
                elif not newcomer:
                    del queues[subscription]
                    continue
            reserve_unused.discard(subscription)
            chosen.append(queues[subscription].pop(0))
            left[subscription] -= 1
            if left[subscription] <= 0 or not queues[subscription]:
                del queues[subscription]
    return chosen


async def claim_due(
    engine: AsyncEngine,
    *,
    now: datetime,
    lease_until: datetime,
    capacity: Mapping[str, int],
    limit: int,
    ordered: Collection[str] = (),
    shared: int | None = None,
    newcomers: Collection[str] = (),
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first, at most `capacity[name]` of each
    subscription. An `ordered` subscription offers only its oldest pending event (detection
    order), and only when that one is due. On PostgreSQL, SKIP LOCKED lets several daemons
    claim side by side. `claim_within_limits` also keeps the limits all replicas share."""
    claim = await claim_within_limits(
        engine,
        now=now,
        lease_until=lease_until,
        capacity=capacity,
        limit=limit,
        ordered=ordered,
        shared=shared,
        newcomers=newcomers,
    )
    return claim.rows


def _due(now: datetime) -> Any:
    return and_(
        in_state(STATE_PENDING),
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
    )


async def any_due(engine: AsyncEngine, now: datetime) -> bool:
    """Whether any row, of any subscription, is due and not claimed: one read of the pending
    index, which lets an idle delivery loop skip planning a claim over every subscription."""
    async with engine.connect() as connection:
        found = await connection.execute(select(deliveries.c.id).where(_due(now)).limit(1))
        return found.first() is not None


@dataclass(frozen=True)
class Claim:
    rows: list[Claimed]
    # Per subscription the claim could take rows of: its health as recorded, and what it was
    # granted (see `delivery_limits`); empty without `limits`.
    grants: dict[str, delivery_limits.Grant] = field(default_factory=dict)


async def claim_within_limits(
    engine: AsyncEngine,
    *,
    now: datetime,
    lease_until: datetime,
    capacity: Mapping[str, int],
    limit: int,
    ordered: Collection[str] = (),
    shared: int | None = None,
    newcomers: Collection[str] = (),
    limits: delivery_limits.Request | None = None,
) -> Claim:
    """`claim_due`, and with `limits`, within what every replica's claims share: the caps of
    `delivery_limits`, granted under the subscriptions' row locks in the same transaction,
    which then records what the claim took. Only subscriptions with due rows are locked, so
    an idle claim writes nothing."""
    open_subscriptions = [
        name for name, free in capacity.items() if free > 0 and name not in ordered
    ]
    open_ordered = [name for name, free in capacity.items() if free > 0 and name in ordered]
    if limit <= 0 or not (open_subscriptions or open_ordered):
        return Claim([])
    due = _due(now)
    # Rows that can be taken at all: with one subscription every candidate read is claimed;
    # with several, reading more lets each have its share although one's rows are oldest. On
    # PostgreSQL every candidate is locked, so reading more than that costs the server.
    takeable = min(limit, sum(capacity[name] for name in open_subscriptions))
    spread = CANDIDATES_PER_SLOT if len(open_subscriptions) > 1 else 1
    # Walks the partial index on next_attempt_at and stops early, whatever the backlog.
    candidates = (
        select(deliveries.c.id, deliveries.c.subscription)
        .where(due, deliveries.c.subscription.in_(open_subscriptions))
        # The id breaks ties, so a paused subscription probes the same event each time.
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(takeable * spread)
    )
    heads = (
        select(func.min(deliveries.c.id))
        .where(deliveries.c.state == STATE_PENDING, deliveries.c.subscription.in_(open_ordered))
        .group_by(deliveries.c.subscription)
    )
    head_candidates = select(deliveries.c.id, deliveries.c.subscription).where(
        deliveries.c.id.in_(heads), due
    )
    async with write_lock.begin(engine) as connection:
        if connection.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
            head_candidates = head_candidates.with_for_update(skip_locked=True)
        rows = (await connection.execute(candidates)).all() if open_subscriptions else []
        if open_ordered:
            rows = [*(await connection.execute(head_candidates)).all(), *rows]
        grants: dict[str, delivery_limits.Grant] = {}
        if limits is not None and rows:
            # Locked after the rows (SKIP LOCKED never waits), as `record_outcomes` does.
            offered = {row.subscription for row in rows}
            grants = await delivery_limits.grant(
                connection, limits, {n: capacity[n] for n in offered}, now
            )
            capacity = {name: given.capacity for name, given in grants.items()}
            rows = await _probing_heads_only(connection, rows, grants, ordered, now)
        chosen = pick_claims(
            [(row.id, row.subscription) for row in rows],
            capacity,
            limit,
            shared=shared,
            newcomers=newcomers,
        )
        claimed: Sequence[Any] = []
        if chosen:
            result = await connection.execute(
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
                    deliveries.c.next_attempt_at,
                )
            )
            claimed = result.all()
        taken = [Claimed(*row) for row in claimed]
        if limits is not None and grants:
            counts = Counter(row.subscription for row in taken)
            await delivery_limits.settle(connection, limits, grants, counts, now, lease_until)
            taken = [
                replace(row, probe=True) if grants[row.subscription].probe else row for row in taken
            ]
        return Claim(taken, grants)


async def _probing_heads_only(
    connection: AsyncConnection,
    rows: Sequence[Any],
    grants: Mapping[str, delivery_limits.Grant],
    ordered: Collection[str],
    now: datetime,
) -> Sequence[Any]:
    """A paused subscription's probe is its oldest due event, the same one until it gets
    through. The candidates skip rows another claimer holds: locked by a concurrent claim
    (SKIP LOCKED, even one that takes nothing) or still claimed ahead by a replica whose
    release has not committed yet. Then the probe waits for its row rather than take the
    next one. (An `ordered` one's candidate is its head already.)"""
    probing = sorted(
        name
        for name, given in grants.items()
        if given.probe and given.capacity > 0 and name not in ordered
    )
    heads = {}
    for name in probing:
        heads[name] = (
            await connection.execute(
                select(deliveries.c.id)
                .where(
                    in_state(STATE_PENDING),
                    deliveries.c.subscription == name,
                    deliveries.c.next_attempt_at <= now,
                )
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(1)
            )
        ).scalar()
    return [row for row in rows if heads.get(row.subscription, row.id) == row.id]


async def release(engine: AsyncEngine, ids: Sequence[int], probes: Collection[str] = ()) -> None:
    """End the lease of claimed rows that were never attempted (among them the `probes` of
    these subscriptions: another may be claimed at once)."""
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == STATE_PENDING)
            .values(claimed_until=None)
        )
        await health_store.end_probes(connection, probes)


@dataclass(frozen=True)
class Recording:
    """What a batch of outcomes also changes beyond the outbox (the delivery loop's part)."""

    now: datetime
    rules: Mapping[str, health_store.Rules]  # how each subscription's health is judged
    holder: str = ""
    keep_slots: Mapping[str, int] = field(default_factory=dict)  # see `release_slots`


async def record_outcomes(
    engine: AsyncEngine, outcomes: Sequence[Outcome], recording: Recording | None = None
) -> list[health_store.Change]:
    """Write a batch of attempt results in one transaction (one fsync for many POSTs); with
    `recording`, the endpoints' health that they change (counted with every replica's) and the
    delivery slots no longer needed. Returns the health changes."""
    if not outcomes:
        return []
    async with write_lock.begin(engine) as connection:
        await _record(connection, outcomes)
        if recording is None:
            return []
        # After the outbox rows, as a claim locks them before the health rows.
        changes = await health_store.record_attempts(
            connection, outcomes, recording.rules, recording.now
        )
        await delivery_limits.release_slots(connection, recording.holder, recording.keep_slots)
        return changes


async def _record(connection: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """The outbox side of `record_outcomes`."""
    if connection.dialect.name == "postgresql":
        await connection.execute(bulk_inserts.attempts_insert(outcomes))
    else:
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
    # The common case, delivered at the first try, is one UPDATE per batch and status:
    # psycopg's executemany would send one statement per row.
    delivered: dict[int | None, list[Outcome]] = {}
    for o in outcomes:
        if o.verdict == "delivered" and o.advance:
            delivered.setdefault(o.status, []).append(o)
    for status, group in delivered.items():
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([o.claimed.id for o in group]))
            .values(
                state=STATE_DELIVERED,
                attempts=deliveries.c.attempts + 1,
                last_status=status,
                last_error=None,
                claimed_until=None,
                # The batch's last moment; each attempt's own time is in delivery_attempts.
                delivered_at=max(o.attempted_at for o in group),
                next_attempt_at=max(o.attempted_at for o in group),
            )
        )
    others = [o for o in outcomes if not (o.verdict == "delivered" and o.advance)]
    if not others:
        return
    await connection.execute(
        update(deliveries)
        .where(deliveries.c.id == bindparam("row_id"))
        .values(
            state=bindparam("new_state"),
            attempts=bindparam("new_attempts"),
            last_status=bindparam("status"),
            last_error=bindparam("error"),
            claimed_until=None,
            delivered_at=bindparam("delivered_at"),
            dead_at=bindparam("died_at"),
            next_attempt_at=bindparam("next_at"),
        ),
        [
            {
                "row_id": o.claimed.id,
                "new_state": _STATE_OF_VERDICT[o.verdict],
                "new_attempts": o.claimed.attempts + (1 if o.advance else 0),
                "status": o.status,
                "error": o.error,
                "delivered_at": o.attempted_at if o.verdict == "delivered" else None,
                "died_at": o.attempted_at if o.verdict == "dead" else None,
                "next_at": o.next_attempt_at or o.attempted_at,
            }
            for o in others
        ],
    )


_STATE_OF_VERDICT = {"delivered": STATE_DELIVERED, "retry": STATE_PENDING, "dead": STATE_DEAD}


@dataclass(frozen=True)
class SubscriptionCounts:
    pending: int
    delivered: int
    dead: int


async def counts(engine: AsyncEngine) -> dict[str, SubscriptionCounts]:
    state = deliveries.c.state
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                deliveries.c.subscription,
                func.count().filter(state == STATE_PENDING),
                func.count().filter(state == STATE_DELIVERED),
                func.count().filter(state == STATE_DEAD),
            ).group_by(deliveries.c.subscription)
        )
        return {name: SubscriptionCounts(p, d, x) for name, p, d, x in rows}


@dataclass(frozen=True)
class PendingStats:
    retrying: int  # pending events that have failed at least once
    oldest_created_at: datetime | None  # detection time of the oldest pending event
    next_attempt_at: datetime | None
    last_error: str | None = None  # one error of those that failed


async def pending_stats(engine: AsyncEngine) -> dict[str, PendingStats]:
    """Per subscription, what its pending events wait on (the partial index of pending rows)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                deliveries.c.subscription,
                func.count().filter(deliveries.c.attempts > 0),
                func.min(deliveries.c.created_at),
                func.min(deliveries.c.next_attempt_at),
                func.max(deliveries.c.last_error).filter(deliveries.c.attempts > 0),
            )
            .where(deliveries.c.state == STATE_PENDING)
            .group_by(deliveries.c.subscription)
        )
        return {
            name: PendingStats(int(retrying), _aware(oldest), _aware(due), error)
            for name, retrying, oldest, due, error in rows
        }


def _aware(moment: datetime | None) -> datetime | None:
    # Aggregates bypass the column type, so SQLite hands back naive UTC (or a string).
    if moment is None:
        return None
    if isinstance(moment, str):
        return times.parse_date_time(moment)
    return times.as_utc(moment)


@dataclass(frozen=True)
class OutboxTotals:
    pending: int
    dead: int


async def outbox_totals(engine: AsyncEngine) -> OutboxTotals:
    """Pending and dead events over all subscriptions, cheap enough to ask every few seconds:
    each count walks its state's partial index, never the delivered rows."""

    def count(state: str) -> Any:
        return select(func.count()).select_from(deliveries).where(in_state(state)).scalar_subquery()

    async with engine.connect() as connection:
        row = (await connection.execute(select(count(STATE_PENDING), count(STATE_DEAD)))).one()
    return OutboxTotals(pending=row[0], dead=row[1])
