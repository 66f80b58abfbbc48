"""This database's identity: a random id made at its first poll and kept with its data.

Every change's event id includes it, so a fresh database (a new file, a move to PostgreSQL,
the old one deleted) never repeats an id another one sent; a restored backup keeps its id,
and its item lineages keep it apart from what the lost database sent after the backup.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import database, write_lock
from daemon.db.tables import installation

_SINGLETON = 1


async def installation_id(engine: AsyncEngine, now: datetime) -> str:
    """The database's id, made on the first call (two processes racing agree on one)."""
    query = select(installation.c.id).where(installation.c.singleton == _SINGLETON)
    async with engine.connect() as connection:
        found = (await connection.execute(query)).scalar_one_or_none()
    if found is not None:
        return str(found)
    async with write_lock.begin(engine) as connection:
        statement = database.dialect_insert(connection, installation).values(
            singleton=_SINGLETON, id=uuid.uuid4().hex, created_at=now
        )
        await connection.execute(statement.on_conflict_do_nothing(index_elements=["singleton"]))
        return str((await connection.execute(query)).scalar_one())
