"""What the admin page can change: replaying dead letters (the one function it calls)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import store
from daemon.tables import dead_letters, deliveries


async def replay(
    engine: AsyncEngine,
    *,
    ids: Collection[int] | None = None,
    subscription: str | None = None,
    now: datetime | None = None,
) -> int:
    """Queue dead letters for delivery again, due now with a fresh attempt count and the same
    `event_id` (so consumers can still deduplicate): the letters with these `ids`, or all of
    `subscription`'s, or both filters at once. Returns how many letters this call moved; a
    letter replayed twice is queued once (the outbox's `event_id` is unique)."""
    if ids is None and subscription is None:
        raise ValueError("replay: give ids, a subscription, or both")
    now = now or datetime.now(UTC)
    query = select(dead_letters)
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    if subscription is not None:
        query = query.where(dead_letters.c.subscription == subscription)
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # two replays move a letter once
        letters = (await connection.execute(query)).all()
        if not letters:
            return 0
        await connection.execute(
            store.insert_ignoring_duplicates(connection, deliveries),
            [
                {
                    "event_id": letter.event_id,
                    "subscription": letter.subscription,
                    "event_type": letter.event_type,
                    "item_id": letter.item_id,
                    "body": letter.body,
                    "created_at": letter.created_at,  # detection time: latency stays true
                    "next_attempt_at": now,
                    "attempts": 0,
                }
                for letter in letters
            ],
        )
        moved = await connection.execute(
            delete(dead_letters).where(dead_letters.c.id.in_([letter.id for letter in letters]))
        )
        return int(moved.rowcount)
