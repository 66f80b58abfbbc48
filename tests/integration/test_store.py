"""The outbox on real SQLite and PostgreSQL: atomic detection, leases, outcomes, dead letters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import database, outbox, tables
from daemon.errors import SchemaOutOfDate
from daemon.model import deliveries

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = database.create_sync_engine(database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), tables.metadata) == []
    engine.dispose()


async def test_refuses_a_database_that_is_not_migrated(tmp_path: object) -> None:
    engine = database.create_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(SchemaOutOfDate, match="run `pipedrive-triggers migrate`"):
        await database.check_revision(engine)
    await engine.dispose()


def events(name: str, *ids: int) -> list[deliveries.NewEvent]:
    return [
        deliveries.NewEvent(name, f"msg_{name}_{i}", "deal.added", str(i), f'{{"id":{i}}}')
        for i in ids
    ]


async def claim(
    engine: AsyncEngine,
    at: datetime = NOW,
    limit: int = 10,
    capacity: dict[str, int] | None = None,
    lease_s: float = 30,
) -> list[deliveries.Claimed]:
    return await outbox.claim_due(
        engine,
        now=at,
        lease_until=at + timedelta(seconds=lease_s),
        capacity=capacity or {"s": 10},
        limit=limit,
    )


async def detect(engine: AsyncEngine, name: str, ids: list[int]) -> None:
    async with engine.begin() as connection:
        await outbox.insert_events(connection, events(name, *ids), NOW)


def item_ids(rows: list[deliveries.Claimed]) -> list[int]:
    return sorted(int(row.item_id) for row in rows)


async def test_queueing_an_event_twice_keeps_one_row(engine: AsyncEngine) -> None:
    await detect(engine, "s", [1, 2])
    await detect(engine, "s", [2, 3])  # 2 again: ignored, not an error
    assert item_ids(await claim(engine)) == [1, 2, 3]


async def test_a_lease_hides_rows_until_it_ends(engine: AsyncEngine) -> None:
    await detect(engine, "s", [1, 2, 3])

    async def ids(at: datetime) -> list[int]:
        return item_ids(await claim(engine, at))

    assert await ids(NOW) == [1, 2, 3]
    assert await ids(NOW + timedelta(seconds=10)) == []  # still leased (a live daemon's work)
    assert await ids(NOW + timedelta(seconds=31)) == [1, 2, 3]  # the claimer died: back


async def test_per_subscription_capacity_and_unknown_subscriptions(engine: AsyncEngine) -> None:
    await detect(engine, "busy", list(range(1, 21)))
    await detect(engine, "quiet", [100])
    await detect(engine, "removed-from-config", [200])
    rows = await claim(engine, limit=50, capacity={"busy": 4, "quiet": 3, "full": 0})
    by_sub: dict[str, int] = {}
    for row in rows:
        by_sub[row.subscription] = by_sub.get(row.subscription, 0) + 1
    assert by_sub == {"busy": 4, "quiet": 1}


async def test_outcomes_retry_deliver_and_dead_letter(engine: AsyncEngine) -> None:
    await detect(engine, "s", [1, 2, 3])
    rows = {int(row.item_id): row for row in await claim(engine)}
    later = NOW + timedelta(minutes=5)
    await outbox.record_outcomes(
        engine,
        [
            deliveries.Outcome(rows[1], NOW, 200, None, 12, "delivered"),
            deliveries.Outcome(rows[2], NOW, 503, "callback returned 503", 8, "retry", later),
            deliveries.Outcome(rows[3], NOW, 410, "callback returned 410 Gone", 5, "dead"),
        ],
    )
    assert await outbox.counts(engine) == {"s": outbox.SubscriptionCounts(1, 1, 1)}
    await detect(engine, "other", [4, 5])
    assert await outbox.outbox_totals(engine) == outbox.OutboxTotals(pending=3, dead=1)
    retry = await claim(engine, later)
    assert [(row.item_id, row.attempts) for row in retry] == [("2", 1)]


async def test_concurrent_claimers_never_share_a_row(engine: AsyncEngine) -> None:
    """Two daemons on one database (SKIP LOCKED on PostgreSQL, one writer on SQLite)."""
    await detect(engine, "s", list(range(1, 201)))

    async def claimer() -> list[int]:
        got: list[int] = []
        while rows := await claim(engine, limit=7, lease_s=60):
            got += [int(row.item_id) for row in rows]
        return got

    first, second = await asyncio.gather(claimer(), claimer())
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(1, 201))


@pytest.mark.parametrize(
    ("candidates", "capacity", "limit", "chosen"),
    [
        ([(1, "a"), (2, "a"), (3, "b")], {"a": 1, "b": 5}, 10, [1, 3]),
        ([(1, "a"), (2, "b"), (3, "b")], {"a": 5, "b": 5}, 2, [1, 2]),
        ([(1, "gone")], {"a": 5}, 10, []),
    ],
)
def test_pick_claims(
    candidates: list[tuple[int, str]], capacity: dict[str, int], limit: int, chosen: list[int]
) -> None:
    assert outbox.pick_claims(candidates, capacity, limit) == chosen


HANG_AND_SLOW = [(1, "hang"), (2, "slow"), (3, "hang"), (4, "slow"), (5, "slow")]


@pytest.mark.parametrize(
    ("candidates", "shared", "newcomers", "answering", "chosen"),
    [
        pytest.param(HANG_AND_SLOW, 1, (), {"slow"}, [1, 2, 4, 5], id="shared bounds stalled"),
        pytest.param(HANG_AND_SLOW, 1, (), (), [1], id="none answering: shared bounds all"),
        pytest.param([(1, "new"), (2, "new")], 0, {"new"}, (), [1], id="a newcomer gets one"),
        pytest.param(
            [(1, "new"), (2, "new"), (3, "new")], 2, {"new"}, (), [1, 2],
            id="from shared first: no reserved slot beyond it",
        ),
    ],
)  # fmt: skip
def test_pick_claims_shares_only_what_stalled_subscriptions_take(
    candidates: list[tuple[int, str]],
    shared: int,
    newcomers: set[str],
    answering: set[str],
    chosen: list[int],
) -> None:
    capacity = {"hang": 5, "slow": 5, "new": 5}
    picked = outbox.pick_claims(
        candidates, capacity, 10, shared=shared, newcomers=newcomers, answering=answering
    )
    assert picked == chosen


async def test_a_dead_letter_stays_in_the_outbox_with_its_detection_time(
    engine: AsyncEngine,
) -> None:
    await detect(engine, "s", [1])
    (row,) = await claim(engine)
    died = NOW + timedelta(days=3)
    await outbox.record_outcomes(
        engine, [deliveries.Outcome(row, died, 500, "callback returned 500", 5, "dead")]
    )
    await detect(engine, "s", [1])  # detected again: the dead letter is not revived
    async with engine.connect() as connection:
        rows = (await connection.execute(select(tables.deliveries))).all()
    assert [(r.state, r.created_at, r.dead_at, r.attempts) for r in rows] == [
        (tables.STATE_DEAD, NOW, died, 1)
    ]
    assert await claim(engine, died + timedelta(days=1)) == []
    assert await outbox.outbox_totals(engine) == outbox.OutboxTotals(pending=0, dead=1)
