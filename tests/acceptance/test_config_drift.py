"""Config changes that lose nothing: orphans shown and warned of, rename, start and trigger."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.db import database, feed_store, outbox
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.model import deliveries
from tests.acceptance.test_cli import cli, start_daemon
from tests.conftest import config_text

EARLIER = datetime(2020, 1, 1, tzinfo=UTC)


async def _history(url: str) -> None:
    """What a daemon with subscriptions 'old', 'keep' and 'moved-start' left behind."""
    engine = database.create_engine(url)
    try:
        await feed_store.open_feed(
            engine,
            account="main",
            object_type="deal",
            subscriptions=[
                feed_store.SubscriptionStart("old", "deal.added", None),
                feed_store.SubscriptionStart("keep", "deal.added", None),
                feed_store.SubscriptionStart("moved-start", "deal.added", EARLIER),
            ],
            now=datetime.now(UTC),
        )
        queued = [
            deliveries.NewEvent("old", f"msg_{n}", "deal.added", str(n), "{}") for n in (1, 2)
        ]
        queued.append(deliveries.NewEvent("old", "msg_3", "deal.added", "3", "{}", error="broken"))
        async with engine.begin() as connection:
            await outbox.insert_events(connection, queued, datetime.now(UTC))
    finally:
        await engine.dispose()


def _status(config: Path) -> dict[str, dict[str, object]]:
    result = cli("--config", str(config), "status", "--json")
    assert result.returncode == 1, result.stderr  # stopped daemon, orphans: both need a look
    return {row["subscription"]: row for row in json.loads(result.stdout)}


def test_orphans_rename_and_changed_start_or_trigger(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    database.upgrade(url)
    asyncio.run(_history(url))
    config = tmp_path / "config.toml"

    def write(subscriptions: list[dict[str, str]]) -> None:
        text = config_text(
            database_url=url,
            api_url=sandbox.base_url,
            callback_url=receiver.base_url,  # type: ignore[attr-defined]
            subscriptions=subscriptions,
        )
        config.write_text(text, encoding="utf-8")

    write(
        [
            {"name": "new", "trigger": "deal.added"},
            {"name": "keep", "trigger": "deal.updated"},
            {"name": "moved-start", "trigger": "deal.added", "start": "2021-06-01T00:00:00Z"},
        ]
    )
    orphan = _status(config)["old"]
    assert (orphan["status"], orphan["pending"], orphan["dead_letters"]) == ("orphaned", 2, 1)

    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        deadline = time.monotonic() + 20
        while sandbox.calls_to("GET", "/api/v2/deals") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # several poll cycles, so a warning per cycle would show
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    lines = text.splitlines()
    orphaned = [line for line in lines if "is no longer in the config" in line]
    assert len(orphaned) == 1 and "'old'" in orphaned[0], text
    assert "2 pending events and 1 dead letters" in orphaned[0]
    changed = [line for line in lines if "'keep': changed from deal.added" in line]
    assert len(changed) == 1 and "fires only what happens from now on" in changed[0], text
    started = [line for line in lines if "'moved-start': start changed to 2021-06-01" in line]
    assert len(started) == 1 and "started at 2020-01-01" in started[0], text

    taken = cli("--config", str(config), "subscriptions", "rename", "old", "new")
    assert taken.returncode == 2 and "'new' already has a feed position" in taken.stderr
    write([{"name": "renamed", "trigger": "deal.added"}])
    moved = cli("--config", str(config), "subscriptions", "rename", "old", "renamed")
    assert moved.returncode == 0, moved.stderr
    assert "2 pending, 0 delivered and 1 dead events carried over" in moved.stdout
    rows = _status(config)
    assert "old" not in rows, "nothing is orphaned any more"
    assert (rows["renamed"]["pending"], rows["renamed"]["dead_letters"]) == (2, 1)
    assert rows["renamed"]["status"] == "ok", "its feed state came along"
