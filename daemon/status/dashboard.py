"""What `/metrics`' gauges and the admin page read from the database, in few cheap queries."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, cast, func, literal, null, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.tables import (
    STATE_DEAD,
    STATE_DELIVERED,
    STATE_PENDING,
    Timestamp,
    deliveries,
    delivery_attempts,
    subscription_health,
    subscription_state,
)
from daemon.metrics import SubscriptionGauges
from daemon.model import endpoint_health
from daemon.model import subscription_state as state_model

RECENT_LIMIT = 100  # deliveries and dead letters the page lists


async def ping(engine: AsyncEngine) -> None:
    """Raises when the database cannot be queried."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


@dataclass(frozen=True)
class SubscriptionRow:
    gauges: SubscriptionGauges
    delivered: int | None = None  # counted for the page only: it reads every delivered row
    last_poll_at: datetime | None = None
    last_error: str | None = None  # the last poll's
    state_reason: str | None = None
    delivery_error: str | None = None  # the newest of the events retrying

    @property
    def shown_error(self) -> str | None:
        """The error a person sees, as `status` picks it: a delivery's, else a poll's."""
        return self.delivery_error or self.last_error


async def subscriptions(
    engine: AsyncEngine,
    configured: Collection[str],
    *,
    count_delivered: bool = False,
    endpoints: Mapping[str, str] | None = None,
) -> list[SubscriptionRow]:
    """Every subscription in the config or the database, with its outbox counts and its state,
    in one statement: pending rows (the partial index of undelivered rows) and the newest error
    of those that failed an attempt, dead letters, feed states, endpoint health. `endpoints`
    (name to `SubscriptionConfig.endpoint`): health recorded for another callback_url is not
    the configured endpoint's."""
    pending = (
        select(
            deliveries.c.subscription.label("name"),
            literal("pending").label("kind"),
            func.count().label("n"),
            func.min(deliveries.c.created_at).label("at"),
            cast(null(), String).label("status"),
            func.max(deliveries.c.last_error).filter(deliveries.c.attempts > 0).label("error"),
        )
        .where(deliveries.c.state == STATE_PENDING)
        .group_by(deliveries.c.subscription)
    )
    parts: list[Any] = [
        pending,
        select(
            deliveries.c.subscription,
            literal("dead"),
            func.count(),
            cast(null(), Timestamp()),
            cast(null(), String),
            cast(null(), String),
        )
        .where(deliveries.c.state == STATE_DEAD)
        .group_by(deliveries.c.subscription),
        select(
            subscription_state.c.subscription,
            literal("state"),
            cast(literal(0), Integer),
            subscription_state.c.last_poll_at,
            subscription_state.c.status,
            subscription_state.c.last_error,
        ),
        *(
            select(
                subscription_health.c.subscription,
                literal(kind),
                cast(literal(0), Integer),
                at,
                cast(subscription_health.c.endpoint, String),  # in the feed status's place
                reason,
            ).where(at.is_not(None))
            for kind, at, reason in (
                (
                    "disabled",
                    subscription_health.c.disabled_at,
                    subscription_health.c.disabled_reason,
                ),
                ("paused", subscription_health.c.paused_at, subscription_health.c.pause_reason),
            )
        ),
    ]
    if count_delivered:
        parts.append(
            select(
                deliveries.c.subscription,
                literal("delivered"),
                func.count(),
                cast(null(), Timestamp()),
                cast(null(), String),
                cast(null(), String),
            )
            .where(deliveries.c.state == STATE_DELIVERED)
            .group_by(deliveries.c.subscription)
        )
    async with engine.connect() as connection:
        rows = (await connection.execute(union_all(*parts))).all()
    found: dict[str, dict[str, Any]] = {name: {} for name in configured}
    health: dict[str, dict[str, Any]] = {}
    for name, kind, count, at, status, error in rows:
        if kind in ("disabled", "paused"):  # lists no subscription that nothing else lists
            health.setdefault(name, {}).update(
                {f"{kind}_at": at, f"{kind}_reason": error, "endpoint": status}
            )
            continue
        entry = found.setdefault(name, {})
        if kind == "pending":
            entry |= {"pending": count, "oldest": at, "delivery_error": error}
        elif kind == "dead":
            entry["dead"] = count
        elif kind == "delivered":
            entry["delivered"] = count
        else:
            entry |= {"status": status, "last_poll_at": at, "last_error": error}
    result = []
    for name, entry in sorted(found.items()):
        switches = health.get(name, {})
        verdict = state_model.derive(
            configured=name in configured,
            poll_status=entry.get("status"),
            poll_error=entry.get("last_error"),
            polled_at=entry.get("last_poll_at"),
            health=endpoint_health.for_endpoint(
                endpoint_health.Health(
                    disabled_at=switches.get("disabled_at"),
                    disabled_reason=switches.get("disabled_reason"),
                    paused_at=switches.get("paused_at"),
                    pause_reason=switches.get("paused_reason"),
                    endpoint=switches.get("endpoint"),
                ),
                (endpoints or {}).get(name),
            ),
            delivery_error=entry.get("delivery_error"),
        )
        result.append(
            SubscriptionRow(
                SubscriptionGauges(
                    subscription=name,
                    state=verdict.state,
                    pending=entry.get("pending", 0),
                    oldest_pending_at=entry.get("oldest"),
                    dead=entry.get("dead", 0),
                ),
                delivered=entry.get("delivered", 0) if count_delivered else None,
                last_poll_at=entry.get("last_poll_at"),
                last_error=entry.get("last_error"),
                state_reason=verdict.reason,
                delivery_error=entry.get("delivery_error"),
            )
        )
    return result


@dataclass(frozen=True)
class Attempt:
    attempt: int
    attempted_at: datetime
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: str
    subscription: str
    event_type: str
    item_id: str
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    event_id: str
    subscription: str
    event_type: str
    item_id: str
    dead_at: datetime
    attempts: int
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True)
class Recent:
    deliveries: list[Delivery]
    dead_letters: list[DeadLetter]
    dead_total: int


async def recent(engine: AsyncEngine, limit: int = RECENT_LIMIT) -> Recent:
    """The newest `limit` events of the outbox with their attempts (dead letters are listed
    on their own), and the newest dead letters."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(deliveries)
                .where(deliveries.c.state != STATE_DEAD)
                .order_by(deliveries.c.id.desc())
                .limit(limit)
            )
        ).all()
        events = [
            Delivery(
                r.id,
                r.event_id,
                r.subscription,
                r.event_type,
                r.item_id,
                r.created_at,
                r.delivered_at,
                r.next_attempt_at if r.state == STATE_PENDING else None,
            )
            for r in rows
        ]
        by_event = {event.event_id: event for event in events}
        if by_event:
            attempts = await connection.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.event_id.in_(list(by_event)))
                .order_by(delivery_attempts.c.id)  # a replay numbers its attempts afresh
            )
            for a in attempts:
                by_event[a.event_id].attempts.append(
                    Attempt(a.attempt, a.attempted_at, a.status, a.error, a.duration_ms)
                )
        dead = deliveries.c.state == STATE_DEAD
        letters = (
            await connection.execute(
                select(deliveries).where(dead).order_by(deliveries.c.dead_at.desc()).limit(limit)
            )
        ).all()
        total = await connection.scalar(select(func.count()).select_from(deliveries).where(dead))
    return Recent(
        events,
        [
            DeadLetter(
                r.id,
                r.event_id,
                r.subscription,
                r.event_type,
                r.item_id,
                r.dead_at,
                r.attempts,
                r.last_status,
                r.last_error,
            )
            for r in letters
        ],
        int(total or 0),
    )
