"""What the admin page can change: replaying dead letters, with the same code as
`dead-letters replay` (`outbox_admin.replay`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock
from daemon.db import outbox_admin


async def replay(
    engine: AsyncEngine,
    *,
    ids: Collection[int] | None = None,
    subscription: str | None = None,
    now: datetime | None = None,
) -> int:
    """Queue dead letters for delivery again, due now with a fresh attempt count and the same
    `event_id`: the letters with these `ids`, or all of `subscription`'s, or both filters at
    once. Returns how many letters this call moved; a letter replayed twice is queued once."""
    if ids is None and subscription is None:
        raise ValueError("replay: give ids, a subscription, or both")
    if ids is not None and not ids:
        return 0  # an empty selection is not "all of them"
    selection = outbox_admin.Selection(ids=sorted(ids or ()), subscription=subscription)
    return await outbox_admin.replay(engine, selection, now or clock.SYSTEM.now())
