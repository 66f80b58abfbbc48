"""The operator's commands on real SQLite and PostgreSQL: dead letters listed, shown, replayed
and purged, retry-now, subscriptions enable/disable (also against a running daemon), secrets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from daemon.cli import main
from daemon.db import database, health_store, outbox, tables
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.model import deliveries, endpoint_health
from tests.conftest import config_text
from tests.integration.test_pipeline import (
    MakeConfig,
    all_polled,
    eventually,
    make_config,
    running,
    wait_for_events,
)

__all__ = ["make_config"]  # a fixture, used by name

DETECTED = datetime.now(UTC) - timedelta(days=3)


def invoke(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main.main, ["--config", str(config_path), *args])


def ok(config_path: Path, *args: str) -> str:
    result = invoke(config_path, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def unwell(config_path: Path, *args: str) -> str:
    """`status` where something needs a look (here, at least: no daemon runs): exit 1."""
    result = invoke(config_path, *args)
    assert result.exit_code == 1, result.output
    return result.stdout


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(
            database_url=database_url,
            api_url="http://127.0.0.1:9",
            callback_url="http://127.0.0.1:9",
            subscriptions=[
                {"name": "a", "trigger": "deal.added"},
                {"name": "b", "trigger": "deal.added"},
            ],
        ),
        encoding="utf-8",
    )
    return path


async def _seed(url: str, letters: dict[str, list[tuple[int, timedelta]]]) -> None:
    """Per subscription, (item id, how long ago it died) letters with one attempt each."""
    engine = database.create_engine(url)
    try:
        for name, items in letters.items():
            async with engine.begin() as connection:
                await outbox.insert_events(
                    connection,
                    [
                        deliveries.NewEvent(
                            name, f"msg_{name}_{i}", "deal.added", str(i), f'{{"id":{i}}}'
                        )
                        for i, _ in items
                    ],
                    DETECTED,
                )
            claimed = await outbox.claim_due(
                engine,
                now=DETECTED,
                lease_until=DETECTED + timedelta(minutes=1),
                capacity={name: 100},
                limit=100,
            )
            ago = {str(i): age for i, age in items}
            now = datetime.now(UTC)
            await outbox.record_outcomes(
                engine,
                [
                    deliveries.Outcome(
                        row,
                        now - ago[row.item_id],
                        500,
                        "callback returned 500",
                        7,
                        "dead",
                        reply="KeyError 'org_id'",
                    )
                    for row in claimed
                ],
            )
    finally:
        await engine.dispose()


async def _rows(url: str) -> list[Any]:
    engine = database.create_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(tables.deliveries).order_by(tables.deliveries.c.id)
            return list((await connection.execute(query)).all())
    finally:
        await engine.dispose()


def letters(config_path: Path, *args: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(
        ok(config_path, "dead-letters", "list", "--json", *args)
    )
    return result


def test_dead_letters_list_show_replay_purge(config_path: Path, database_url: str) -> None:
    asyncio.run(
        _seed(
            database_url,
            {
                "a": [(1, timedelta(days=40)), (2, timedelta(hours=5))],
                "b": [(3, timedelta(minutes=30)), (4, timedelta(minutes=10))],
            },
        )
    )
    listed = letters(config_path)
    assert [(x["subscription"], x["item_id"]) for x in listed] == [
        ("a", "1"), ("a", "2"), ("b", "3"), ("b", "4"),
    ]  # fmt: skip
    first = listed[0]
    assert {"id", "subscription", "type", "item_id", "webhook_id", "detected_at", "dead_at",
            "attempts", "last_status", "last_error"} <= set(first)  # fmt: skip
    assert datetime.fromisoformat(first["detected_at"]) == DETECTED  # its detection time, kept
    assert (first["attempts"], first["last_status"]) == (1, 500)
    assert [x["item_id"] for x in letters(config_path, "--subscription", "a", "--since", "1d")] == [
        "2"
    ]
    until = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    assert [x["item_id"] for x in letters(config_path, "--until", until)] == ["1", "2", "3"]
    table = ok(config_path, "dead-letters", "list")
    assert "callback returned 500" in table and "msg_" not in table.splitlines()[0]

    shown = json.loads(ok(config_path, "dead-letters", "show", str(first["id"]), "--json"))
    assert shown["body"] == '{"id":1}' and shown["webhook_id"] == "msg_a_1"
    log = [(a["attempt"], a["status"], a["duration_ms"], a["reply"]) for a in shown["attempt_log"]]
    assert log == [(1, 500, 7, "KeyError 'org_id'")]
    assert invoke(config_path, "dead-letters", "show", "999999").exit_code == 2

    # Single, twice: the second finds nothing, and there is never a second row.
    assert ok(config_path, "dead-letters", "replay", str(first["id"])) == "replayed 1\n"
    again = ok(config_path, "dead-letters", "replay", str(first["id"]))
    assert again == f"replayed 0\ndead letter {first['id']}: not dead (pending): nothing to do\n"
    rows = asyncio.run(_rows(database_url))
    assert [r.event_id for r in rows].count("msg_a_1") == 1
    replayed = next(r for r in rows if r.event_id == "msg_a_1")
    assert (replayed.state, replayed.attempts, replayed.created_at) == ("pending", 0, DETECTED)
    assert "msg_a_1" not in [x["webhook_id"] for x in letters(config_path)]

    # By subscription and time range.
    out = ok(config_path, "dead-letters", "replay", "--subscription", "b", "--since", "20m")
    assert out == "replayed 1\n"
    assert [x["item_id"] for x in letters(config_path)] == ["2", "3"]
    assert invoke(config_path, "dead-letters", "replay").exit_code == 2  # no selection
    assert (
        invoke(config_path, "dead-letters", "replay", "--all", "--subscription", "a").exit_code == 2
    )

    # Purge counts from death; 0s takes everything left.
    assert ok(config_path, "dead-letters", "purge", "--older-than", "1h") == "purged 1\n"
    assert [x["item_id"] for x in letters(config_path)] == ["3"]
    assert ok(
        config_path, "dead-letters", "purge", "--older-than", "0s", "--subscription", "a"
    ) == ("purged 0\n")
    assert ok(config_path, "dead-letters", "replay", "--all") == "replayed 1\n"
    assert letters(config_path) == []
    states = {r.event_id: r.state for r in asyncio.run(_rows(database_url))}
    assert states == {"msg_a_1": "pending", "msg_b_3": "pending", "msg_b_4": "pending"}


async def _postpone(url: str, hours: int) -> None:
    engine = database.create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(tables.deliveries).values(
                    next_attempt_at=datetime.now(UTC) + timedelta(hours=hours)
                )
            )
    finally:
        await engine.dispose()


def test_replay_names_unknown_ids_and_still_replays_the_known_ones(
    config_path: Path, database_url: str
) -> None:
    asyncio.run(_seed(database_url, {"a": [(1, timedelta(0)), (2, timedelta(0))]}))
    known = [x["id"] for x in letters(config_path)]
    result = invoke(config_path, "dead-letters", "replay", "9999", str(known[0]), "9998")
    assert result.exit_code == 2, result.output
    assert result.stdout == "replayed 1\n"
    assert "no dead letter with id 9998, 9999" in result.stderr, result.stderr
    assert [x["id"] for x in letters(config_path)] == known[1:]
    alone = invoke(config_path, "dead-letters", "replay", "9999")
    assert alone.exit_code == 2 and "9999" in alone.stderr, alone.output


@pytest.mark.parametrize("given", ["²", "١٢", "12345678901234567890", "0", "-1"])
def test_an_id_that_is_no_id_is_a_usage_error(
    config_path: Path, database_url: str, given: str
) -> None:
    asyncio.run(_seed(database_url, {"a": [(12, timedelta(0))]}))
    for command in ("replay", "show"):
        result = invoke(config_path, "dead-letters", command, "--", given)
        assert result.exit_code == 2, result.output
        assert f"{given!r} is not a dead letter's id: 1 to 9223372036854775807" in result.stderr
    assert len(letters(config_path)) == 1, "nothing replayed"


def test_retry_now_makes_waiting_events_due(config_path: Path, database_url: str) -> None:
    asyncio.run(_seed(database_url, {"a": [(1, timedelta(0))], "b": [(2, timedelta(0))]}))
    ok(config_path, "dead-letters", "replay", "--all")
    asyncio.run(_postpone(database_url, 5))
    assert ok(config_path, "retry-now", "--subscription", "a") == "made 1 pending events due now\n"
    due = {r.subscription: r.next_attempt_at for r in asyncio.run(_rows(database_url))}
    assert due["a"] <= datetime.now(UTC) < due["b"]
    assert ok(config_path, "retry-now") == "made 1 pending events due now\n"


async def _set_health(url: str, healths: dict[str, endpoint_health.Health]) -> None:
    engine = database.create_engine(url)
    try:
        for name, health in healths.items():
            await health_store.save(engine, name, health, datetime.now(UTC))
    finally:
        await engine.dispose()


async def _healths(url: str) -> dict[str, endpoint_health.Health]:
    engine = database.create_engine(url)
    try:
        return await health_store.load(engine)
    finally:
        await engine.dispose()


def test_retry_now_ends_a_pause_and_leaves_a_disabled_subscription_alone(
    config_path: Path, database_url: str
) -> None:
    """The consumer is back: a paused subscription's events, due but held to one probe an
    hour, go out now; an operator's disable stays until `subscriptions enable`."""
    asyncio.run(_seed(database_url, {"a": [(1, timedelta(0)), (2, timedelta(0))]}))
    asyncio.run(_seed(database_url, {"b": [(3, timedelta(0))]}))
    ok(config_path, "dead-letters", "replay", "--all")  # pending and due now
    now = datetime.now(UTC)
    paused = endpoint_health.paused("10 consecutive failures", now, 3600)
    disabled = endpoint_health.disabled("disabled by an operator", now)
    asyncio.run(_set_health(database_url, {"a": paused, "b": disabled}))
    out = ok(config_path, "retry-now")
    lines = out.splitlines()
    assert lines[0] == "made 2 pending events due now", out
    assert "subscription 'a': pause ended" in out
    assert "subscription 'b' stays disabled (1 pending)" in out
    assert "subscriptions enable b" in out
    healths = asyncio.run(_healths(database_url))
    assert healths["a"].state == "ok"
    assert healths["b"] == disabled
    # Nothing paused any more: an ordinary retry-now again, counting only what it moved.
    assert ok(config_path, "retry-now", "--subscription", "a") == "made 0 pending events due now\n"


def test_status_json_of_a_paused_subscription_says_when_it_is_probed_next(
    config_path: Path, database_url: str
) -> None:
    asyncio.run(_seed(database_url, {"a": [(1, timedelta(0))]}))
    ok(config_path, "dead-letters", "replay", "--all")  # pending, due now
    now = datetime.now(UTC)
    paused = endpoint_health.paused("10 consecutive failures", now, 3600)
    asyncio.run(_set_health(database_url, {"a": paused}))
    rows = {row["subscription"]: row for row in json.loads(unwell(config_path, "status", "--json"))}
    assert rows["a"]["state"] == "paused"
    # `status` is the feed's own word (never polled here), `state` the subscription's.
    assert rows["a"]["status"] == "not started"
    assert rows["a"]["next_attempt_at"] is not None
    assert datetime.fromisoformat(rows["a"]["next_attempt_at"]) == paused.probe_at


def test_a_renamed_subscription_starts_unpaused_and_keeps_an_operators_disable(
    config_path: Path, database_url: str
) -> None:
    """A pause belongs to the endpoint the old name delivered to; a disable is the operator's
    and stays until `subscriptions enable`."""
    asyncio.run(_seed(database_url, {"old-a": [(1, timedelta(0))], "old-b": [(2, timedelta(0))]}))
    now = datetime.now(UTC)
    paused = endpoint_health.paused("10 consecutive failures", now, 3600)
    disabled = endpoint_health.disabled("disabled by an operator", now)
    asyncio.run(_set_health(database_url, {"old-a": paused, "old-b": disabled}))
    ok(config_path, "subscriptions", "rename", "old-a", "a")
    ok(config_path, "subscriptions", "rename", "old-b", "b")
    healths = asyncio.run(_healths(database_url))
    assert healths["a"].state == "ok" and healths["a"].probe_at is None
    assert healths["b"] == disabled
    assert "old-a" not in healths and "old-b" not in healths


def test_secrets_generate_prints_a_standard_webhooks_secret(config_path: Path) -> None:
    first = ok(config_path, "secrets", "generate").strip()
    second = ok(config_path, "secrets", "generate").strip()
    assert first.startswith("whsec_") and first != second
    signature = Webhook(first).sign("msg_1", datetime.now(UTC), "{}")
    headers = {"webhook-id": "msg_1", "webhook-signature": signature,
               "webhook-timestamp": str(int(datetime.now(UTC).timestamp()))}  # fmt: skip
    assert Webhook(first).verify("{}", headers) == {}


def test_schema_command_contract(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = json.loads(runner.invoke(main.main, ["schema", "deal.won"]).stdout)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "previous" in printed["required"]
    assert runner.invoke(main.main, ["schema", "deal.nope"]).exit_code == 2
    assert runner.invoke(main.main, ["schema", "--all"]).exit_code == 2


async def _pending(config: Any) -> int:
    engine = database.create_engine(config.database.url)
    try:
        async with engine.connect() as connection:
            query = select(func.count()).where(tables.deliveries.c.state == tables.STATE_PENDING)
            return int(await connection.scalar(query) or 0)
    finally:
        await engine.dispose()


async def test_disable_and_replay_reach_a_running_daemon(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}], max_attempts=1)
    path = tmp_path / "config.toml"

    def run_cli(*args: str) -> Any:
        return asyncio.to_thread(ok, path, *args)

    async with running(config):
        await eventually(lambda: all_polled(config))
        assert "disabled" in await run_cli("subscriptions", "disable", "d")
        await asyncio.sleep(1.2)  # the daemon reads the switch within a second
        sandbox.add_deal(title="while disabled")
        await eventually(lambda: _pending(config))  # detected and queued, not sent
        await asyncio.sleep(1.5)
        assert receiver.attempts == []
        await run_cli("subscriptions", "enable", "d")
        await wait_for_events(receiver, 1)
        # A dead letter replayed while the daemon runs goes out again, same webhook-id.
        receiver.reply(500)
        sandbox.add_deal(title="dies once")
        await eventually(lambda: asyncio.to_thread(letters, path))
        assert await run_cli("dead-letters", "replay", "--all") == "replayed 1\n"
        await wait_for_events(receiver, 2, timeout_s=10)
    webhook_ids = [a.event_id for a in receiver.attempts]
    assert webhook_ids[1] == webhook_ids[2] and len(webhook_ids) == 3
    assert all(a.verified for a in receiver.attempts), "signed afresh on replay"
    assert invoke(path, "subscriptions", "enable", "nope").exit_code == 2


def test_status_json_shows_each_subscriptions_state(config_path: Path, database_url: str) -> None:
    asyncio.run(_seed(database_url, {"removed": [(1, timedelta(0))]}))
    ok(config_path, "subscriptions", "disable", "a")
    rows = {row["subscription"]: row for row in json.loads(unwell(config_path, "status", "--json"))}
    assert set(rows) == {"a", "b", "removed"}
    assert {"pending", "delivered", "dead_letters", "status", "position"} <= set(rows["a"])
    assert rows["a"]["state"] == "disabled"
    assert rows["a"]["state_reason"].startswith("disabled by an operator at ")
    assert datetime.fromisoformat(rows["a"]["state_since"]) <= datetime.now(UTC)
    assert (rows["b"]["state"], rows["b"]["state_reason"], rows["b"]["state_since"]) == (
        "ok", None, None,
    )  # fmt: skip
    assert (rows["removed"]["state"], rows["removed"]["dead_letters"]) == ("orphaned", 1)
    ok(config_path, "subscriptions", "enable", "a")
    rows = {row["subscription"]: row for row in json.loads(unwell(config_path, "status", "--json"))}
    assert rows["a"]["state"] == "ok"
