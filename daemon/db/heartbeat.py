"""The daemon's sign of life in the database: `status` tells a running daemon from a stopped
or killed one, on this host or another, without signals or pid files."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import times
from daemon.db import database, write_lock
from daemon.db.tables import heartbeat

logger = logging.getLogger(__name__)

NAME = "daemon"
INTERVAL_S = 10.0
# A heartbeat older than this means the daemon is gone (killed, or its host down).
STALE_AFTER_S = 3 * INTERVAL_S


@dataclass(frozen=True)
class Liveness:
    running: bool
    pid: int | None = None
    host: str | None = None
    started_at: datetime | None = None
    beat_at: datetime | None = None
    stopped_at: datetime | None = None

    def describe(self, now: datetime) -> str:
        if self.beat_at is None:
            return "daemon: never started on this database"
        where = f"pid {self.pid} on {self.host}"
        if self.running:
            age = times.format_age((now - self.beat_at).total_seconds())
            return f"daemon: running ({where}, since {_at(self.started_at)}, heartbeat {age} ago)"
        if self.stopped_at is not None:
            return f"daemon: not running (stopped at {_at(self.stopped_at)}; {where})"
        return (
            f"daemon: not running (last heartbeat at {_at(self.beat_at)}; "
            f"{where} was killed or lost)"
        )


def _at(moment: datetime | None) -> str:
    return times.format_wall_z(moment) if moment else "?"


async def beat(engine: AsyncEngine, started_at: datetime, now: datetime) -> None:
    values = {
        "name": NAME,
        "pid": os.getpid(),
        "host": socket.gethostname()[:200],
        "started_at": started_at,
        "beat_at": now,
        "stopped_at": None,
    }
    async with write_lock.begin(engine) as connection:
        statement = database.dialect_insert(connection, heartbeat).values(values)
        await connection.execute(
            statement.on_conflict_do_update(index_elements=["name"], set_=values)
        )


async def stopped(engine: AsyncEngine, now: datetime) -> None:
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(heartbeat)
            .where(heartbeat.c.name == NAME, heartbeat.c.pid == os.getpid())
            .values(stopped_at=now)
        )


async def read(engine: AsyncEngine, now: datetime) -> Liveness:
    async with engine.connect() as connection:
        row = (await connection.execute(select(heartbeat).where(heartbeat.c.name == NAME))).first()
    if row is None:
        return Liveness(running=False)
    fresh = now - row.beat_at < timedelta(seconds=STALE_AFTER_S)
    return Liveness(
        running=row.stopped_at is None and fresh,
        pid=row.pid,
        host=row.host,
        started_at=row.started_at,
        beat_at=row.beat_at,
        stopped_at=row.stopped_at,
    )


async def keep_beating(
    engine: AsyncEngine,
    interval_s: float = INTERVAL_S,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> None:
    """Beat until cancelled; a beat the database refuses is logged once and tried again."""
    started_at = clock.now()
    failing = False
    while True:
        try:
            await beat(engine, started_at, clock.now())
            failing = False
        except Exception as error:
            if not failing:
                logger.warning(
                    "cannot write the heartbeat (%s); status may show the daemon as stopped",
                    type(error).__name__,
                    extra={"action": "heartbeat.failed"},
                )
            failing = True
        await clock.sleep(interval_s)
