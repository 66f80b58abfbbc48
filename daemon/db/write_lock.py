"""Write transactions: on SQLite, one at a time in this process, queued in asyncio.

SQLite has a single writer. Without this, the poller committing a page and the delivery loop
claiming or recording would meet in SQLite's busy handler, whose sleeps (up to 100 ms each)
leave delivery slots idle; an asyncio lock hands over the moment the other commit is done.
PostgreSQL locks rows and needs none of it. Reads (`engine.connect()`) are not queued: WAL
lets them run beside a write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Per engine, per event loop: an asyncio.Lock belongs to the loop that first waits on it.
_LOCKS: WeakKeyDictionary[AsyncEngine, dict[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    WeakKeyDictionary()
)


def _lock(engine: AsyncEngine) -> asyncio.Lock:
    per_loop = _LOCKS.setdefault(engine, {})
    return per_loop.setdefault(asyncio.get_running_loop(), asyncio.Lock())


@contextlib.asynccontextmanager
async def begin(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()`, queued behind this process's other writes on SQLite. Not reentrant:
    never open one inside another."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as connection:
            yield connection
        return
    async with _lock(engine), engine.begin() as connection:
        yield connection
