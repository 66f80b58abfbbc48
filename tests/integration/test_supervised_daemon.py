"""What systemd hears from a running daemon, on a real socket and a real outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db import database, outbox
from daemon.model import deliveries
from daemon.service import supervision
from tests.notify_listener import NotifyListener

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def detect(engine: AsyncEngine, ids: list[int], broken: list[int]) -> None:
    events = [deliveries.NewEvent("s", f"msg_{i}", "deal.added", str(i), "{}") for i in ids]
    events += [
        deliveries.NewEvent("s", f"msg_{i}", "deal.added", str(i), "{}", error="unmappable")
        for i in broken
    ]
    async with engine.begin() as connection:
        await outbox.insert_events(connection, events, NOW)


async def test_ready_then_status_only_when_the_counts_change(
    engine: AsyncEngine, notify_listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    await detect(engine, [1], [])
    async with supervision.supervised(engine, ["s", "t", "u"], status_interval_s=0.1) as supervisor:
        ready = notify_listener.wait_for("READY")
        assert [n.fields for n in ready] == [
            {"READY": "1", "STATUS": "3 subscriptions (3 not started), 1 pending, 0 dead"}
        ]
        await asyncio.sleep(0.35)  # three reads of unchanged counts: nothing sent
        assert len(notify_listener.received) == 1
        await detect(engine, [2, 3], [4])
        await asyncio.to_thread(notify_listener.wait_for, "STATUS", count=2)  # however late
        await asyncio.sleep(0.35)  # and the reads after it send nothing more
        assert [n.fields for n in notify_listener.with_field("STATUS")[1:]] == [
            {"STATUS": "3 subscriptions (3 not started), 3 pending, 1 dead"}
        ]
        supervisor.stopping()
    notify_listener.wait_for("STOPPING")
    fields = [n.fields for n in notify_listener.received]
    assert fields[-1] == {"STOPPING": "1", "STATUS": "stopping: finishing in-flight deliveries"}
    assert "WATCHDOG" not in str(fields), "no WATCHDOG_USEC, no pings"


async def test_without_notify_socket_nothing_is_sent_and_nothing_fails(
    tmp_path: Path, notify_listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a watchdog asked for, but nowhere to ping
    url = f"sqlite:///{tmp_path / 'd.db'}"
    database.upgrade(url)
    engine = database.create_engine(url)
    try:
        async with supervision.supervised(engine, ["s"], status_interval_s=0.05) as supervisor:
            await asyncio.sleep(0.2)
            supervisor.stopping()
    finally:
        await engine.dispose()
    assert notify_listener.received == []
