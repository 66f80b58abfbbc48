"""Every attempt records what really happened: the error told truthfully, the reply's start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.db import outbox, tables
from daemon.delivery.callbacks import Callbacks
from daemon.delivery.deliverer import Deliverer
from daemon.dev.receiver import WebhookReceiver
from daemon.model import deliveries
from daemon.payloads import envelope
from tests.conftest import SIGNING_SECRET
from tests.raw_servers import ReplyServer, closed_port, hanging_server

TOKEN = "tok-5ecret-in-the-url"
TRIGGER = "deal.added"
ORIGIN = envelope.Origin(company_id=1, installation="delivery-errors")


def subscription(name: str, url: str, *, allow: bool = True) -> SubscriptionConfig:
    return SubscriptionConfig(
        name=name,
        account="main",
        trigger=TRIGGER,
        callback_url=url,
        secret=SecretStr(SIGNING_SECRET),
        allow_private_targets=allow,
    )


async def deliver_once(engine: AsyncEngine, subs: list[SubscriptionConfig]) -> dict[str, Any]:
    """One event per subscription, one attempt each (max_attempts = 1): the attempts' rows."""
    now = datetime.now(UTC)
    for sub in subs:
        queued = deliveries.NewEvent(
            sub.name, ORIGIN.addition(sub.name, TRIGGER, 1), TRIGGER, "1", "{}"
        )
        async with engine.begin() as connection:
            await outbox.insert_events(connection, [queued], now)
    settings = DeliveryConfig(timeout=0.5, max_attempts=1)
    stop = asyncio.Event()
    async with Callbacks(settings.timeout) as http:
        deliverer = Deliverer(engine, http, {s.name: s for s in subs}, settings)
        task = asyncio.create_task(deliverer.run(stop))
        try:
            async with asyncio.timeout(10):
                while True:  # until every subscription has had its attempt
                    if len(await attempts(engine)) == len(subs):
                        break
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
    by_event = {ORIGIN.addition(s.name, TRIGGER, 1): s.name for s in subs}
    return {by_event[row.event_id]: row for row in await attempts(engine)}


async def attempts(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(select(tables.delivery_attempts))).all())


async def test_each_failure_is_recorded_as_what_it_was(
    engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    receiver_port = receiver.base_url.rsplit(":", 1)[1]
    with (
        closed_port() as closed,
        hanging_server() as hanging,
        ReplyServer(status=503, body_size=5000, fill=b"over quota ") as busy,
    ):
        rows = await deliver_once(
            engine,
            [
                subscription("down", f"http://127.0.0.1:{closed}/h?token={TOKEN}"),
                subscription("nowhere", f"https://{TOKEN}@consumer.invalid/h"),
                subscription("tls", f"https://127.0.0.1:{receiver_port}/h?token={TOKEN}"),
                subscription("hangs", f"http://127.0.0.1:{hanging}/h?token={TOKEN}"),
                subscription("busy", f"http://127.0.0.1:{busy.port}/h?token={TOKEN}"),
                subscription("guarded", f"{receiver.base_url}/h?token={TOKEN}", allow=False),
                subscription("fine", f"{receiver.base_url}/h?token={TOKEN}"),
            ],
        )
    errors = {name: row.error for name, row in rows.items()}
    assert errors == {
        "down": "callback refused the connection (nothing listening?)",
        "nowhere": "callback host does not resolve (Name or service not known)",
        "tls": errors["tls"],
        "hangs": "callback did not answer within 0.5s",
        "busy": "callback returned 503 Whatever",
        "guarded": "refused: callback address 127.0.0.1 is a loopback address; "
        "set allow_private_targets = true to allow it",
        "fine": None,
    }
    assert errors["tls"].startswith("TLS failure: handshake with callback failed")
    assert all(TOKEN not in (error or "") for error in errors.values())
    assert rows["down"].duration_ms < 400, "a refusal is not a timeout"
    assert rows["busy"].reply == ("over quota " * 100)[:1024]
    assert (rows["busy"].status, rows["fine"].status, rows["fine"].reply) == (503, 200, "")
    assert rows["down"].reply is None and rows["guarded"].reply is None
    assert [a.headers["webhook-id"] for a in receiver.attempts] == [
        ORIGIN.addition("fine", TRIGGER, 1)
    ], "the guarded subscription's POST never left"
    async with engine.connect() as connection:
        dead = dict(
            (
                await connection.execute(
                    select(tables.deliveries.c.subscription, tables.deliveries.c.last_error).where(
                        tables.deliveries.c.state == tables.STATE_DEAD
                    )
                )
            ).all()
        )
    assert dead["guarded"] == errors["guarded"], "a refused target is dead-lettered, not dropped"
