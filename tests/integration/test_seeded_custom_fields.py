"""A seeded sandbox's custom fields through the poller: what `include_custom_fields = true`
puts under `data.custom_fields` for each kind of field, read from the outbox (the bodies there
are what consumers receive, byte for byte)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from daemon import config as config_module
from daemon.db import database, tables
from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox, seed
from daemon.pipedrive.lookups import LookupCache
from daemon.polling import plan, poller
from tests.conftest import API_TOKEN, config_text
from tests.sandbox_client import sandbox_client

SEED = 7  # the demo's seed
START = "2026-01-01T00:00:00Z"  # before the seed's first record: every one is delivered
TRIGGERS = {"deal": "deal.added", "person": "person.added", "organization": "organization.added"}


@pytest.fixture
def seeded() -> Iterator[tuple[Sandbox, str]]:
    sandbox = Sandbox(token=API_TOKEN, seed=SEED)
    with serve(sandbox.app) as server:
        yield sandbox, server.base_url


async def delivered_data(
    tmp_path: Path, database_url: str, base_url: str
) -> dict[str, dict[int, dict[str, Any]]]:
    """Entity -> item id -> `data` of the events the poller queued (all seeded records)."""
    subscriptions = [
        {"name": entity, "trigger": trigger, "include_custom_fields": True, "start": START}
        for entity, trigger in TRIGGERS.items()
    ]
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(
            database_url=database_url,
            api_url=base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=subscriptions,
            calls_per_minute=1000,
        ),
        encoding="utf-8",
    )
    config = config_module.load(path)
    engine = database.create_engine(database_url)
    http, client = sandbox_client(base_url)
    try:
        poll = poller.Poller(engine, {"main": client}, {"main": LookupCache()})
        for _ in range(3):  # a backfill may take more than one cycle
            for feed in plan.feeds(config):
                await poll.poll(feed)
        async with engine.connect() as connection:
            rows = (await connection.execute(select(tables.deliveries))).all()
    finally:
        await http.aclose()
        await engine.dispose()
    result: dict[str, dict[int, dict[str, Any]]] = {entity: {} for entity in TRIGGERS}
    for row in rows:
        data = json.loads(row.body)["data"]
        result[row.subscription][data["id"]] = data
    return result


def expected(sandbox: Sandbox, entity: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record's custom fields as the sandbox holds them, named and labelled by hand."""
    fields = {f["field_code"]: f for f in sandbox.fields(entity) if f["is_custom_field"]}
    named: dict[str, Any] = {}
    for code, value in record["custom_fields"].items():
        labels = {o["id"]: o["label"] for o in fields[code]["options"] or ()}
        if value is not None and fields[code]["field_type"] == "enum":
            value = labels[value]
        elif value is not None and fields[code]["field_type"] == "set":
            value = [labels[option] for option in value]
        named[fields[code]["field_name"]] = value
    return named


async def test_seeded_records_carry_every_kind_of_custom_field_by_name(
    tmp_path: Path, database_url: str, seeded: tuple[Sandbox, str]
) -> None:
    sandbox, base_url = seeded
    got = await delivered_data(tmp_path, database_url, base_url)
    records = {
        "deal": [d for d in sandbox.deals if not d["is_archived"]],
        "person": sandbox.persons,
        "organization": sandbox.organizations,
    }
    person_ids = {p["id"] for p in sandbox.persons}
    for entity, fields in seed.CUSTOM_FIELDS.items():
        names = [name for name, _, _ in fields]
        assert sorted(got[entity]) == sorted(r["id"] for r in records[entity]), entity
        for record in records[entity]:
            delivered = got[entity][record["id"]]["custom_fields"]
            assert list(delivered) == names, "every field, in definition order, by name"
            assert delivered == expected(sandbox, entity, record)
        filled = [
            got[entity][r["id"]]["custom_fields"]
            for r in records[entity]
            if all(v is not None for v in r["custom_fields"].values())
        ]
        empty = [r for r in records[entity] if all(v is None for v in r["custom_fields"].values())]
        assert filled and empty, f"{entity}: some seeded records with values, some without"
        for values in filled:
            for name, field_type, options in fields:
                value = values[name]
                if field_type in ("varchar", "text"):
                    assert isinstance(value, str) and value
                elif field_type == "double":
                    assert isinstance(value, float)
                elif field_type == "enum":
                    assert value in options
                elif field_type == "set":
                    assert value and set(value) <= set(options) and isinstance(value, list)
                elif field_type == "date":
                    assert date.fromisoformat(value).isoformat() == value
                else:
                    assert field_type == "people" and value in person_ids, (name, value)


def test_seeded_custom_fields_are_deterministic_and_activities_have_none() -> None:
    one, two, other = Sandbox(seed=SEED), Sandbox(seed=SEED), Sandbox(seed=SEED + 1)
    for entity in seed.CUSTOM_FIELDS:
        assert one.fields(entity) == two.fields(entity)
    assert one.deals == two.deals and one.persons == two.persons
    assert one.organizations == two.organizations
    assert [d["custom_fields"] for d in one.deals] != [d["custom_fields"] for d in other.deals]
    assert not [f for f in one.fields("activity") if f["is_custom_field"]]
    assert all("custom_fields" not in a for a in one.activities)
