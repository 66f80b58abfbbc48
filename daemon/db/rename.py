"""Renaming a subscription in the database, so its feed position and queue follow the new
name instead of being orphaned under the old one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import health_store, write_lock
from daemon.db.tables import (
    STATE_DEAD,
    STATE_DELIVERED,
    STATE_PENDING,
    deliveries,
    subscription_health,
    subscription_state,
)
from daemon.errors import ArgumentError


@dataclass(frozen=True)
class Renamed:
    had_state: bool
    pending: int
    delivered: int
    dead: int


async def rename(engine: AsyncEngine, old: str, new: str) -> Renamed:
    """Move OLD's state, outbox rows and dead letters to NEW in one transaction. Refused when
    NEW already has any (merging two histories would fire or skip events at random) or OLD
    has none. Queued events keep their ids and bodies, so consumers that saw one under the
    old name recognise it."""
    if old == new:
        raise ArgumentError("subscriptions rename: OLD and NEW are the same name")
    async with write_lock.begin(engine) as connection:

        async def count(table: Table, name: str, *where: ColumnElement[bool]) -> int:
            query = select(func.count()).select_from(table)
            query = query.where(table.c.subscription == name, *where)
            return int((await connection.execute(query)).scalar_one())

        if (
            await count(subscription_state, new)
            or await count(deliveries, new)
            or await count(subscription_health, new)
        ):
            raise ArgumentError(
                f"subscriptions rename: {new!r} already has a feed position or events in the "
                "database; pick a name it has never run under"
            )
        moved = Renamed(
            had_state=bool(await count(subscription_state, old)),
            pending=await count(deliveries, old, deliveries.c.state == STATE_PENDING),
            delivered=await count(deliveries, old, deliveries.c.state == STATE_DELIVERED),
            dead=await count(deliveries, old, deliveries.c.state == STATE_DEAD),
        )
        if not (moved.had_state or moved.pending or moved.delivered or moved.dead):
            raise ArgumentError(f"subscriptions rename: nothing in the database for {old!r}")
        for table in (subscription_state, deliveries, subscription_health):
            await connection.execute(
                update(table).where(table.c.subscription == old).values(subscription=new)
            )
        # A pause judged the old name's endpoint: the renamed subscription starts unpaused
        # (one still down is paused again after `pause_after` failures: its count starts
        # afresh, with no probe in flight and no starts reserved). A disable is the
        # operator's (or a 410's) and stays until `subscriptions enable`.
        await connection.execute(
            update(subscription_health)
            .where(subscription_health.c.subscription == new)
            .values(**health_store.UNPAUSED, starts=None)
        )
        return moved
