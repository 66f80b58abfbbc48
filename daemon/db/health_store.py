"""Endpoint health in the database: each subscription's pause or operator switch, read at
start and written whenever `delivery.verdicts` changes it (rules in `model.endpoint_health`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db import database, write_lock
from daemon.db.tables import subscription_health
from daemon.model.endpoint_health import HEALTHY, Health, disabled


async def load(engine: AsyncEngine) -> dict[str, Health]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(subscription_health))
        return {
            row.subscription: Health(
                disabled_at=row.disabled_at,
                disabled_reason=row.disabled_reason,
                paused_at=row.paused_at,
                pause_reason=row.pause_reason,
                probe_at=row.probe_at,
                probe_interval_s=row.probe_interval_s,
                endpoint=row.endpoint,
            )
            for row in rows
        }


async def save_in(
    connection: AsyncConnection, subscription: str, health: Health, now: datetime
) -> None:
    values = {
        "disabled_at": health.disabled_at,
        "disabled_reason": health.disabled_reason,
        "paused_at": health.paused_at,
        "pause_reason": health.pause_reason,
        "probe_at": health.probe_at,
        "probe_interval_s": health.probe_interval_s,
        "endpoint": health.endpoint,
        "updated_at": now,
    }
    await connection.execute(
        database.dialect_insert(connection, subscription_health)
        .values(subscription=subscription, **values)
        .on_conflict_do_update(index_elements=["subscription"], set_=values)
    )


async def save(engine: AsyncEngine, subscription: str, health: Health, now: datetime) -> None:
    async with write_lock.begin(engine) as connection:
        await save_in(connection, subscription, health, now)


async def set_disabled(
    engine: AsyncEngine, subscription: str, reason: str | None, now: datetime
) -> Health:
    """The operator's switch: `reason` None enables (and ends a pause), else disables. Disabling
    a disabled subscription keeps its first reason and time."""
    current = (await load(engine)).get(subscription, HEALTHY)
    if reason is None:
        health = replace(HEALTHY, endpoint=current.endpoint)
    elif current.disabled_at is not None:
        return current
    else:
        health = disabled(reason, now, current)
    await save(engine, subscription, health, now)
    return health


async def end_pauses(
    engine: AsyncEngine, now: datetime, subscription: str | None = None
) -> list[str]:
    """`retry-now`: the consumer is back, so paused subscriptions (all, or this one) resume at
    once instead of at their next probe. A disabled one stays disabled: that is the
    operator's switch. Returns the names whose pause ended."""
    statement = (
        update(subscription_health)
        .where(
            subscription_health.c.paused_at.is_not(None),
            subscription_health.c.disabled_at.is_(None),
        )
        .values(
            paused_at=None, pause_reason=None, probe_at=None, probe_interval_s=None, updated_at=now
        )
        .returning(subscription_health.c.subscription)
    )
    if subscription is not None:
        statement = statement.where(subscription_health.c.subscription == subscription)
    async with write_lock.begin(engine) as connection:
        return sorted((await connection.execute(statement)).scalars())
