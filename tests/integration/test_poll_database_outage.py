"""Polls while the database refuses writes (a read-only SQLite file, PostgreSQL switched to
read-only with its connections cut): one line when the outage begins, none per poll while it
lasts, one when the database is back, no tracebacks, and the polls pick up where they were."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock
from daemon import config as config_module
from daemon.db import database, tables
from daemon.dev.sandbox import Sandbox
from daemon.pipedrive.lookups import LookupCache
from daemon.polling import cycles, plan, poller
from tests.conftest import config_text
from tests.integration.test_database_faults import read_only
from tests.sandbox_client import sandbox_client

OUTAGE_CYCLES = 4


@contextlib.asynccontextmanager
async def polling(
    tmp_path: Path, database_url: str, sandbox: Sandbox, *, batched: bool = False
) -> AsyncIterator[tuple[Callable[[], Any], AsyncEngine]]:
    """The real poller on `database_url` against the sandbox; yields (one cycle, engine).
    `batched`: as in the daemon, cycle outcomes go to a `CycleLog` (not flushed here)."""
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(
            database_url=database_url,
            api_url=sandbox.base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=[{"name": "d", "trigger": "deal.added"}],
            calls_per_minute=1000,
        ),
        encoding="utf-8",
    )
    config = config_module.load(path)
    engine = database.create_engine(database_url)
    http, client = sandbox_client(sandbox.base_url)
    cycle_log = cycles.CycleLog(engine, clock.SYSTEM) if batched else None
    poll = poller.Poller(engine, {"main": client}, {"main": LookupCache()}, cycle_log=cycle_log)
    # As the daemon does at its start: `start = "now"` is this moment.
    poll.take_on(((s.name, s.trigger) for s in config.subscriptions), datetime.now(UTC))

    async def cycle() -> None:
        for feed in plan.feeds(config):
            await poll.poll(feed)  # as the scheduler runs it: an outage is no exception here

    try:
        yield cycle, engine
    finally:
        await http.aclose()
        await engine.dispose()


def sqlite_read_only(engine: AsyncEngine) -> Callable[[bool], None]:
    """A read-only open of the SQLite file, connection by connection (root writes through
    chmod): every write fails with SQLITE_READONLY, as on a read-only file or mount."""
    state = {"on": False}

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA query_only = {int(state['on'])}")
        cursor.close()

    event.listen(engine.sync_engine, "checkout", checkout)
    return lambda on: state.update(on=on)


async def queued_items(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(tables.deliveries.c.item_id))
        return [row.item_id for row in rows]


@pytest.mark.parametrize("batched", [False, True], ids=["outcomes-each", "outcomes-batched"])
async def test_a_database_outage_is_one_line_when_it_begins_and_one_when_it_ends(
    tmp_path: Path,
    database_url: str,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    batched: bool,
) -> None:
    caplog.set_level(logging.INFO)
    sqlite = database_url.startswith("sqlite")
    async with polling(tmp_path, database_url, sandbox, batched=batched) as (cycle, engine):
        switch = sqlite_read_only(engine) if sqlite else None

        async def set_read_only(on: bool) -> None:
            if switch is not None:
                switch(on)
            else:
                await asyncio.to_thread(read_only, database_url, on)

        await cycle()  # the subscription starts now
        try:
            await set_read_only(True)
            during = sandbox.add_deal("added during the outage")["id"]
            outage_starts = len(caplog.records)
            for _ in range(OUTAGE_CYCLES):
                await cycle()
            during_outage = caplog.records[outage_starts:]
        finally:
            await set_read_only(False)
        await cycle()
        assert await queued_items(engine) == [str(during)], "the polls picked up again"
        after = sandbox.add_deal("added after the outage")["id"]
        await cycle()
        assert sorted(await queued_items(engine)) == sorted([str(during), str(after)])

    said = [r for r in caplog.records if r.name.startswith("daemon")]
    began = [r for r in said if getattr(r, "action", "") == "database.unavailable"]
    ended = [r for r in said if getattr(r, "action", "") == "database.recovered"]
    assert len(began) == 1, caplog.text
    assert len(ended) == 1, caplog.text
    assert began[0].levelno == logging.WARNING and ended[0].levelno == logging.INFO
    assert "read-only" in began[0].getMessage(), began[0].getMessage()
    assert [r for r in during_outage if r.name.startswith("daemon")] == began, caplog.text
    assert not [r for r in said if r.exc_info], "no tracebacks for a known outage"
    assert "Traceback" not in caplog.text


async def test_a_subscription_whose_first_polls_meet_an_outage_starts_when_it_was_taken_on(
    tmp_path: Path, database_url: str, sandbox: Sandbox
) -> None:
    """`start = "now"` is the daemon's start, not its first poll that reached the database: a
    deal created after the start but before that poll is an addition (it was lost before)."""
    async with polling(tmp_path, database_url, sandbox) as (cycle, engine):
        switch = sqlite_read_only(engine) if database_url.startswith("sqlite") else None

        async def set_read_only(on: bool) -> None:
            if switch is not None:
                switch(on)
            else:
                await asyncio.to_thread(read_only, database_url, on)

        try:
            await set_read_only(True)
            made = sandbox.add_deal("made before the first poll reached the database")["id"]
            for _ in range(2):
                await cycle()  # the subscription cannot be recorded: nothing is read
            # The first poll that gets through comes in a later second than the deal, so the
            # deal is neither after that poll's moment nor above the ids it finds.
            await asyncio.sleep(1.1)
        finally:
            await set_read_only(False)
        await cycle()
        assert await queued_items(engine) == [str(made)]
