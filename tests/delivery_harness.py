"""A `Deliverer` over a real database and real receivers, without the poller: events go into
the outbox as the poller would put them, and tests watch what consumers really received."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.db import outbox, tables
from daemon.delivery.callbacks import Callbacks
from daemon.delivery.deliverer import Deliverer
from daemon.model import deliveries
from daemon.payloads import envelope
from tests.conftest import SIGNING_SECRET
from tests.waiting import HANG_S

TRIGGER = "deal.added"
ORIGIN = envelope.Origin(company_id=1, installation="delivery-harness")


def subscription(name: str, url: str, **fields: Any) -> SubscriptionConfig:
    values: dict[str, Any] = {
        "name": name,
        "account": "main",
        "trigger": TRIGGER,
        "callback_url": url,
        "secret": SecretStr(SIGNING_SECRET),
        "allow_private_targets": True,
        **fields,
    }
    return SubscriptionConfig(**values)


async def queue(
    engine: AsyncEngine, name: str, items: Sequence[int], at: datetime | None = None
) -> list[str]:
    """Queue one event per item for subscription `name`; returns their webhook-ids in order."""
    moment = at or datetime.now(UTC)
    queued = [
        deliveries.NewEvent(
            name, ORIGIN.addition(name, TRIGGER, i), TRIGGER, str(i), f'{{"id":{i}}}'
        )
        for i in items
    ]
    async with engine.begin() as connection:
        await outbox.insert_events(connection, queued, moment)
    return [event.event_id for event in queued]


async def rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        result = await connection.execute(select(tables.deliveries))
        return {row.event_id: row for row in result}


async def attempts(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        query = select(tables.delivery_attempts).order_by(tables.delivery_attempts.c.id)
        return list((await connection.execute(query)).all())


@contextlib.asynccontextmanager
async def delivering(
    engine: AsyncEngine,
    subs: Sequence[SubscriptionConfig],
    settings: DeliveryConfig,
    *,
    clock: clock_module.Clock = clock_module.SYSTEM,
    grace_s: float | None = None,
) -> AsyncIterator[Deliverer]:
    stop = asyncio.Event()
    async with Callbacks(settings.timeout) as http:
        deliverer = Deliverer(engine, http, {s.name: s for s in subs}, settings, clock=clock)
        task = asyncio.create_task(deliverer.run(stop, grace_s))
        try:
            yield deliverer
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)


async def until(check: Callable[[], Any], timeout_s: float = HANG_S) -> Any:
    """Wait for `check()` (sync or async) to be truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout_s}s")
        await asyncio.sleep(0.02)
