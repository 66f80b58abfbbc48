"""`status` on real databases: the daemon's liveness from its heartbeat, what each
subscription waits on, a table a person reads, and an exit status that agrees."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config, logs
from daemon.db import instances, outbox, tables
from daemon.model import deliveries
from daemon.status import snapshot

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE_S = 10.0
ME = instances.Me("host-1", LEASE_S, NOW - timedelta(hours=1), host="host", pid=123)


def settings(tmp_path: Path, database_url: str) -> config.Config:
    raw = {
        "database": {"url": database_url},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {
                "name": "deals",
                "account": "main",
                "trigger": "deal.added",
                "callback_url": "http://x/h",
            }
        ],
    }
    return config.parse(raw, "c.toml", tmp_path)


async def queue(engine: AsyncEngine, event_id: str, **values: object) -> None:
    event = deliveries.NewEvent("deals", event_id, "deal.added", event_id[-1], "{}")
    async with engine.begin() as connection:
        await outbox.insert_events(connection, [event], NOW - timedelta(minutes=10))
        await connection.execute(
            update(tables.deliveries)
            .where(tables.deliveries.c.event_id == event_id)
            .values(**values)
        )


async def test_liveness_queue_and_exit_status(
    tmp_path: Path, database_url: str, engine: AsyncEngine
) -> None:
    cfg = settings(tmp_path, database_url)
    never = await snapshot.gather(cfg, engine, NOW)
    assert never.exit_code == 1 and "never started" in snapshot.render(never)

    await instances.beat(engine, ME, NOW - timedelta(seconds=5))
    running = await snapshot.gather(cfg, engine, NOW)
    assert running.daemon.running and running.exit_code == 0
    text = snapshot.render(running)
    assert "daemon: running" in text and "heartbeat 5s ago" in text
    for column in ("state", "last poll", "next poll", "lag", "pending", "retrying", "dead"):
        assert column in text

    # An event that failed once and waits on its backoff: retrying, with its next attempt.
    due = NOW + timedelta(minutes=30)
    await queue(
        engine, "msg_1", attempts=1, next_attempt_at=due, last_error="callback returned 503"
    )
    row = (await snapshot.gather(cfg, engine, NOW)).subscriptions[0]
    assert (row["pending"], row["retrying"], row["next_attempt_at"]) == (1, 1, due.isoformat())
    assert row["oldest_pending_age_seconds"] == 600.0
    assert row["last_delivery_error"] == "callback returned 503"
    assert {"next_poll_at", "lag_seconds", "daemon_running"} <= set(row)

    await queue(engine, "msg_2", state=tables.STATE_DEAD, dead_at=NOW, attempts=12)
    dead = await snapshot.gather(cfg, engine, NOW)
    assert dead.subscriptions[0]["dead_letters"] == 1 and dead.exit_code == 1

    await instances.mark_stopped(engine, ME, NOW)
    stopped = await snapshot.gather(cfg, engine, NOW)
    assert not stopped.daemon.running
    assert "not running (stopped at 2026-12-01 12:00:00Z" in snapshot.render(stopped)


async def test_a_killed_daemon_shows_its_last_heartbeat(
    tmp_path: Path, database_url: str, engine: AsyncEngine
) -> None:
    cfg = settings(tmp_path, database_url)
    last = NOW - timedelta(seconds=instances.GONE_AFTER_LEASES * LEASE_S + 1)
    await instances.beat(engine, ME, last)  # then SIGKILL: no more beats
    report = await snapshot.gather(cfg, engine, NOW)
    assert not report.daemon.running and report.exit_code == 1
    assert "not running (last heartbeat at 2026-12-01 11:59:39Z" in snapshot.render(report)


def test_json_log_lines_carry_the_figures_as_fields() -> None:
    record = logging.LogRecord(
        "daemon.delivery.deliverer", logging.WARNING, __file__, 1, "failed", (), None
    )
    for name, value in {
        "action": "delivery.failed",
        "subscription": "deals",
        "event_id": "msg_1",
        "attempt": 3,
        "status": 503,
        "next_attempt_at": "2026-12-01T12:30:00+00:00",
    }.items():
        setattr(record, name, value)
    line = json.loads(logs.JsonFormatter().format(record))
    assert (line["attempt"], line["status"], line["next_attempt_at"]) == (
        3, 503, "2026-12-01T12:30:00+00:00",
    )  # fmt: skip


def subscriptions_table(text: str) -> list[dict[str, str]]:
    """The subscriptions table's rows as {column: cell}."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┃ subscription"))
    end = next(i for i, line in enumerate(lines) if i > top and line.startswith("└"))
    header = [cell.strip() for cell in lines[top].split("┃")[1:-1]]
    return [
        dict(zip(header, (cell.strip() for cell in line.split("│")[1:-1]), strict=True))
        for line in lines[top + 2 : end]
    ]


LONG_NAME = "eu-enterprise-deals-won-by-the-field-sales-team-north"


async def test_the_table_fits_a_terminal_and_a_pipe_gets_it_whole(
    tmp_path: Path, database_url: str, engine: AsyncEngine
) -> None:
    """A terminal of any width shows each state and name whole, times compact; a pipe
    (width None) gets every column on one line per row, however long."""
    raw = {
        "database": {"url": database_url},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {"name": name, "account": "main", "trigger": trigger, "callback_url": "http://x/h"}
            for name, trigger in (("deals", "deal.added"), (LONG_NAME, "deal.stage_changed"))
        ],
    }
    cfg = config.parse(raw, "c.toml", tmp_path)
    await instances.beat(engine, ME, NOW - timedelta(seconds=5))
    await queue(
        engine, "msg_1", attempts=1, next_attempt_at=NOW + timedelta(minutes=30),
        last_error="callback returned 503",
    )  # fmt: skip
    report = await snapshot.gather(cfg, engine, NOW)
    assert [verdict.state.label for verdict in report.verdicts] == ["failing", "not started"]

    for width in (60, 80, 120, 200):
        text = snapshot.render(report, width)
        lines = text.splitlines()
        # Below the name and state's own width (71), the terminal wraps; nothing is cut.
        assert all(len(line) <= max(width, 71) for line in lines), (width, text)
        assert "…" not in text and "..." not in text, text
        shown = {row["subscription"]: row["state"] for row in subscriptions_table(text)}
        assert shown == {"deals": "failing", LONG_NAME: "not started"}, text

    wide = snapshot.render(report, 200)
    assert "12:30:00" in wide and "2026-12-01" not in wide.split("daemon:")[1].split("\n", 1)[1]
    assert "10m" in wide  # the oldest pending event's age
    yesterday = await snapshot.gather(cfg, engine, NOW - timedelta(hours=13))
    assert subscriptions_table(snapshot.render(yesterday, 200))[0]["next attempt"] == (
        "2026-12-01 12:30"  # not today: the date too
    )

    whole = snapshot.render(report, None)
    assert list(subscriptions_table(whole)[0]) == [
        "subscription", "trigger", "state", "last poll", "next poll", "lag", "pending",
        "retrying", "oldest", "next attempt", "dead",
    ]  # fmt: skip
    assert max(len(line) for line in whole.splitlines()) > 120  # no wrapping at any width
    assert "left out" not in whole and "…" not in whole
