"""A subscription whose `callback_url` changes has a new endpoint: a pause (or a 410 Gone) said
by the old one does not hold it back, whether the change comes by a reload or a restart, and
`status` agrees with the delivery loop. An operator's disable stays: that is the operator's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config
from daemon.config import DeliveryConfig
from daemon.db import health_store
from daemon.delivery import deliverer as deliverer_module
from daemon.dev.receiver import WebhookReceiver
from daemon.model import endpoint_health
from daemon.status import dashboard, snapshot
from tests.delivery_harness import delivering, queue, rows, subscription, until

# A pause would hold the subscription for the probe interval (50 s), far beyond the waits here;
# an event's own retries are quick, so only a pause can hold it.
SETTINGS = DeliveryConfig(
    timeout=2, retry_schedule=(0.2,), max_attempts=12, jitter=0, pause_after=2,
    probe_interval=50,
)  # fmt: skip
DELIVERED_WITHIN_S = 5.0


def _urls(consumer: WebhookReceiver, receiver: WebhookReceiver) -> tuple[str, str]:
    old = f"{consumer.base_url}/hooks/old"  # type: ignore[attr-defined]
    new = f"{receiver.base_url}/hooks/new"  # type: ignore[attr-defined]
    return old, new


def _config(tmp_path: Path, database_url: str, callback_url: str) -> config.Config:
    raw = {
        "database": {"url": database_url},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {"name": "h", "account": "main", "trigger": "deal.added", "callback_url": callback_url}
        ],
    }
    return config.parse(raw, "c.toml", tmp_path)


async def _state(engine: AsyncEngine) -> str:
    return (await health_store.load(engine)).get("h", endpoint_health.HEALTHY).state


async def _status(engine: AsyncEngine, cfg: config.Config) -> tuple[str, str]:
    """What `status --json` and the admin page (and systemd's line) say of "h"; the page says
    `not_started` where `status --json` says `ok`: nothing polls here."""
    report = await snapshot.gather(cfg, engine, datetime.now(UTC))
    (row,) = [r for r in report.subscriptions if r["subscription"] == "h"]
    endpoints = {s.name: s.endpoint for s in cfg.subscriptions}
    (gauge,) = await dashboard.subscriptions(engine, ["h"], endpoints=endpoints)
    page = gauge.gauges.state.value
    return row["state"], "ok" if page == "not_started" else page


async def _is(engine: AsyncEngine, state: str) -> bool:
    return await _state(engine) == state


async def _delivered(engine: AsyncEngine, ids: list[str]) -> bool:
    stored = await rows(engine)
    return all(stored[i].state == "delivered" for i in ids)


async def test_a_reload_to_a_new_callback_url_ends_the_old_endpoints_pause(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    consumer: WebhookReceiver,
    receiver: WebhookReceiver,
) -> None:
    old, new = _urls(consumer, receiver)
    consumer.reply(503, times=1000)
    ids = await queue(engine, "h", [1, 2, 3])
    async with delivering(engine, [subscription("h", old)], SETTINGS) as deliverer:
        await until(lambda: _is(engine, "paused"))
        assert await _status(engine, _config(tmp_path, database_url, old)) == ("paused",) * 2
        deliverer.reconfigure({"h": subscription("h", new)}, SETTINGS)  # as SIGHUP does
        deliverer.wake()
        await until(lambda: _delivered(engine, ids), timeout_s=DELIVERED_WITHIN_S)
    assert sorted(receiver.event_ids()) == sorted(ids)
    assert await _state(engine) == "ok"
    assert await _status(engine, _config(tmp_path, database_url, new)) == ("ok", "ok")


async def test_a_restart_with_a_new_callback_url_delivers_at_once(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    consumer: WebhookReceiver,
    receiver: WebhookReceiver,
) -> None:
    old, new = _urls(consumer, receiver)
    consumer.reply(503, times=1000)
    ids = await queue(engine, "h", [1, 2, 3])
    async with delivering(engine, [subscription("h", old)], SETTINGS):
        await until(lambda: _is(engine, "paused"))
    # Stopped, config edited: `status` already judges the new endpoint, not paused (its events
    # failed at the old one: failing, until delivered); the old endpoint's pause stays.
    assert await _status(engine, _config(tmp_path, database_url, new)) == ("failing",) * 2
    assert await _status(engine, _config(tmp_path, database_url, old)) == ("paused",) * 2
    async with delivering(engine, [subscription("h", new)], SETTINGS):
        await until(lambda: _delivered(engine, ids), timeout_s=DELIVERED_WITHIN_S)
    assert sorted(receiver.event_ids()) == sorted(ids)
    assert await _status(engine, _config(tmp_path, database_url, new)) == ("ok", "ok")


async def test_a_410_from_the_old_endpoint_does_not_disable_the_new_one(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    consumer: WebhookReceiver,
    receiver: WebhookReceiver,
) -> None:
    old, new = _urls(consumer, receiver)
    consumer.reply(410, times=1000)
    ids = await queue(engine, "h", [1, 2])
    async with delivering(engine, [subscription("h", old)], SETTINGS) as deliverer:
        await until(lambda: _is(engine, "disabled"))
        deliverer.reconfigure({"h": subscription("h", new)}, SETTINGS)
        deliverer.wake()
        await until(lambda: _delivered(engine, ids), timeout_s=DELIVERED_WITHIN_S)
    assert await _status(engine, _config(tmp_path, database_url, new)) == ("ok", "ok")


async def test_an_operators_disable_survives_a_new_callback_url(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    consumer: WebhookReceiver,
    receiver: WebhookReceiver,
) -> None:
    old, new = _urls(consumer, receiver)
    consumer.reply(503, times=1000)
    ids = await queue(engine, "h", [1, 2])
    async with delivering(engine, [subscription("h", old)], SETTINGS) as deliverer:
        await until(lambda: _is(engine, "paused"))
        now = datetime.now(UTC)
        await health_store.set_disabled(engine, "h", "disabled by an operator", now)
        await asyncio.sleep(2 * deliverer_module.HEALTH_REFRESH_S)  # the loop reads it
        deliverer.reconfigure({"h": subscription("h", new)}, SETTINGS)
        deliverer.wake()
        await asyncio.sleep(2 * deliverer_module.HEALTH_REFRESH_S)  # several claims
        assert receiver.event_ids() == set()
    assert await _state(engine) == "disabled"
    assert await _status(engine, _config(tmp_path, database_url, new)) == ("disabled",) * 2
    await health_store.set_disabled(engine, "h", None, datetime.now(UTC))  # enable
    async with delivering(engine, [subscription("h", new)], SETTINGS):
        await until(lambda: _delivered(engine, ids), timeout_s=DELIVERED_WITHIN_S)
