"""Nudges relayed between replicas: any replica's ingress takes Pipedrive's call, but only the
account's lease holder reads the change, so a nudge for an account held elsewhere goes
through this table.

A call that names its item goes with it (`instant_changes`, `instant_deletes`: one row per
item), so the holder reads that item by id as it reads its own ingress's calls; a call that
names none is one row per (account, object type) in `instant_nudges`, upserted with the
latest time, and the holder lists the feed. The relaying side bounds the items it keeps (see
`instant.relay`): past that, a flood is one feed row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db import database, write_lock
from daemon.db.tables import instant_changes, instant_deletes, instant_nudges

Feed = tuple[str, str]  # (account, object type)
Item = tuple[str, str, str]  # (account, object type, item id): a delete to confirm


async def relay(
    engine: AsyncEngine,
    nudged: Mapping[Feed, datetime],
    deletes: Mapping[Item, datetime] | None = None,
    changes: Mapping[Item, datetime] | None = None,
) -> None:
    """Upsert one row per feed in one statement (the later time wins), one per delete and
    one per item changed."""
    for table, items in ((instant_deletes, deletes), (instant_changes, changes)):
        if not items:
            continue
        rows = [
            {"account": a, "object_type": o, "entity_id": i, "nudged_at": at}
            for (a, o, i), at in items.items()
        ]
        async with write_lock.begin(engine) as connection:
            statement = database.dialect_insert(connection, table).values(rows)
            await connection.execute(
                statement.on_conflict_do_nothing(
                    index_elements=["account", "object_type", "entity_id"]
                )
            )
    if not nudged:
        return
    rows = [
        {"account": account, "object_type": object_type, "nudged_at": at}
        for (account, object_type), at in nudged.items()
    ]
    async with write_lock.begin(engine) as connection:
        statement = database.dialect_insert(connection, instant_nudges).values(rows)
        # The later time wins: SQLite's two-argument max(), PostgreSQL's greatest().
        newest = (func.greatest if connection.dialect.name == "postgresql" else func.max)(
            instant_nudges.c.nudged_at, statement.excluded.nudged_at
        )
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["account", "object_type"], set_={"nudged_at": newest}
            )
        )


@dataclass(frozen=True)
class Drained:
    """What `drain_all` took: feeds to list, deletes to confirm, items changed to read."""

    feeds: list[Feed]
    deletes: list[Item]
    changes: list[Item]


async def drain_all(engine: AsyncEngine, accounts: Collection[str]) -> Drained:
    """Take every row of `accounts` from the three tables, in one transaction (what the holder
    does each second): a row relayed meanwhile is either taken now or left for the next drain,
    and a failed drain leaves every row where it was."""
    if not accounts:
        return Drained([], [], [])
    async with write_lock.begin(engine) as connection:
        return Drained(
            await _take_feeds(connection, accounts),
            await _take_items(connection, instant_deletes, accounts),
            await _take_items(connection, instant_changes, accounts),
        )


async def drain(engine: AsyncEngine, accounts: Collection[str]) -> list[Feed]:
    """Delete the feed rows of `accounts` and return the feeds they named. One DELETE ...
    RETURNING: a nudge relayed meanwhile is either returned now or left for the next drain."""
    if not accounts:
        return []
    async with write_lock.begin(engine) as connection:
        return await _take_feeds(connection, accounts)


async def drain_deletes(engine: AsyncEngine, accounts: Collection[str]) -> list[Item]:
    """Like `drain`, for the relayed deletes of `accounts`."""
    if not accounts:
        return []
    async with write_lock.begin(engine) as connection:
        return await _take_items(connection, instant_deletes, accounts)


async def drain_changes(engine: AsyncEngine, accounts: Collection[str]) -> list[Item]:
    """Like `drain`, for the relayed items changed (created, changed) of `accounts`."""
    if not accounts:
        return []
    async with write_lock.begin(engine) as connection:
        return await _take_items(connection, instant_changes, accounts)


async def _take_feeds(connection: AsyncConnection, accounts: Collection[str]) -> list[Feed]:
    statement = (
        delete(instant_nudges)
        .where(instant_nudges.c.account.in_(sorted(accounts)))
        .returning(instant_nudges.c.account, instant_nudges.c.object_type)
    )
    rows = (await connection.execute(statement)).all()
    return sorted((row.account, row.object_type) for row in rows)


async def _take_items(
    connection: AsyncConnection, table: Table, accounts: Collection[str]
) -> list[Item]:
    statement = (
        delete(table)
        .where(table.c.account.in_(sorted(accounts)))
        .returning(table.c.account, table.c.object_type, table.c.entity_id)
    )
    rows = (await connection.execute(statement)).all()
    return sorted((row.account, row.object_type, row.entity_id) for row in rows)


async def prune(engine: AsyncEngine, before: datetime) -> int:
    """Delete rows nobody drained since `before` (an account no replica holds any more, or
    one removed from the config): the reconciliation poll has read those changes by now."""
    async with write_lock.begin(engine) as connection:
        result = await connection.execute(
            delete(instant_nudges).where(instant_nudges.c.nudged_at < before)
        )
        pruned = int(result.rowcount or 0)
        for table in (instant_deletes, instant_changes):
            items = await connection.execute(delete(table).where(table.c.nudged_at < before))
            pruned += int(items.rowcount or 0)
    return pruned
