"""A deletion the API confirmed, written once: its events and the item's tombstone in one
transaction, so that a duplicated, late or replayed delete webhook (or one another replica
takes) finds the tombstone and neither calls Pipedrive nor fires again.

The tombstone is the item's `item_states` row with `content_hash` set to `TOMBSTONE`: the
snapshot (the last state listed, which the events carried) and the lineage stay, and should
the item come back (restored in Pipedrive), its next listing differs from the tombstone and is
a new version of it, as any change is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import leases, outbox, write_lock
from daemon.db.tables import item_states
from daemon.model import deliveries

TOMBSTONE = "deleted"  # never a content hash (64 hex digits)


async def commit(
    engine: AsyncEngine,
    *,
    account: str,
    object_type: str,
    item_id: str,
    lineage: str,
    events: Sequence[deliveries.NewEvent],
    now: datetime,
    fence: leases.Fence | None = None,
) -> set[str]:
    """Queue `events` and lay the tombstone on the item's stored version `lineage` (a version
    listed since is left as it is). Returns the `event_id`s queued now; refused (LeaseLost),
    with nothing written, unless `fence` still holds."""
    async with write_lock.begin(engine) as connection:
        if fence is not None:
            await leases.fence(connection, fence)
        queued = await outbox.insert_events(connection, events, now)
        await connection.execute(
            update(item_states)
            .where(
                item_states.c.account == account,
                item_states.c.object_type == object_type,
                item_states.c.item_id == item_id,
                item_states.c.lineage == lineage,
            )
            .values(content_hash=TOMBSTONE, seen_at=now)
        )
    return queued
