"""Retention: delivered events and their attempts are deleted once older than
`[retention] delivered`, in small batches so no transaction holds the outbox for long.
Dead letters stay until `dead-letters purge`; pending events are never touched."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.config import RetentionConfig
from daemon.db import delivery_limits, write_lock
from daemon.db.outbox import in_state
from daemon.db.tables import STATE_DELIVERED, deliveries, delivery_attempts

logger = logging.getLogger(__name__)

BATCH = 500  # rows per transaction
PAUSE_S = 0.05  # between batches, so deliveries and polls get the database in between


async def prune_delivered(
    engine: AsyncEngine, before: datetime, *, batch: int = BATCH, pause_s: float = PAUSE_S
) -> int:
    """Delete delivered rows delivered before `before`, and their attempts; returns how many."""
    total = 0
    while True:
        async with write_lock.begin(engine) as connection:
            rows = (
                await connection.execute(
                    select(deliveries.c.id, deliveries.c.event_id)
                    .where(in_state(STATE_DELIVERED), deliveries.c.delivered_at < before)
                    .order_by(deliveries.c.delivered_at)
                    .limit(batch)
                )
            ).all()
            if rows:
                await connection.execute(
                    delete(delivery_attempts).where(
                        delivery_attempts.c.event_id.in_([row.event_id for row in rows])
                    )
                )
                await connection.execute(
                    delete(deliveries).where(deliveries.c.id.in_([row.id for row in rows]))
                )
        total += len(rows)
        if len(rows) < batch:
            return total
        await asyncio.sleep(pause_s)


async def prune(engine: AsyncEngine, settings: RetentionConfig, now: datetime) -> None:
    """The daemon's hourly job (`[retention] interval`); a failure waits for the next run."""
    try:
        removed = await prune_delivered(engine, now - timedelta(seconds=settings.delivered))
        await delivery_limits.delete_expired(engine, now)  # slots of crashed delivery loops
    except Exception:
        logger.warning(
            "retention: pruning delivered events failed; trying again next interval",
            exc_info=True,
            extra={"action": "retention.failed"},
        )
        return
    if removed:
        logger.info(
            "retention: deleted %d delivered events older than %gs, with their attempts",
            removed,
            settings.delivered,
            extra={"action": "retention.pruned"},
        )
