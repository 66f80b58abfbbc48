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
    long_is_writing = asyncio.Event()
    moments: dict[str, float] = {}

    async def long_write() -> None:
        async with write_lock.begin(engine) as connection:
            await connection.execute(update(leases).values(epoch=1))
            long_is_writing.set()
            await asyncio.sleep(0.3)  # a long page commit
        moments["long committed"] = time.monotonic()

    async def short_write() -> None:
        await long_is_writing.wait()  # only once the long one is inside its transaction
        async with write_lock.begin(engine) as connection:
            moments["short began"] = time.monotonic()  # on SQLite, only after the long one
            await connection.execute(update(leases).values(epoch=2))

    await asyncio.gather(long_write(), short_write())
    if engine.dialect.name == "sqlite":
        # Queued before the transaction began: not waiting inside SQLite's busy handler.
        assert moments["short began"] >= moments["long committed"], "it waited for the first"
    else:
        assert moments["short began"] < moments["long committed"], (
            "PostgreSQL writes need no turn-taking"
        )
