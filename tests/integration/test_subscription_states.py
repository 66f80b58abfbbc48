"""One subscription state, read from a real database by every reader: `status` and its JSON,
the admin page's and `/metrics`' rows, and systemd's status line agree on each subscription."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config
from daemon.db import health_store, outbox, tables
from daemon.model import deliveries, endpoint_health
from daemon.model.subscription_state import State
from daemon.service import supervision
from daemon.status import dashboard, snapshot
from tests.notify_listener import NotifyListener

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLLED = NOW - timedelta(minutes=1)

# name: (feed status, or None before the first poll; the state; `status --json`'s status, state)
CASES: dict[str, tuple[str | None, State, str, str]] = {
    "fresh": (None, State.NOT_STARTED, "not started", "ok"),
    "good": ("ok", State.OK, "ok", "ok"),
    "broken": ("failing", State.FAILING, "failing", "failing"),
    "retrying": ("ok", State.FAILING, "ok", "failing"),  # a pending event failed an attempt
    "paused": ("ok", State.PAUSED, "ok", "paused"),
    "off": ("failing", State.DISABLED, "failing", "disabled"),
}


def settings(tmp_path: Path, database_url: str) -> config.Config:
    raw = {
        "database": {"url": database_url},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {"name": name, "account": "main", "trigger": "deal.added", "callback_url": "http://x"}
            for name in CASES
        ],
    }
    return config.parse(raw, "c.toml", tmp_path)


async def seed(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for name, (status, *_) in CASES.items():
            if status is None:
                continue
            await connection.execute(
                insert(tables.subscription_state).values(
                    subscription=name,
                    account="main",
                    trigger="deal.added",
                    start_at=NOW - timedelta(days=1),
                    position=POLLED,
                    started_at=NOW - timedelta(days=1),
                    status=status,
                    last_error="Pipedrive answered 500" if status == "failing" else None,
                    last_poll_at=POLLED,
                    updated_at=POLLED,
                )
            )
        events = [
            deliveries.NewEvent(name, f"msg_{name}", "deal.added", "1", "{}")
            for name in ("retrying", "gone")  # "gone" is in no config: orphaned
        ]
        await outbox.insert_events(connection, events, NOW)
        await connection.execute(
            update(tables.deliveries)
            .where(tables.deliveries.c.event_id == "msg_retrying")
            .values(attempts=1, last_error="callback returned 503")
        )
    await health_store.save(
        engine, "paused", endpoint_health.paused("10 failed attempts", NOW, 60), NOW
    )
    await health_store.save(engine, "off", endpoint_health.disabled("410 Gone", NOW), NOW)


async def test_every_reader_shows_the_same_state(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(engine)
    expected = {name: case[1] for name, case in CASES.items()} | {"gone": State.ORPHANED}

    rows = await dashboard.subscriptions(engine, list(CASES), count_delivered=True)
    assert {row.gauges.subscription: row.gauges.state for row in rows} == expected
    reasons = {row.gauges.subscription: row.state_reason for row in rows}
    assert (reasons["retrying"], reasons["off"], reasons["good"]) == (
        "callback returned 503", "410 Gone", None,
    )  # fmt: skip

    report = await snapshot.gather(settings(tmp_path, database_url), engine, NOW)
    pairs = zip(report.subscriptions, report.verdicts, strict=True)
    assert {row["subscription"]: verdict.state for row, verdict in pairs} == expected
    shown = {row["subscription"]: (row["status"], row["state"]) for row in report.subscriptions}
    assert shown == {name: (case[2], case[3]) for name, case in CASES.items()} | {
        "gone": ("orphaned", "orphaned")
    }
    assert "│ not started │" in snapshot.render(report, width=200)

    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    async with supervision.supervised(engine, list(CASES)) as supervisor:
        ready = notify_listener.wait_for("READY")
        supervisor.stopping()
    assert ready[0].fields["STATUS"] == (
        "6 subscriptions (1 ok, 2 failing, 1 paused, 1 disabled, 1 not started), 1 orphaned, "
        "2 pending, 0 dead"
    )
