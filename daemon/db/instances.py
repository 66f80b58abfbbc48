"""The running replicas' signs of life in the database: one row per `run` process, beaten
every third of its lease, so `status` tells running replicas from stopped or gone ones, on
this host or another, without signals or pid files, and the replicas know how many share the
accounts (see `service.leases`)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.db import database, write_lock
from daemon.db.tables import instances
from daemon.errors import InstanceNameInUse

State = Literal["running", "stopped", "gone"]
# A replica whose heartbeat is older than this many of its leases is gone (killed, its host
# down, or cut off from the database).
GONE_AFTER_LEASES = 2
# Rows of replicas that ended this long ago are pruned (the newest one is always kept, so
# `status` can still say when the daemon last ran).
KEEP_ENDED_S = 86_400.0


@dataclass(frozen=True)
class Me:
    """What this process writes in its row."""

    instance: str
    lease_s: float
    started_at: datetime
    config_fingerprint: str | None = None
    code_revision: str | None = None
    # Read when made, not at import: the tests' processes fork from one that imported it.
    host: str = field(default_factory=lambda: socket.gethostname()[:200])
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True)
class Instance:
    instance: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    lease_s: float
    config_fingerprint: str | None
    code_revision: str | None

    def state(self, now: datetime) -> State:
        if self.stopped_at is not None:
            return "stopped"
        if now - self.heartbeat_at > timedelta(seconds=GONE_AFTER_LEASES * self.lease_s):
            return "gone"
        return "running"

    def is_live(self, now: datetime) -> bool:
        """Counted when sharing accounts: beaten within one lease. Stricter than `running`,
        so a dead replica stops counting when its leases run out, not a lease later."""
        return self.stopped_at is None and now - self.heartbeat_at <= timedelta(
            seconds=self.lease_s
        )

    def as_json(self, now: datetime, accounts: int) -> dict[str, object]:
        return {
            "instance": self.instance,
            "host": self.host,
            "pid": self.pid,
            "started_at": times.format_rfc3339_z(self.started_at),
            "heartbeat_at": times.format_rfc3339_z(self.heartbeat_at),
            "accounts": accounts,
            "state": self.state(now),
        }


async def beat(engine: AsyncEngine, me: Me, now: datetime) -> None:
    values = {
        "instance": me.instance,
        "host": me.host,
        "pid": me.pid,
        "started_at": me.started_at,
        "heartbeat_at": now,
        "stopped_at": None,
        "lease_s": me.lease_s,
        "config_fingerprint": me.config_fingerprint,
        "code_revision": me.code_revision,
    }
    async with write_lock.begin(engine) as connection:
        statement = database.dialect_insert(connection, instances).values(values)
        await connection.execute(
            statement.on_conflict_do_update(index_elements=["instance"], set_=values)
        )


async def refuse_name_in_use(engine: AsyncEngine, me: Me, now: datetime) -> None:
    """Two running replicas with one `[cluster] instance` would renew each other's leases:
    the second is refused while the first one's heartbeat is fresh."""
    for replica in await read_all(engine):
        same_process = (replica.host, replica.pid) == (me.host, me.pid)
        if replica.instance == me.instance and not same_process and replica.state(now) == "running":
            raise InstanceNameInUse(me.instance, f"pid {replica.pid} on {replica.host}")


async def mark_stopped(engine: AsyncEngine, me: Me, now: datetime) -> None:
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(instances)
            .where(instances.c.instance == me.instance, instances.c.pid == me.pid)
            .values(stopped_at=now)
        )


async def read_all(engine: AsyncEngine) -> list[Instance]:
    """Every replica's row, the most recently started first."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(instances).order_by(instances.c.started_at.desc(), instances.c.instance)
        )
        return [Instance(**row._mapping) for row in rows]


async def prune(engine: AsyncEngine, now: datetime) -> int:
    """Forget replicas that ended (stopped or gone) over a day ago, but the newest row."""
    rows = await read_all(engine)
    if not rows:
        return 0
    cutoff = now - timedelta(seconds=KEEP_ENDED_S)
    old = [r.instance for r in rows[1:] if r.state(now) != "running" and r.heartbeat_at < cutoff]
    if not old:
        return 0
    async with write_lock.begin(engine) as connection:
        await connection.execute(delete(instances).where(instances.c.instance.in_(old)))
    return len(old)


@dataclass(frozen=True)
class Liveness:
    """The daemon as a whole, for the first line of `status`: running while any replica is."""

    replicas: tuple[Instance, ...]
    now: datetime

    @property
    def running(self) -> bool:
        return bool(self.live)

    @property
    def live(self) -> list[Instance]:
        return [r for r in self.replicas if r.state(self.now) == "running"]

    def describe(self) -> str:
        if not self.replicas:
            return "daemon: never started on this database"
        live = self.live
        if len(live) > 1:
            return f"daemon: running ({len(live)} replicas: {', '.join(r.instance for r in live)})"
        if live:
            [replica] = live
            age = times.format_age((self.now - replica.heartbeat_at).total_seconds())
            return (
                f"daemon: running ({_where(replica)}, since {_at(replica.started_at)}, "
                f"heartbeat {age} ago)"
            )
        last = self.replicas[0]
        if last.stopped_at is not None:
            return f"daemon: not running (stopped at {_at(last.stopped_at)}; {_where(last)})"
        return (
            f"daemon: not running (last heartbeat at {_at(last.heartbeat_at)}; "
            f"{_where(last)} was killed or lost)"
        )


def _where(replica: Instance) -> str:
    return f"pid {replica.pid} on {replica.host}"


def _at(moment: datetime | None) -> str:
    return times.format_wall_z(moment) if moment else "?"


async def liveness(engine: AsyncEngine, now: datetime) -> Liveness:
    return Liveness(tuple(await read_all(engine)), now)
