"""Endpoint health against a real receiver, with a stepped wall clock for the schedules: pause after
`pause_after` failures, probe on a growing interval, resume on the first success, and no
event dead-lettered however long the consumer was down; rejected payloads; 410 Gone."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.clock import SystemClock
from daemon.config import DeliveryConfig
from daemon.db import health_store
from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.model import endpoint_health
from tests.delivery_harness import attempts, delivering, queue, rows, subscription, until


class SteppedWall(SystemClock):
    """Wall time moves only when the test says; intervals and sleeps stay real. Not
    `daemon.clock.FakeClock`: its sleeps move time by themselves whenever the loop settles, so
    the deliverer's idle polls would age the schedules between the test's steps (extra
    probes), while this test means to say exactly when an hour has passed."""

    def __init__(self) -> None:
        self.wall = datetime.now(UTC)

    def now(self) -> datetime:
        return self.wall

    def advance(self, **delta: float) -> None:
        self.wall += timedelta(**delta)


def actions(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == name]


async def test_pause_probe_and_resume_lose_nothing_after_a_long_outage(
    engine: AsyncEngine, consumer: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = SteppedWall()
    url = f"{consumer.base_url}/hooks/h"  # type: ignore[attr-defined]
    # The plain schedule would dead-letter every event within two hours.
    settings = DeliveryConfig(
        timeout=2, retry_schedule=(3600,), max_attempts=3, jitter=0, pause_after=3,
        probe_interval=60,
    )  # fmt: skip
    consumer.reply(503, times=1000)
    ids = await queue(engine, "h", [1, 2, 3, 4, 5], at=clock.now())
    async with delivering(engine, [subscription("h", url)], settings, clock=clock) as deliverer:
        await until(lambda: len(consumer.attempts) == 5)
        await until(lambda: _paused(engine))
        for hours in range(1, 8):  # a week would be the same: one probe per interval
            clock.advance(hours=1)
            deliverer.wake()
            await until(lambda n=hours: len(consumer.attempts) == 5 + n)
        stored = await rows(engine)
        assert all(r.state == "pending" and r.attempts <= 1 for r in stored.values())
        consumer.clear_replies()  # the consumer is back
        clock.advance(hours=1)
        deliverer.wake()
        await until(lambda: len(consumer.received) == 5)
        await until(lambda: _resumed(engine))
    stored = await rows(engine)
    assert {r.state for r in stored.values()} == {"delivered"}
    assert sorted(r.event_id for r in consumer.received) == sorted(ids)
    probes = [a.received_at for a in consumer.attempts[5:12]]
    assert len(probes) == 7, "exactly one probe per interval while paused"
    assert len(actions(caplog, "delivery.paused")) == 1
    assert len(actions(caplog, "delivery.resumed")) == 1
    recovered = actions(caplog, "delivery.recovered")
    assert recovered and "delivered on attempt 2" in recovered[0].getMessage()
    assert len(await attempts(engine)) == 5 + 7 + 5


async def _state(engine: AsyncEngine) -> str:
    return (await health_store.load(engine)).get("h", endpoint_health.HEALTHY).state


async def _resumed(engine: AsyncEngine) -> bool:
    return await _state(engine) == "ok"


async def _paused(engine: AsyncEngine) -> bool:
    return await _state(engine) == "paused"


async def test_a_rejected_payload_is_dead_lettered_after_three_attempts(
    engine: AsyncEngine, consumer: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = f"{consumer.base_url}/hooks/r"  # type: ignore[attr-defined]
    consumer.reply(422, times=20)
    (event_id,) = await queue(engine, "r", [1])
    settings = DeliveryConfig(timeout=2, retry_schedule=(0.05,), max_attempts=12, jitter=0)
    async with delivering(engine, [subscription("r", url)], settings):
        await until(lambda: _dead(engine, event_id))
    row = (await rows(engine))[event_id]
    assert (row.attempts, row.last_status) == (3, 422)
    assert len(consumer.attempts) == 3
    # The log counts against the limit that applies to a rejection (3), not max_attempts.
    failed = [r.getMessage() for r in actions(caplog, "delivery.failed")]
    assert len(failed) == 2
    assert "attempt 1 of 3" in failed[0] and "attempt 2 of 3" in failed[1], failed


async def _dead(engine: AsyncEngine, event_id: str) -> bool:
    return bool((await rows(engine))[event_id].state == "dead")


class ThirdTimeLucky:
    """A consumer that accepts an event only the third time it sees its webhook-id (it
    dedupes on a store that needs two tries to warm up, say): 503 before."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.order: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        event_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        self.seen[event_id] += 1
        self.order.append(event_id)
        status = 200 if self.seen[event_id] >= 3 else 503
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_probes_stay_on_one_event_until_it_gets_through(engine: AsyncEngine) -> None:
    """Rotating probes over 50 pending events would show each event to the consumer once per
    50 probes, and it would never see one a third time: the pause would never end."""
    consumer = ThirdTimeLucky()
    settings = DeliveryConfig(
        timeout=2, retry_schedule=(3600,), max_attempts=12, jitter=0, pause_after=2,
        per_subscription_concurrency=1, probe_interval=0.5,
    )  # fmt: skip
    await queue(engine, "h", list(range(50)))
    with serve(consumer) as server:
        sub = subscription("h", f"{server.base_url}/h")
        async with delivering(engine, [sub], settings):
            await until(lambda: _paused(engine))
            await until(lambda: _resumed(engine), timeout_s=20)
    # Two failures paused it; then one event is probed until the consumer takes it.
    probe = consumer.order[2]
    assert consumer.order[2:5] == [probe] * 3, consumer.order[:10]
    assert (await rows(engine))[probe].state == "delivered"
