"""What an operator does to the outbox: list, show, replay and purge dead letters, make
pending events due now. The CLI (and any admin page) calls these; each is one statement on
the one outbox table, so it is safe while the daemon runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from daemon import times
from daemon.db import write_lock
from daemon.db.tables import STATE_DEAD, STATE_PENDING, deliveries, delivery_attempts

MAX_ID = 2**63 - 1  # ids are BIGINT on PostgreSQL, 64-bit INTEGER on SQLite


def parse_id(text: str) -> int | None:
    """A dead letter's id as an operator or a form gives it, or None when it cannot be one:
    ASCII digits only (`str.isdigit` also takes "²", and `int` reads "١٢" as 12), 1 to
    `MAX_ID` (a larger one cannot even be asked of the database)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    subscription: str
    type: str
    item_id: str
    webhook_id: str
    detected_at: datetime
    dead_at: datetime | None
    attempts: int
    last_status: int | None
    last_error: str | None
    # Dead at detection (its item could not be read or mapped): the body is the raw object,
    # so a replay reads the item again from Pipedrive instead of sending it.
    unreadable: bool = False
    # The webhook-id of a later event of the same item and subscription, queued since: the
    # version that did map. A superseded letter is not replayed.
    superseded_by: str | None = None

    @property
    def note(self) -> str | None:
        """What a person should know beside the error, or None."""
        if self.superseded_by is not None:
            return f"superseded by {self.superseded_by} (a later version of the item was queued)"
        if self.unreadable:
            return "unreadable when listed: a replay reads the item again from Pipedrive"
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription": self.subscription,
            "type": self.type,
            "item_id": self.item_id,
            "webhook_id": self.webhook_id,
            "detected_at": times.format_iso(self.detected_at),
            "dead_at": times.format_iso(self.dead_at) if self.dead_at else None,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "unreadable": self.unreadable,
            "superseded_by": self.superseded_by,
        }


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: datetime
    status: int | None
    duration_ms: int
    error: str | None
    reply: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": times.format_iso(self.at),
            "status": self.status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "reply": self.reply,
        }


@dataclass(frozen=True)
class DeadLetterDetail:
    letter: DeadLetter
    body: str
    attempt_log: list[Attempt]


@dataclass(frozen=True)
class Selection:
    """Which dead letters: by id, or by subscription and time of death, or all of them."""

    ids: Sequence[int] = ()
    subscription: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = [deliveries.c.state == STATE_DEAD]
        if self.ids:
            clauses.append(deliveries.c.id.in_(list(self.ids)))
        if self.subscription is not None:
            clauses.append(deliveries.c.subscription == self.subscription)
        if self.since is not None:
            clauses.append(deliveries.c.dead_at >= self.since)
        if self.until is not None:
            clauses.append(deliveries.c.dead_at <= self.until)
        return and_(*clauses)


# Dead the moment it was detected, never attempted: only an event whose item could not be
# read or mapped dies so (`outbox.insert_events`); a delivery failure counts an attempt.
UNREADABLE = and_(deliveries.c.attempts == 0, deliveries.c.dead_at == deliveries.c.created_at)

_later = aliased(deliveries)
# The first later event of the same subscription and item that is not itself unreadable.
_SUPERSEDED_BY = case(
    (
        UNREADABLE,
        select(_later.c.event_id)
        .where(
            _later.c.subscription == deliveries.c.subscription,
            _later.c.item_id == deliveries.c.item_id,
            _later.c.id > deliveries.c.id,
            or_(_later.c.attempts > 0, _later.c.dead_at.is_distinct_from(_later.c.created_at)),
        )
        .order_by(_later.c.id)
        .limit(1)
        .correlate(deliveries)
        .scalar_subquery(),
    ),
    else_=None,
).label("superseded_by")

_LETTER_COLUMNS = (
    deliveries.c.id,
    deliveries.c.subscription,
    deliveries.c.event_type,
    deliveries.c.item_id,
    deliveries.c.event_id,
    deliveries.c.created_at,
    deliveries.c.dead_at,
    deliveries.c.attempts,
    deliveries.c.last_status,
    deliveries.c.last_error,
    UNREADABLE.label("unreadable"),
    _SUPERSEDED_BY,
)


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        subscription=row.subscription,
        type=row.event_type,
        item_id=row.item_id,
        webhook_id=row.event_id,
        detected_at=row.created_at,
        dead_at=row.dead_at,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        unreadable=bool(row.unreadable),
        superseded_by=row.superseded_by,
    )


async def list_dead(engine: AsyncEngine, selection: Selection) -> list[DeadLetter]:
    """Dead letters, oldest death first."""
    query = (
        select(*_LETTER_COLUMNS)
        .where(selection.where())
        .order_by(deliveries.c.dead_at, deliveries.c.id)
    )
    async with engine.connect() as connection:
        return [_letter(row) for row in await connection.execute(query)]


async def show_dead(engine: AsyncEngine, letter_id: int) -> DeadLetterDetail | None:
    """One dead letter with its body and every attempt, or None when there is no such letter."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(*_LETTER_COLUMNS, deliveries.c.body).where(
                    Selection(ids=[letter_id]).where()
                )
            )
        ).one_or_none()
        if row is None:
            return None
        attempts = await connection.execute(
            select(
                delivery_attempts.c.attempt,
                delivery_attempts.c.attempted_at,
                delivery_attempts.c.status,
                delivery_attempts.c.duration_ms,
                delivery_attempts.c.error,
                delivery_attempts.c.reply,
            )
            .where(delivery_attempts.c.event_id == row.event_id)
            .order_by(delivery_attempts.c.attempted_at, delivery_attempts.c.id)
        )
        log = [Attempt(*attempt) for attempt in attempts.all()]
    return DeadLetterDetail(_letter(row), row.body, log)


async def states_of(engine: AsyncEngine, ids: Sequence[int]) -> dict[int, str]:
    """The state of each of these outbox ids that exists (`pending`, `delivered`, `dead`)."""
    if not ids:
        return {}
    query = select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(list(ids)))
    async with engine.connect() as connection:
        return {row.id: row.state for row in await connection.execute(query)}


async def replay(engine: AsyncEngine, selection: Selection, now: datetime) -> int:
    """Put dead letters back in the outbox, due now with a fresh attempt count. The row itself
    becomes pending again (same `webhook-id`), so replaying twice finds nothing the second time
    and never makes a second row. Unreadable letters are left alone: their body is what could
    not be read, and only reading the item again (`polling.reread`) can replay them."""
    statement = (
        update(deliveries)
        .where(selection.where(), ~UNREADABLE)
        .values(
            state=STATE_PENDING,
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            dead_at=None,
        )
    )
    async with write_lock.begin(engine) as connection:
        return (await connection.execute(statement)).rowcount


async def requeue_reread(engine: AsyncEngine, letter_id: int, body: str, now: datetime) -> bool:
    """An unreadable letter whose item was read again and mapped: it takes the new body and
    is queued like any event, under its own `webhook-id`. False if it is no longer dead."""
    statement = (
        update(deliveries)
        .where(deliveries.c.id == letter_id, deliveries.c.state == STATE_DEAD, UNREADABLE)
        .values(
            body=body,
            state=STATE_PENDING,
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            dead_at=None,
            last_error=None,
        )
    )
    async with write_lock.begin(engine) as connection:
        return bool((await connection.execute(statement)).rowcount)


async def keep_unreadable(engine: AsyncEngine, letter_id: int, reason: str) -> None:
    """A replay read the item again and it still fails: the letter stays dead, saying why."""
    statement = (
        update(deliveries)
        .where(deliveries.c.id == letter_id, deliveries.c.state == STATE_DEAD)
        .values(last_error=reason)
    )
    async with write_lock.begin(engine) as connection:
        await connection.execute(statement)


async def purge(engine: AsyncEngine, selection: Selection) -> int:
    """Delete dead letters (and their attempts); `selection.until` bounds the time of death."""
    async with write_lock.begin(engine) as connection:
        doomed = select(deliveries.c.event_id).where(selection.where())
        await connection.execute(
            delete(delivery_attempts).where(delivery_attempts.c.event_id.in_(doomed))
        )
        return (await connection.execute(delete(deliveries).where(selection.where()))).rowcount


async def retry_now(
    engine: AsyncEngine, now: datetime, subscription: str | None = None
) -> dict[str, int]:
    """Make pending events that wait on a backoff due at once; returns how many, per
    subscription."""
    clauses = [deliveries.c.state == STATE_PENDING, deliveries.c.next_attempt_at > now]
    if subscription is not None:
        clauses.append(deliveries.c.subscription == subscription)
    waiting = (
        select(deliveries.c.subscription, func.count())
        .where(*clauses)
        .group_by(deliveries.c.subscription)
    )
    statement = update(deliveries).where(*clauses).values(next_attempt_at=now)
    async with write_lock.begin(engine) as connection:
        moved = {name: int(count) for name, count in await connection.execute(waiting)}
        await connection.execute(statement)
        return moved
