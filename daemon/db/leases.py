"""Leases on accounts and on the singleton jobs: one replica at a time holds each, until its
lease runs out unless renewed (APScheduler 4 leases its schedules the same way, with
`acquired_by` and `acquired_until`).

A lease row is taken only when it is free (released, or run out), in one UPDATE that bumps
its `epoch`, so two replicas can never both win it. Every page commit checks, in its own
transaction, that the row still names this replica and the epoch it was granted (`fence`),
holding a share lock on the row until it commits: a replica that lost its lease (paused by
the OS, cut off from the database) cannot move a feed once another has taken it over.

Times are the replicas' wall clocks: keep hosts in sync (NTP), far closer than a lease.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db import database, write_lock
from daemon.db.tables import leases
from daemon.errors import LeaseLost

ACCOUNT_PREFIX = "account:"
# Whoever holds it runs the jobs that must run once per database: retention, and exporting
# the database's gauges (so sums over replicas do not double).
SINGLETON = "singleton"


def account_lease(account: str) -> str:
    return ACCOUNT_PREFIX + account


def lease_account(name: str) -> str | None:
    return name.removeprefix(ACCOUNT_PREFIX) if name.startswith(ACCOUNT_PREFIX) else None


@dataclass(frozen=True)
class Fence:
    """What a write must still hold to be made: the lease, its holder and the epoch granted."""

    lease: str
    holder: str
    epoch: int


@dataclass(frozen=True)
class LeaseRow:
    name: str
    holder: str | None
    epoch: int
    expires_at: datetime | None
    acquired_at: datetime | None

    def held(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now


async def ensure(engine: AsyncEngine, names: Collection[str]) -> None:
    """Rows for leases nobody has asked for yet (free, epoch 0)."""
    if not names:
        return
    async with write_lock.begin(engine) as connection:
        present = set(
            (await connection.execute(select(leases.c.name).where(leases.c.name.in_(names))))
            .scalars()
            .all()
        )
        missing = [{"name": n, "holder": None, "epoch": 0} for n in names if n not in present]
        if missing:
            statement = database.dialect_insert(connection, leases).values(missing)
            await connection.execute(statement.on_conflict_do_nothing(index_elements=["name"]))


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(leases.c.holder.is_(None), leases.c.expires_at.is_(None), leases.c.expires_at <= now)


async def acquire(
    engine: AsyncEngine,
    candidates: Collection[str],
    holder: str,
    lease_s: float,
    now: datetime,
    limit: int,
) -> dict[str, int]:
    """Take up to `limit` of the free `candidates`, each with a new epoch: {name: epoch}.
    Replicas asking at once pick at random among the free ones and skip rows another is
    taking, so they rarely wait on each other and never both win a row."""
    if limit <= 0 or not candidates:
        return {}
    async with write_lock.begin(engine) as connection:
        free = (
            (
                await connection.execute(
                    select(leases.c.name)
                    .where(leases.c.name.in_(candidates), _free(now))
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        if not free:
            return {}
        picked = random.sample(list(free), min(limit, len(free)))
        granted = await connection.execute(
            update(leases)
            .where(leases.c.name.in_(picked), _free(now))
            .values(
                holder=holder,
                epoch=leases.c.epoch + 1,
                expires_at=now + timedelta(seconds=lease_s),
                acquired_at=now,
            )
            .returning(leases.c.name, leases.c.epoch)
        )
        return {row.name: row.epoch for row in granted}


async def renew(
    engine: AsyncEngine, held: Mapping[str, int], holder: str, lease_s: float, now: datetime
) -> set[str]:
    """Extend the leases still held under the epochs granted; the names of those kept. A
    lease that ran out but that nobody took meanwhile is kept too: nobody else wrote."""
    if not held:
        return set()
    async with write_lock.begin(engine) as connection:
        kept = await connection.execute(
            update(leases)
            .where(
                leases.c.holder == holder,
                tuple_(leases.c.name, leases.c.epoch).in_(list(held.items())),
            )
            .values(expires_at=now + timedelta(seconds=lease_s))
            .returning(leases.c.name)
        )
        return set(kept.scalars().all())


async def release(engine: AsyncEngine, names: Collection[str], holder: str) -> None:
    """Give leases up at once (a clean stop, a rebalance): another replica may take them at
    its next look instead of waiting for them to run out."""
    if not names:
        return
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(leases)
            .where(leases.c.name.in_(list(names)), leases.c.holder == holder)
            .values(holder=None, expires_at=None)
        )


async def fence(connection: AsyncConnection, fence: Fence) -> None:
    """Inside a write transaction: raise LeaseLost unless `fence` still holds. On PostgreSQL
    the row stays share-locked until the transaction ends, so a takeover waits for this
    commit, and this commit sees a takeover made first."""
    epoch = (
        await connection.execute(
            select(leases.c.epoch)
            .where(leases.c.name == fence.lease, leases.c.holder == fence.holder)
            .with_for_update(read=True)
        )
    ).scalar()
    if epoch != fence.epoch:
        raise LeaseLost(fence.lease, fence.epoch)


async def read_all(engine: AsyncEngine) -> list[LeaseRow]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(leases).order_by(leases.c.name))
        return [LeaseRow(**row._mapping) for row in rows]
