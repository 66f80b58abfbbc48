"""The delivery loop against a database that fails from outside (PostgreSQL switched to
read-only, its connections cut): it stays up, says so once, delivers when the database is
back, and a stop while outcomes cannot be written ends within the grace. Also retention."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.config import DeliveryConfig
from daemon.db import database, outbox, tables
from daemon.dev.receiver import WebhookReceiver
from daemon.model import deliveries
from daemon.service import retention
from tests.conftest import POSTGRES_ADMIN_URL
from tests.delivery_harness import attempts, delivering, queue, rows, subscription, until

FAST = DeliveryConfig(timeout=2, retry_schedule=(0.05,), max_attempts=5, jitter=0)


def read_only(url: str, on: bool) -> None:
    """What a full disk or a failed-over replica looks like to the daemon: writes refused."""
    name = sqlalchemy.engine.make_url(url).database
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        value = "on" if on else "off"
        connection.execute(
            sqlalchemy.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
        )
        connection.execute(
            sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    admin.dispose()


async def test_claims_and_writes_wait_out_a_read_only_database(
    postgres_url: str, consumer: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import _empty_tables

    caplog.set_level(logging.INFO)  # the outage begins with a warning and ends with an info line
    _empty_tables(postgres_url)
    engine = database.create_engine(postgres_url)
    url = f"{consumer.base_url}/hooks/f"  # type: ignore[attr-defined]
    try:
        await queue(engine, "f", [1])
        async with delivering(engine, [subscription("f", url)], FAST) as deliverer:
            await until(lambda: consumer.received)
            await asyncio.to_thread(read_only, postgres_url, True)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(queue_sync, postgres_url, "f", 2)  # detected meanwhile
            deliverer.wake()
            await asyncio.sleep(1.5)  # claims fail and back off; the loop stays up
            await asyncio.to_thread(read_only, postgres_url, False)
            await until(lambda: len(consumer.received) == 2)
            await until(lambda: _all_delivered(engine))
        unavailable = [
            r for r in caplog.records if getattr(r, "action", "") == "database.unavailable"
        ]
        assert len(unavailable) == 1, "an outage is logged once"
        recovered = [r for r in caplog.records if getattr(r, "action", "") == "database.recovered"]
        assert len(recovered) == 1 and recovered[0].levelno == logging.INFO
        # Making the database read-only also ends its open sessions (PostgreSQL says "terminating
        # connection due to administrator command", which reads as a restart): the outage is
        # first seen as any of these, depending on what the delivery loop meets first. Either
        # way it is named.
        assert unavailable[0].levelno == logging.WARNING
        message = unavailable[0].message
        named = ("read-only", "connection lost or refused", "database is restarting")
        assert any(words in message for words in named), message
    finally:
        await asyncio.to_thread(read_only, postgres_url, False)
        await engine.dispose()


def queue_sync(url: str, name: str, item: int) -> None:
    """Insert as another process would, once the database takes writes again."""
    engine = database.create_sync_engine(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                with engine.begin() as connection:
                    connection.execute(sqlalchemy.text("SET TRANSACTION READ WRITE"))
                    connection.execute(
                        tables.deliveries.insert().values(
                            event_id=f"msg_{name}_{item}", subscription=name,
                            event_type="deal.added", item_id=str(item), body="{}",
                            created_at=datetime.now(UTC), state="pending",
                            next_attempt_at=datetime.now(UTC), attempts=0,
                        )
                    )  # fmt: skip
                return
            except sqlalchemy.exc.DBAPIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


async def _all_delivered(engine: AsyncEngine) -> bool:
    return {r.state for r in (await rows(engine)).values()} == {"delivered"}


async def test_a_stop_while_outcomes_cannot_be_written_ends_within_the_grace(
    postgres_url: str, consumer: WebhookReceiver
) -> None:
    from tests.conftest import _empty_tables

    _empty_tables(postgres_url)
    engine = database.create_engine(postgres_url)
    url = f"{consumer.base_url}/hooks/s"  # type: ignore[attr-defined]
    consumer.reply(200, delay_s=0.5)
    try:
        (event_id,) = await queue(engine, "s", [1])
        started = 0.0
        async with delivering(engine, [subscription("s", url)], FAST, grace_s=1.0) as deliverer:
            await until(lambda: deliverer._slots.in_flight["s"] > 0)  # the POST is open
            await asyncio.to_thread(read_only, postgres_url, True)
            started = time.monotonic()
        stopped_in = time.monotonic() - started
        assert stopped_in < 1.0 + 2.0 + 1.5, f"stop took {stopped_in:.1f}s"
        await asyncio.to_thread(read_only, postgres_url, False)
        row = (await rows(engine))[event_id]
        assert row.state == "pending", "unrecorded: it will be delivered again after restart"
    finally:
        await asyncio.to_thread(read_only, postgres_url, False)
        await engine.dispose()


async def test_retention_prunes_old_delivered_rows_and_attempts_in_batches(
    engine: AsyncEngine,
) -> None:
    await queue(engine, "r", list(range(7)))
    now = datetime.now(UTC)
    claimed = await outbox.claim_due(
        engine, now=now, lease_until=now + timedelta(minutes=1), capacity={"r": 10}, limit=10
    )
    verdicts = ["delivered"] * 5 + ["dead", "retry"]
    await outbox.record_outcomes(
        engine,
        [
            deliveries.Outcome(row, now, 200 if v == "delivered" else 500, None, 3, v)  # type: ignore[arg-type]
            for row, v in zip(sorted(claimed, key=lambda r: int(r.item_id)), verdicts, strict=True)
        ],
    )
    async with engine.begin() as connection:  # three were delivered long ago
        await connection.execute(
            update(tables.deliveries)
            .where(tables.deliveries.c.item_id.in_(["0", "1", "2"]))
            .values(delivered_at=now - timedelta(days=8))
        )
    removed = await retention.prune_delivered(engine, now - timedelta(days=7), batch=2, pause_s=0)
    assert removed == 3
    left = await rows(engine)
    assert sorted((r.item_id, r.state) for r in left.values()) == [
        ("3", "delivered"), ("4", "delivered"), ("5", "dead"), ("6", "pending"),
    ]  # fmt: skip
    assert sorted({a.event_id for a in await attempts(engine)}) == sorted(left)
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(sqlalchemy.func.count()).select_from(tables.deliveries)
        )
    assert count == 4
