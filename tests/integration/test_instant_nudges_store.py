"""Instant mode's rows on real SQLite and PostgreSQL: nudges relayed between replicas (one row
per feed however many come, drained only by the accounts asked for, never lost to a race) and
the per-account counts the ingress adds in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import instant_nudges, instant_webhooks
from daemon.db.instant_webhooks import NudgeTally
from daemon.db.tables import instant_nudges as table

T0 = datetime(2026, 3, 1, 23, 59, 50, tzinfo=UTC)


async def rows(engine: AsyncEngine) -> dict[tuple[str, str], datetime]:
    async with engine.connect() as connection:
        found = (await connection.execute(select(table))).all()
    return {(r.account, r.object_type): r.nudged_at for r in found}


async def test_a_flood_of_relayed_nudges_is_one_row_per_feed_with_the_latest_time(
    engine: AsyncEngine,
) -> None:
    for second in range(20):
        at = T0 + timedelta(seconds=second)
        await instant_nudges.relay(engine, {("main", "deals"): at, ("main", "persons"): at})
    await instant_nudges.relay(engine, {("main", "deals"): T0})  # an older one changes nothing
    await instant_nudges.relay(engine, {("other", "deals"): T0})
    assert await rows(engine) == {
        ("main", "deals"): T0 + timedelta(seconds=19),
        ("main", "persons"): T0 + timedelta(seconds=19),
        ("other", "deals"): T0,
    }


async def test_drain_takes_only_the_accounts_asked_for_and_deletes_what_it_returns(
    engine: AsyncEngine,
) -> None:
    await instant_nudges.relay(
        engine, {("main", "deals"): T0, ("main", "notes"): T0, ("other", "deals"): T0}
    )
    assert await instant_nudges.drain(engine, []) == []
    assert await instant_nudges.drain(engine, ["main", "absent"]) == [
        ("main", "deals"),
        ("main", "notes"),
    ]
    assert await instant_nudges.drain(engine, ["main"]) == []
    assert list(await rows(engine)) == [("other", "deals")]


async def test_nudges_relayed_while_draining_are_returned_or_kept_never_lost(
    engine: AsyncEngine,
) -> None:
    relayed = 0
    drained = 0

    async def relaying() -> None:
        nonlocal relayed
        for number in range(40):
            await instant_nudges.relay(engine, {("main", "deals"): T0 + timedelta(seconds=number)})
            relayed += 1
            await asyncio.sleep(0)

    async def draining() -> None:
        nonlocal drained
        while relayed < 40:
            drained += len(await instant_nudges.drain(engine, ["main"]))
            await asyncio.sleep(0)

    await asyncio.gather(relaying(), draining())
    drained += len(await instant_nudges.drain(engine, ["main"]))
    # Every nudge after the last drain that saw a row is in a later drain: the last relay's
    # row is always drained, and none is drained twice (one row, deleted as it is returned).
    assert 1 <= drained <= relayed
    assert await rows(engine) == {}


async def test_prune_deletes_rows_nobody_drained(engine: AsyncEngine) -> None:
    await instant_nudges.relay(
        engine, {("gone", "deals"): T0, ("main", "deals"): T0 + timedelta(hours=2)}
    )
    assert await instant_nudges.prune(engine, T0 + timedelta(hours=1)) == 1
    assert list(await rows(engine)) == [("main", "deals")]


async def counts(engine: AsyncEngine, account: str) -> tuple[datetime | None, str | None, int]:
    row = await instant_webhooks.load(engine, account)
    assert row is not None
    return row.last_nudge_at, row.nudges_day, row.nudges_today


async def test_nudge_counts_add_up_per_day_and_last_nudge_only_moves_forwards(
    engine: AsyncEngine,
) -> None:
    await instant_webhooks.ensure_credentials(engine, "main", "u", SecretStr("p"), T0)
    await instant_webhooks.ensure_credentials(engine, "other", "u2", SecretStr("p2"), T0)
    assert await counts(engine, "main") == (None, None, 0)

    await instant_webhooks.add_nudges(
        engine, {"main": NudgeTally(3, T0), "unknown": NudgeTally(1, T0)}, T0
    )
    assert await counts(engine, "main") == (T0, "2026-03-01", 3)
    # A second replica adds its own; an older last time leaves the newer one.
    await instant_webhooks.add_nudges(
        engine, {"main": NudgeTally(2, T0 - timedelta(seconds=5))}, T0
    )
    assert await counts(engine, "main") == (T0, "2026-03-01", 5)
    # Past midnight (UTC) the day starts again from this tally.
    later = T0 + timedelta(seconds=20)
    await instant_webhooks.add_nudges(engine, {"main": NudgeTally(4, later)}, later)
    assert await counts(engine, "main") == (later, "2026-03-02", 4)
    assert await counts(engine, "other") == (None, None, 0)
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(table))).scalar() == 0


async def test_relayed_deletes_keep_their_item_for_the_holder(engine: AsyncEngine) -> None:
    """A listing needs only the feed; a delete needs its item, or no replica could confirm it."""
    await instant_nudges.relay(
        engine,
        {("main", "persons"): T0},
        {("main", "persons", "7"): T0, ("main", "persons", "8"): T0, ("other", "persons", "9"): T0},
    )
    await instant_nudges.relay(engine, {}, {("main", "persons", "7"): T0})  # a retry: one row
    assert await instant_nudges.drain_deletes(engine, ["main"]) == [
        ("main", "persons", "7"),
        ("main", "persons", "8"),
    ]
    assert await instant_nudges.drain_deletes(engine, ["main"]) == [], "deleted when returned"
    assert await instant_nudges.drain(engine, ["main"]) == [("main", "persons")]
    assert await instant_nudges.prune(engine, T0 + timedelta(seconds=1)) == 1  # other's delete
    assert await instant_nudges.drain_deletes(engine, ["other"]) == []


async def test_relayed_changes_keep_their_item_apart_from_deletes(engine: AsyncEngine) -> None:
    """The holder reads a relayed change by id (1 token), as its own ingress's, not by a
    listing of its feed (10)."""
    await instant_nudges.relay(
        engine,
        {},
        {("main", "deals", "5"): T0},
        {("main", "deals", "7"): T0, ("main", "deals", "8"): T0, ("other", "deals", "9"): T0},
    )
    await instant_nudges.relay(engine, {}, None, {("main", "deals", "7"): T0})  # one row
    assert await instant_nudges.drain_changes(engine, ["main"]) == [
        ("main", "deals", "7"),
        ("main", "deals", "8"),
    ]
    assert await instant_nudges.drain_changes(engine, ["main"]) == [], "deleted when returned"
    assert await instant_nudges.drain_deletes(engine, ["main"]) == [("main", "deals", "5")]
    assert await instant_nudges.drain(engine, ["main"]) == []  # no feed row: items say it all
    assert await instant_nudges.prune(engine, T0 + timedelta(seconds=1)) == 1  # other's
    assert await instant_nudges.drain_changes(engine, ["other"]) == []
