"""Upgrading from the id-mark release (revision 0001) keeps every promise: nothing delivered
is delivered again, nothing added while the daemon was stopped is missed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import alembic.command
import pytest
import sqlalchemy

from daemon import config as config_module
from daemon.db import database, feed_store, health_store, tables
from daemon.dev.sandbox import Sandbox
from daemon.model import endpoint_health
from daemon.pipedrive.lookups import LookupCache
from daemon.polling import plan, poller
from tests.conftest import config_text, scratch_postgres
from tests.sandbox_client import sandbox_client


def legacy_event_id(*parts: object) -> str:
    """An event id as releases up to revision 0007 made it: (subscription, trigger, item)."""
    return "msg_" + hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


def _at_revision(kind: str, tmp_path: Path, revision: str) -> Iterator[str]:
    """An empty database of `kind` migrated only up to `revision` (an older release's)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        alembic.command.upgrade(database._alembic_config(url), revision)
        yield url
        return
    with scratch_postgres("pdt_upgrade") as url:
        alembic.command.upgrade(database._alembic_config(url), revision)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0001 (what today's release created)."""
    yield from _at_revision(request.param, tmp_path, "0001")


async def test_upgrade_from_the_id_mark_release(
    old_database: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    delivered = [sandbox.add_deal(f"delivered {n}") for n in range(3)]
    # What release 0001 left behind: the mark at the last deal it saw, its row delivered.
    old_state = sqlalchemy.table(
        "subscription_state",
        *(sqlalchemy.column(c) for c in ("subscription", "account", "trigger", "mark_id")),
        *(sqlalchemy.column(c) for c in ("started_at", "status", "last_poll_at", "updated_at")),
    )
    old_outbox = sqlalchemy.table(
        "deliveries",
        *(sqlalchemy.column(c) for c in ("event_id", "subscription", "event_type", "item_id")),
        *(sqlalchemy.column(c) for c in ("body", "created_at", "next_attempt_at", "attempts")),
        sqlalchemy.column("delivered_at"),
    )
    engine = database.create_sync_engine(old_database)
    stamp = (now - timedelta(minutes=5)).replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            old_state.insert().values(
                subscription="deals", account="main", trigger="deal.added",
                mark_id=delivered[-1]["id"], started_at=stamp - timedelta(days=1),
                status="ok", last_poll_at=stamp, updated_at=stamp,
            )
        )  # fmt: skip
        for deal in delivered:
            connection.execute(
                old_outbox.insert().values(
                    event_id=legacy_event_id("deals", "deal.added", deal["id"]),
                    subscription="deals", event_type="deal.added", item_id=deal["id"],
                    body="{}", created_at=stamp, next_attempt_at=stamp, attempts=1,
                    delivered_at=stamp,
                )
            )  # fmt: skip
    engine.dispose()
    # While the daemon was stopped: a new deal, and an edit of a delivered one.
    missed = sandbox.add_deal("added while stopped")
    sandbox.update_deal(delivered[0]["id"], title="edited while stopped")

    database.upgrade(old_database)

    path = tmp_path / "c.toml"
    path.write_text(
        config_text(
            database_url=old_database,
            api_url=sandbox.base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=[{"name": "deals", "trigger": "deal.added"}],
        ),
        encoding="utf-8",
    )
    config = config_module.load(path)
    async_engine = database.create_engine(old_database)
    http, client = sandbox_client(sandbox.base_url)
    try:
        poll = poller.Poller(async_engine, {"main": client}, {"main": LookupCache()})
        state = (await feed_store.load_states(async_engine))["deals"]
        assert state.id_floor == delivered[-1]["id"]
        for _ in range(2):
            for feed in plan.feeds(config):
                await poll.poll(feed)
        async with async_engine.connect() as connection:
            rows = (await connection.execute(sqlalchemy.select(tables.deliveries))).all()
        assert (await feed_store.load_states(async_engine))["deals"].status == "ok"
    finally:
        await http.aclose()
        await async_engine.dispose()
    pending = [row.item_id for row in rows if row.state == tables.STATE_PENDING]
    assert pending == [str(missed["id"])]
    assert len(rows) == 4


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0003: dead letters still in their own table."""
    yield from _at_revision(request.param, tmp_path, "0003")


def test_dead_letters_move_into_the_outbox_with_their_times(database_at_0003: str) -> None:
    detected = datetime(2026, 11, 20, 8, 0)
    died = datetime(2026, 11, 23, 9, 30)
    common = ("event_id", "subscription", "event_type", "item_id", "body", "created_at")
    outbox = sqlalchemy.table(
        "deliveries",
        *(sqlalchemy.column(c) for c in common),
        *(sqlalchemy.column(c) for c in ("next_attempt_at", "attempts", "delivered_at")),
    )
    dead = sqlalchemy.table(
        "dead_letters",
        *(sqlalchemy.column(c) for c in common),
        *(sqlalchemy.column(c) for c in ("attempts", "last_status", "last_error", "dead_at")),
    )

    def row(event_id: str) -> dict[str, object]:
        return {
            "event_id": event_id, "subscription": "s", "event_type": "deal.added",
            "item_id": event_id.removeprefix("msg_"), "body": "{}", "created_at": detected,
        }  # fmt: skip

    engine = database.create_sync_engine(database_at_0003)
    with engine.begin() as connection:
        connection.execute(
            outbox.insert(),
            [
                {**row("msg_1"), "next_attempt_at": detected, "attempts": 1, "delivered_at": died},
                {**row("msg_2"), "next_attempt_at": detected, "attempts": 0, "delivered_at": None},
            ],
        )
        connection.execute(
            dead.insert(),
            [
                {
                    **row(event_id),
                    "attempts": 12,
                    "last_status": 500,
                    "last_error": "boom",
                    "dead_at": died,
                }
                for event_id in ("msg_2", "msg_3")  # msg_2 was detected again: pending wins
            ],
        )
    engine.dispose()

    database.upgrade(database_at_0003)

    engine = database.create_sync_engine(database_at_0003)
    with engine.connect() as connection:
        rows = {
            r.event_id: r for r in connection.execute(sqlalchemy.select(tables.deliveries)).all()
        }
        assert not sqlalchemy.inspect(connection).has_table("dead_letters")
    engine.dispose()
    assert {key: r.state for key, r in rows.items()} == {
        "msg_1": "delivered",
        "msg_2": "pending",
        "msg_3": "dead",
    }
    letter = rows["msg_3"]
    assert (letter.created_at, letter.dead_at) == (
        detected.replace(tzinfo=UTC),
        died.replace(tzinfo=UTC),
    )
    assert (letter.attempts, letter.last_status, letter.last_error) == (12, 500, "boom")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0008: health rows without the endpoint they judged."""
    yield from _at_revision(request.param, tmp_path, "0008")


async def test_health_recorded_before_endpoints_is_the_configured_endpoints(
    database_at_0008: str,
) -> None:
    paused_at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    old_health = sqlalchemy.table(
        "subscription_health",
        *(sqlalchemy.column(c) for c in ("subscription", "paused_at", "pause_reason")),
        *(sqlalchemy.column(c) for c in ("probe_at", "probe_interval_s", "updated_at")),
    )
    engine = database.create_sync_engine(database_at_0008)
    with engine.begin() as connection:
        connection.execute(
            old_health.insert().values(
                subscription="h", paused_at=paused_at, pause_reason="3 consecutive failures",
                probe_at=paused_at + timedelta(minutes=1), probe_interval_s=60.0,
                updated_at=paused_at,
            )
        )  # fmt: skip
    engine.dispose()

    database.upgrade(database_at_0008)

    async_engine = database.create_engine(database_at_0008)
    try:
        (name, health), *_ = (await health_store.load(async_engine)).items()
        assert (name, health.state, health.endpoint) == ("h", "paused", None)
        # No fingerprint: the pause holds for whatever URL is configured until it is stamped.
        url = endpoint_health.fingerprint("https://consumer.example/hook")
        stamped = endpoint_health.for_endpoint(health, url)
        assert (stamped.state, stamped.endpoint) == ("paused", url)
        await health_store.save(async_engine, "h", stamped, paused_at)
        assert (await health_store.load(async_engine))["h"].endpoint == url
    finally:
        await async_engine.dispose()
