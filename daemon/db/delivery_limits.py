"""What every replica's claims obey together, decided inside the claim's transaction under the
lock of each subscription's health row: its `per_subscription_concurrency` slots (held per
replica in `delivery_slots`), its `max_per_second` starts (`model.start_window`) and, while it
is paused, its one probe in flight. Two replicas claiming for one subscription take turns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db import database, health_store, write_lock
from daemon.db.tables import delivery_slots, subscription_health
from daemon.model import endpoint_health, start_window
from daemon.model.endpoint_health import Health

# A holder renews its slots about this often while it claims: then it sees another replica
# waiting for some of them, and gives back down to its share (see `grant`).
RENEW_EVERY_S = 1.0
# A replica that asked for slots and got none says so in a row of 0 slots lasting this long
# (renewed by each claim that still wants some): holders shrink to their share meanwhile.
WAIT_S = 2.0


@dataclass(frozen=True)
class Held:
    slots: int
    until: datetime
    # The most of them to use while other replicas want some too (None: all): above it, the
    # holder starts nothing and gives back as its POSTs end. Decided at each renewal.
    share: int | None = None


@dataclass(frozen=True)
class Wanted:
    cap: int  # per_subscription_concurrency
    slots: int  # slots this replica would use: in flight, claimed ahead and about to claim
    max_per_second: int | None = None
    endpoint: str | None = None  # the callback_url's fingerprint: health of another is not its
    ordered: bool = False  # only the head is ever claimable: one in flight without slots
    in_flight: int = 0  # of this replica's POSTs, started within its held slots


@dataclass(frozen=True)
class Request:
    holder: str  # this replica's delivery loop
    wanted: Mapping[str, Wanted]
    held: Mapping[str, Held]  # what this holder holds, as it last wrote it
    lease_s: float  # slots are held this long past each claim that renews them


@dataclass(frozen=True)
class Grant:
    health: Health  # as recorded, for the configured endpoint
    capacity: int  # rows of it the claim may take now
    held: Held | None  # this holder's slots after the claim (ordered, paused: none needed)
    starts: str | None = None  # the start window as read
    renew: bool = False  # `held` must be written

    @property
    def probe(self) -> bool:
        return self.health.state == "paused"


@dataclass(frozen=True)
class _Others:
    slots: int  # held by the other live holders together
    holders: int  # other live holders, waiting ones included
    waiting: int  # of which hold none and want some


async def _held_by_others(
    connection: AsyncConnection, holder: str, names: list[str], now: datetime
) -> dict[str, _Others]:
    if not names:
        return {}
    slots = delivery_slots.c.slots
    rows = await connection.execute(
        select(
            delivery_slots.c.subscription,
            func.sum(slots),
            func.count(),
            func.count().filter(slots <= 0),
        )
        .where(
            delivery_slots.c.subscription.in_(names),
            delivery_slots.c.holder != holder,
            delivery_slots.c.held_until > now,
        )
        .group_by(delivery_slots.c.subscription)
    )
    return {
        name: _Others(int(total or 0), int(count), int(waiting))
        for name, total, count, waiting in rows
    }


def _share(wanted: Wanted, others: _Others | None) -> int:
    """The slots a holder may use: what the others do not hold, less an even share of the
    cap for each holder that waits with none (so a second replica gets some while the first
    has a backlog)."""
    if others is None:
        return wanted.cap
    even = max(1, wanted.cap // (others.holders + 1))
    return max(0, min(wanted.cap, wanted.cap - others.slots - even * others.waiting))


async def grant(
    connection: AsyncConnection, request: Request, capacity: Mapping[str, int], now: datetime
) -> dict[str, Grant]:
    """Lock the subscriptions the claim may take rows of and say how many it may take."""
    names = sorted(n for n, free in capacity.items() if free > 0 and n in request.wanted)
    locked = await health_store.lock(connection, names)
    renew_before = now + timedelta(seconds=max(0.0, request.lease_s - RENEW_EVERY_S))
    growing = []
    for name in names:
        wanted, held = request.wanted[name], request.held.get(name)
        if wanted.ordered:
            continue
        limit = wanted.slots if held is None or held.share is None else held.share
        if held is None or held.slots < min(wanted.slots, limit) or held.until < renew_before:
            growing.append(name)
    others = await _held_by_others(connection, request.holder, growing, now)
    until = now + timedelta(seconds=request.lease_s)
    grants = {}
    for name in names:
        wanted = request.wanted[name]
        row = locked.get(name)
        stored = row.health if row else endpoint_health.HEALTHY
        health = endpoint_health.for_endpoint(stored, wanted.endpoint)
        free = capacity[name]
        held = request.held.get(name)
        renew = False
        if health.state == "disabled":
            free = 0
        elif health.state == "paused":
            free = min(free, 1) if health.may_claim_probe(now) else 0
        elif wanted.ordered:
            free = min(free, 1)
        else:
            if name in growing:
                share = _share(wanted, others.get(name))
                # Slots of POSTs in flight are never given back here (they end first).
                busy = min(wanted.in_flight, held.slots if held else 0)
                slots = max(min(wanted.slots, share), busy)
                waiting_until = now + timedelta(seconds=min(WAIT_S, request.lease_s))
                held = Held(slots, until if slots > 0 else waiting_until, share)
                renew = True
            if held is None or held.slots <= 0:
                free = 0  # other replicas hold every slot
        starts = row.starts if row else None
        if wanted.max_per_second is not None and free > 0:
            free = min(free, start_window.permits(starts, now, wanted.max_per_second))
        grants[name] = Grant(health, free, held, starts, renew)
    return grants


async def settle(
    connection: AsyncConnection,
    request: Request,
    grants: Mapping[str, Grant],
    claimed: Mapping[str, int],
    now: datetime,
    probe_until: datetime,
) -> None:
    """Write what the claim took: renewed slots, reserved starts, a probe in flight."""
    for name, given in sorted(grants.items()):
        taken = claimed.get(name, 0)
        values: dict[str, object] = {}
        if taken and request.wanted[name].max_per_second is not None:
            values["starts"] = start_window.reserve(given.starts, now, taken)
        if taken and given.probe:
            values["probe_until"] = probe_until
        if values:
            await connection.execute(
                update(subscription_health)
                .where(subscription_health.c.subscription == name)
                .values(**values)
            )
        if given.renew and given.held is not None:
            if given.held.slots > 0:
                await hold(connection, request.holder, name, given.held)
            else:
                await _wait(connection, request.holder, name, given.held.until)


async def hold(connection: AsyncConnection, holder: str, name: str, held: Held) -> None:
    """Record `holder`'s slots of `name` (none: its row goes)."""
    if held.slots <= 0:
        await connection.execute(
            delete(delivery_slots).where(
                and_(delivery_slots.c.subscription == name, delivery_slots.c.holder == holder)
            )
        )
        return
    values = {"slots": held.slots, "held_until": held.until}
    await connection.execute(
        database.dialect_insert(connection, delivery_slots)
        .values(subscription=name, holder=holder, **values)
        .on_conflict_do_update(index_elements=["subscription", "holder"], set_=values)
    )


async def _wait(connection: AsyncConnection, holder: str, name: str, until: datetime) -> None:
    """`holder` wants slots of `name` and holds none: a row of 0 slots until `until`."""
    values = {"slots": 0, "held_until": until}
    await connection.execute(
        database.dialect_insert(connection, delivery_slots)
        .values(subscription=name, holder=holder, **values)
        .on_conflict_do_update(index_elements=["subscription", "holder"], set_=values)
    )


async def release_slots(connection: AsyncConnection, holder: str, keep: Mapping[str, int]) -> None:
    """Hand back slots no longer needed: `holder` keeps `keep[name]` of each (not more than
    it holds; none: its row goes)."""
    for name, slots in sorted(keep.items()):
        if slots <= 0:
            await hold(connection, holder, name, Held(0, datetime.min))
            continue
        await connection.execute(
            update(delivery_slots)
            .where(
                delivery_slots.c.subscription == name,
                delivery_slots.c.holder == holder,
                delivery_slots.c.slots > slots,
            )
            .values(slots=slots)
        )


async def delete_expired(engine: AsyncEngine, now: datetime) -> int:
    """Delete slots whose lease ended (a crashed or stopped holder's): no claim counts them
    any more, and a live holder writes its row again when it renews. Returns how many."""
    async with write_lock.begin(engine) as connection:
        result = await connection.execute(
            delete(delivery_slots).where(delivery_slots.c.held_until < now)
        )
        return int(result.rowcount or 0)
