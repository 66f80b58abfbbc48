"""Endpoint health in the database: each subscription's pause or operator switch, and the
consecutive failures every replica counts together, changed by the attempts' outcomes inside
the transaction that records them (rules in `model.endpoint_health`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db import database, write_lock
from daemon.db.tables import subscription_health
from daemon.model import endpoint_health
from daemon.model.deliveries import Outcome
from daemon.model.endpoint_health import HEALTHY, Health, disabled


def _health(row: Any) -> Health:
    return Health(
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        paused_at=row.paused_at,
        pause_reason=row.pause_reason,
        probe_at=row.probe_at,
        probe_interval_s=row.probe_interval_s,
        endpoint=row.endpoint,
        failures=row.failures,
        probe_until=row.probe_until,
    )


async def load(engine: AsyncEngine) -> dict[str, Health]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(subscription_health))
        return {row.subscription: _health(row) for row in rows}


@dataclass(frozen=True)
class Locked:
    health: Health
    starts: str | None  # `model.start_window`'s text


async def lock(connection: AsyncConnection, names: Collection[str]) -> dict[str, Locked]:
    """Read these subscriptions' rows and, on PostgreSQL, lock them until the transaction ends,
    in name order (no deadlock): two replicas' claims and outcomes of one subscription take
    turns. A subscription without a row is missing (see `ensure_rows`)."""
    if not names:
        return {}
    query = (
        select(subscription_health)
        .where(subscription_health.c.subscription.in_(sorted(names)))
        .order_by(subscription_health.c.subscription)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = await connection.execute(query)
    return {row.subscription: Locked(_health(row), row.starts) for row in rows}


async def ensure_rows(engine: AsyncEngine, names: Collection[str], now: datetime) -> None:
    """Make a (healthy) row for each subscription that has none, so claims can lock it. Its
    own transaction: inserting inside a claim could deadlock two replicas' first claims."""
    if not names:
        return
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            database.dialect_insert(connection, subscription_health).on_conflict_do_nothing(),
            [{"subscription": name, "updated_at": now} for name in sorted(names)],
        )


def _values(health: Health, now: datetime) -> dict[str, Any]:
    return {
        "disabled_at": health.disabled_at,
        "disabled_reason": health.disabled_reason,
        "paused_at": health.paused_at,
        "pause_reason": health.pause_reason,
        "probe_at": health.probe_at,
        "probe_interval_s": health.probe_interval_s,
        "endpoint": health.endpoint,
        "failures": health.failures,
        "probe_until": health.probe_until,
        "updated_at": now,
    }


async def save_in(
    connection: AsyncConnection, subscription: str, health: Health, now: datetime
) -> None:
    values = _values(health, now)
    await connection.execute(
        database.dialect_insert(connection, subscription_health)
        .values(subscription=subscription, **values)
        .on_conflict_do_update(index_elements=["subscription"], set_=values)
    )


async def save(engine: AsyncEngine, subscription: str, health: Health, now: datetime) -> None:
    async with write_lock.begin(engine) as connection:
        await save_in(connection, subscription, health, now)


async def restamp_all(engine: AsyncEngine, healths: Mapping[str, Health], now: datetime) -> None:
    """Record each health as its endpoint's where the row names no endpoint (it keeps its
    counts) or another one (health judged on another URL is replaced), and nowhere else:
    another replica's newer count is never overwritten. One transaction for all (a first start
    with thousands of subscriptions stamps every row: one transaction each took minutes on
    SQLite)."""
    if not healths:
        return
    column = subscription_health.c
    names = sorted(healths)
    async with write_lock.begin(engine) as connection:
        await connection.execute(
            update(subscription_health)
            .where(column.subscription == bindparam("name"), column.endpoint.is_(None))
            .values(endpoint=bindparam("stamp")),
            [{"name": name, "stamp": healths[name].endpoint} for name in names],
        )
        stamped = await connection.execute(
            select(column.subscription, column.endpoint).where(
                column.subscription.in_(names), column.endpoint.is_not(None)
            )
        )
        for name, endpoint in stamped.all():
            health = healths[name]
            if endpoint != health.endpoint:
                await connection.execute(
                    update(subscription_health)
                    .where(
                        column.subscription == name,
                        column.endpoint.is_not(None),
                        column.endpoint != health.endpoint,
                    )
                    .values(**_values(health, now))
                )


@dataclass(frozen=True)
class Rules:
    """What judges a subscription's attempts: its `pause_after`, `probe_interval` and the
    `fingerprint` of its callback_url (None: no longer configured)."""

    pause_after: int
    probe_interval_s: float
    endpoint: str | None


@dataclass(frozen=True)
class Change:
    subscription: str
    health: Health  # as recorded now
    transitions: tuple[tuple[endpoint_health.Transition, datetime], ...]  # made by this batch


async def record_attempts(
    connection: AsyncConnection,
    outcomes: Sequence[Outcome],
    rules: Mapping[str, Rules],
    now: datetime,
) -> list[Change]:
    """Apply a batch of attempts to their endpoints' health, under the rows' locks, in the
    caller's transaction: the failures of every replica add up to one count."""
    by_name: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.effect is not None and outcome.claimed.subscription in rules:
            by_name.setdefault(outcome.claimed.subscription, []).append(outcome)
    stored = await lock(connection, by_name)
    changes = []
    for name, attempts in sorted(by_name.items()):
        rule = rules[name]
        before = stored[name].health if name in stored else None
        health = endpoint_health.for_endpoint(before or HEALTHY, rule.endpoint)
        transitions: list[tuple[endpoint_health.Transition, datetime]] = []
        for outcome in sorted(attempts, key=lambda o: o.attempted_at):
            assert outcome.effect is not None
            health, transition = endpoint_health.after_attempt(
                health,
                outcome.effect,
                outcome.attempted_at,
                outcome.error,
                pause_after=rule.pause_after,
                probe_interval_s=rule.probe_interval_s,
                probe=outcome.claimed.probe,
            )
            if transition is not None:
                transitions.append((transition, outcome.attempted_at))
        if health != before:
            await save_in(connection, name, health, now)
        changes.append(Change(name, health, tuple(transitions)))
    return changes


async def end_probes(connection: AsyncConnection, names: Collection[str]) -> None:
    """Probes claimed but never sent (handed back): another may be claimed at once."""
    if names:
        await connection.execute(
            update(subscription_health)
            .where(subscription_health.c.subscription.in_(sorted(names)))
            .values(probe_until=None)
        )


async def set_disabled(
    engine: AsyncEngine, subscription: str, reason: str | None, now: datetime
) -> Health:
    """The operator's switch: `reason` None enables (and ends a pause), else disables. Disabling
    a disabled subscription keeps its first reason and time."""
    current = (await load(engine)).get(subscription, HEALTHY)
    if reason is None:
        health = replace(HEALTHY, endpoint=current.endpoint)
    elif current.disabled_at is not None:
        return current
    else:
        health = disabled(reason, now, current)
    await save(engine, subscription, health, now)
    return health


UNPAUSED = {
    "paused_at": None,
    "pause_reason": None,
    "probe_at": None,
    "probe_interval_s": None,
    "failures": 0,
    "probe_until": None,
}
"""A `subscription_health` row's columns as a pause ends: no pause, no probe, no failures."""


async def end_pauses(
    engine: AsyncEngine, now: datetime, subscription: str | None = None
) -> list[str]:
    """`retry-now`: the consumer is back, so paused subscriptions (all, or this one) resume at
    once instead of at their next probe. A disabled one stays disabled: that is the
    operator's switch. Returns the names whose pause ended."""
    statement = (
        update(subscription_health)
        .where(
            subscription_health.c.paused_at.is_not(None),
            subscription_health.c.disabled_at.is_(None),
        )
        .values(**UNPAUSED, updated_at=now)
        .returning(subscription_health.c.subscription)
    )
    if subscription is not None:
        statement = statement.where(subscription_health.c.subscription == subscription)
    async with write_lock.begin(engine) as connection:
        return sorted((await connection.execute(statement)).scalars())
