"""Upgrading from the id-mark release (revision 0001) keeps every promise: nothing delivered
is delivered again, nothing added while the daemon was stopped is missed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import alembic.command
import pytest
import sqlalchemy
from pydantic import SecretStr

from daemon import config as config_module
from daemon import database, events, feed_store, poller, tables
from daemon.lookups import LookupCache
from daemon.pipedrive import PipedriveClient, RetryOptions
from daemon.rate_limit import AccountRateLimiter
from daemon.sandbox import Sandbox
from tests.conftest import API_TOKEN, config_text, scratch_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0001 (what today's release created)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        alembic.command.upgrade(database._alembic_config(url), "0001")
        yield url
        return
    with scratch_postgres("pdt_upgrade") as url:
        alembic.command.upgrade(database._alembic_config(url), "0001")
        yield url


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
                    event_id=events.event_id("deals", "deal.added", deal["id"]),
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
    http = PipedriveClient.http_client(sandbox.base_url, lambda: SecretStr(API_TOKEN))
    client = PipedriveClient(
        http, account="main", limiter=AccountRateLimiter(1000), retry=RetryOptions(attempts=1)
    )
    try:
        poll = poller.Poller(async_engine, {"main": client}, {"main": LookupCache()})
        state = (await feed_store.load_states(async_engine))["deals"]
        assert state.id_floor == delivered[-1]["id"]
        for _ in range(2):
            for feed in poller.feeds(config):
                await poll.poll(feed)
        async with async_engine.connect() as connection:
            rows = (await connection.execute(sqlalchemy.select(tables.deliveries))).all()
        assert (await feed_store.load_states(async_engine))["deals"].status == "ok"
    finally:
        await http.aclose()
        await async_engine.dispose()
    pending = [row.item_id for row in rows if row.delivered_at is None]
    assert pending == [str(missed["id"])]
    assert len(rows) == 4
