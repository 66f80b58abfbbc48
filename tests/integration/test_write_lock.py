"""Write transactions queue in asyncio on SQLite (never in its busy handler) and run side by
side on PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import write_lock
from daemon.db.tables import leases


async def test_writes_take_turns_on_sqlite_only(engine: AsyncEngine) -> None:
    spans: list[tuple[float, float]] = []

    async def write(hold_s: float) -> None:
        async with write_lock.begin(engine) as connection:
            began = time.monotonic()  # entered: on SQLite, only once the other is committed
            await connection.execute(update(leases).values(epoch=1))
            await asyncio.sleep(hold_s)  # a long page commit
            spans.append((began, time.monotonic()))

    await asyncio.gather(write(0.3), write(0.0))
    (_, first_ended), (second_began, _) = sorted(spans)
    if engine.dialect.name == "sqlite":
        # Queued before the transaction began: not waiting inside SQLite's busy handler.
        assert second_began >= first_ended, "the second write waited for the first"
    else:
        assert second_began < first_ended, "PostgreSQL writes need no turn-taking"
