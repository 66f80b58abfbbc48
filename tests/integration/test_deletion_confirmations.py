"""Confirming a deletion (instant mode's `*.deleted` triggers) survives failures: Pipedrive or
the database failing is tried again until it is confirmed, and a stop hands the deletes still
waiting over through the database, so a delete webhook already answered is never dropped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon.clock import FakeClock
from daemon.db import database, instant_nudges, tables
from daemon.dev.sandbox import Sandbox, faults
from daemon.instant import deletions
from daemon.instant.nudges import Nudge
from daemon.pipedrive.client import PipedriveClient
from daemon.pipedrive.lookups import LookupCache
from daemon.polling import plan, poller
from tests.conftest import config_text
from tests.integration.test_instant_ingress import until
from tests.sandbox_client import sandbox_client


async def _stored_person(
    tmp_path: Path, database_url: str, sandbox: Sandbox
) -> tuple[config_module.Config, AsyncEngine, PipedriveClient, int]:
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(
            database_url=database_url,
            api_url=sandbox.base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=[{"name": "gone", "trigger": "person.deleted"}],
        )
        + '\n[instant]\nlisten = "127.0.0.1:9466"\npublic_url = "http://127.0.0.1:9466/p"\n',
        encoding="utf-8",
    )
    config = config_module.load(path)
    engine = database.create_engine(database_url)
    _, client = sandbox_client(sandbox.base_url)
    [feed] = plan.feeds(config)
    await poller.Poller(engine, {"main": client}, {"main": LookupCache()}).poll(feed)
    person = sandbox.add_person("Ada Lovelace")
    await poller.Poller(engine, {"main": client}, {"main": LookupCache()}).poll(feed)
    return config, engine, client, person["id"]


async def _queued(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(tables.deliveries.c.body))).all()
    return [json.loads(row.body) for row in rows]


async def test_a_deletion_pipedrive_fails_to_confirm_is_tried_again_until_it_fires(
    tmp_path: Path, database_url: str, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    config, engine, client, person = await _stored_person(tmp_path, database_url, sandbox)
    try:
        sandbox.delete_person(person)
        sandbox.faults.add(status=500, path=f"/api/v2/persons/{person}", count=2)
        confirmations = deletions.Confirmations(
            engine, lambda: config, {"main": client}, {"main": LookupCache()}, clock=FakeClock()
        )
        assert confirmations.submit(Nudge("main", "persons", "delete", str(person)))
        await asyncio.gather(*confirmations._running.values())
        [event] = await _queued(engine)
        assert (event["type"], event["data"]["name"]) == ("person.deleted", "Ada Lovelace")
        assert sandbox.calls_to("GET", f"/api/v2/persons/{person}") == 3
        retried = [r for r in caplog.records if r.action == "instant.deletion_failed"]  # type: ignore[attr-defined]
        assert len(retried) == 2 and "trying again in 5s" in retried[0].getMessage()
    finally:
        await client._http.aclose()
        await engine.dispose()


async def test_a_stop_hands_the_deletions_still_failing_over_through_the_database(
    tmp_path: Path, database_url: str, sandbox: Sandbox
) -> None:
    config, engine, client, person = await _stored_person(tmp_path, database_url, sandbox)
    try:
        sandbox.delete_person(person)
        sandbox.faults.add(status=500, path=f"/api/v2/persons/{person}", count=faults.FOREVER)
        confirmations = deletions.Confirmations(  # on the wall clock: the retry waits 5 s
            engine, lambda: config, {"main": client}, {"main": LookupCache()}
        )
        assert confirmations.submit(Nudge("main", "persons", "delete", str(person)))
        await until(lambda: bool(confirmations._retrying), "the first try failed")
        await confirmations.aclose()
        assert await _queued(engine) == []
        # Whoever holds the account next drains it and confirms it.
        relayed = await instant_nudges.drain_deletes(engine, ["main"])
        assert relayed == [("main", "persons", str(person))]
    finally:
        await client._http.aclose()
        await engine.dispose()
