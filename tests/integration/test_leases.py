"""Leases on real databases: one holder at a time, epochs that fence stale page commits, and
replicas (LeaseKeepers on their own engines) that share the accounts evenly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import database, feed_store, instances, leases, tables
from daemon.errors import LeaseLost
from daemon.model.items import ItemStateRow
from daemon.service.leases import LeaseKeeper, moves, share
from tests.conftest import _empty_tables

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEASE_S = 10.0
A = leases.account_lease("a")


async def test_a_lease_has_one_holder_and_a_stale_commit_is_refused(engine: AsyncEngine) -> None:
    await leases.ensure(engine, [A])
    assert await leases.acquire(engine, [A], "one", LEASE_S, NOW, 5) == {A: 1}
    assert await leases.acquire(engine, [A], "two", LEASE_S, NOW, 5) == {}, "held: not free"
    later = NOW + timedelta(seconds=5)
    assert await leases.renew(engine, {A: 1}, "one", LEASE_S, later) == {A}

    # "one" is paused past its lease; "two" takes the account over under a new epoch.
    paused_until = later + timedelta(seconds=LEASE_S + 1)
    assert await leases.acquire(engine, [A], "two", LEASE_S, paused_until, 5) == {A: 2}
    assert await leases.renew(engine, {A: 1}, "one", LEASE_S, paused_until) == set()

    await feed_store.open_feed(engine, account="a", object_type="deal", subscriptions=[], now=NOW)
    page = {
        "account": "a",
        "object_type": "deal",
        "items": [ItemStateRow("7", 1, "h", paused_until, "{}", "l")],
        "events": [],
        "watermark": paused_until,
        "max_id": 7,
        "positions": {},
        "now": paused_until,
    }
    with pytest.raises(LeaseLost, match=r"lease 'account:a' \(epoch 1\) is no longer held"):
        await feed_store.commit_page(engine, **page, fence=leases.Fence(A, "one", 1))  # type: ignore[arg-type]
    async with engine.connect() as connection:
        feed = (await connection.execute(select(tables.feeds))).one()
        items = (await connection.execute(select(tables.item_states))).all()
    assert feed.watermark == NOW and items == [], "the refused page wrote nothing"

    await feed_store.commit_page(engine, **page, fence=leases.Fence(A, "two", 2))  # type: ignore[arg-type]
    async with engine.connect() as connection:
        feed = (await connection.execute(select(tables.feeds))).one()
    assert feed.watermark == paused_until

    # Given up: free at once for anyone, and the old holder's fence no longer holds.
    await leases.release(engine, [A], "two")
    assert await leases.acquire(engine, [A], "one", LEASE_S, paused_until, 5) == {A: 3}


@pytest.mark.parametrize(
    ("held", "accounts", "replicas", "expected"),
    [
        (0, 10, 1, (0, 10)),
        (10, 10, 2, (5, 0)),  # a second replica came: give half up
        (4, 10, 3, (0, 0)),  # ceil(10 / 3) = 4
        (3, 10, 3, (0, 1)),
        (5, 10, 2, (0, 0)),
        (0, 0, 3, (0, 0)),
    ],
)
def test_moves_split_accounts_evenly(
    held: int, accounts: int, replicas: int, expected: tuple[int, int]
) -> None:
    move = moves(held, accounts, replicas)
    assert (move.release, move.acquire) == expected
    assert share(accounts, replicas) * replicas >= accounts


async def test_keepers_share_the_accounts_and_take_a_stopped_ones_share(
    postgres_url: str,
) -> None:
    """On PostgreSQL only: a second `run` on a SQLite database is refused."""
    database_url = postgres_url
    _empty_tables(database_url)
    accounts = [f"acc{n}" for n in range(10)]
    engines = [database.create_engine(database_url) for _ in range(3)]
    held: dict[str, set[str]] = {}

    async def gained(name: str, granted: dict[str, int]) -> None:
        held[name] |= set(granted)

    keepers = []
    for n, engine in enumerate(engines):
        name = f"replica-{n}"
        held[name] = set()
        me = instances.Me(name, LEASE_S, datetime.now(UTC), host="h", pid=n + 1)
        keepers.append(
            LeaseKeeper(
                engine,
                me,
                accounts,
                on_gained=lambda granted, name=name: gained(name, granted),  # type: ignore[misc]
                on_lost=lambda lost, name=name: held[name].difference_update(lost),  # type: ignore[misc]
                clock=clock_module.SYSTEM,
            )
        )
    try:
        for _ in range(3):
            for keeper in keepers:
                await keeper.look()
        counts = sorted(len(h) for h in held.values())
        assert max(counts) <= share(len(accounts), 3), held  # none above ceil(10 / 3)
        assert set().union(*held.values()) == set(accounts), "every account has a holder"
        assert sum(counts) == len(accounts), "no account has two"
        assert sum(k.holds_singleton for k in keepers) == 1, "one singleton holder"
        for keeper in keepers:
            assert sorted(keeper.held_accounts) == sorted(held[keeper.me.instance])

        await keepers[0].stop()
        for keeper in keepers[1:]:
            await keeper.look()
        assert sorted(len(held[k.me.instance]) for k in keepers[1:]) == [5, 5]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_keeper_the_database_has_not_confirmed_for_a_lease_stops_acting(
    engine: AsyncEngine,
) -> None:
    clock = clock_module.FakeClock(NOW)
    lost: list[set[str]] = []

    async def gained(granted: dict[str, int]) -> None:
        pass

    me = instances.Me("solo", LEASE_S, NOW, host="h", pid=1)
    keeper = LeaseKeeper(engine, me, ["a"], on_gained=gained, on_lost=lost.append, clock=clock)
    await keeper.look()
    assert keeper.holds("a") and keeper.fence("a") == leases.Fence(A, "solo", 1)
    clock.advance(LEASE_S)  # no renewal got through meanwhile (paused, cut off)
    assert not keeper.holds("a"), "no longer trusted: polls stop"
    await keeper.look()  # nobody took it: renewed under the same epoch, trusted again
    assert keeper.holds("a") and keeper.fence("a").epoch == 1
    assert lost == []
