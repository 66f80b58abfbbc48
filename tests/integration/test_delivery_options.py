"""Per-subscription delivery options against real receivers: secret rotation, strict order,
a rate cap; on real SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from daemon.config import DeliveryConfig
from daemon.db import outbox
from daemon.dev.receiver import WebhookReceiver
from daemon.model import deliveries
from tests.delivery_harness import TRIGGER, delivering, queue, rows, subscription, until

OLD_SECRET = "whsec_" + base64.b64encode(b"the-old-secret-of-32-bytes-long!").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"the-new-secret-of-32-bytes-long!").decode()
FAST = DeliveryConfig(timeout=2, retry_schedule=(0.05,), max_attempts=5, jitter=0)


async def test_rotation_signs_with_every_secret(
    engine: AsyncEngine, consumer: WebhookReceiver
) -> None:
    url = f"{consumer.base_url}/hooks/r"  # type: ignore[attr-defined]
    secrets = (SecretStr(NEW_SECRET), SecretStr(OLD_SECRET))
    await queue(engine, "r", [1])
    async with delivering(engine, [subscription("r", url, secret=secrets)], FAST):
        await until(lambda: consumer.received)
    (item,) = consumer.received
    assert len(item.headers["webhook-signature"].split(" ")) == 2
    for secret in (OLD_SECRET, NEW_SECRET):  # a consumer holding either one verifies
        assert Webhook(secret).verify(item.body, item.headers) == {"id": 1}
    stranger = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(Exception, match="signature"):
        Webhook(stranger).verify(item.body, item.headers)


async def test_ordered_waits_for_the_previous_event_under_failures(
    engine: AsyncEngine, consumer: WebhookReceiver
) -> None:
    url = f"{consumer.base_url}/hooks/o"  # type: ignore[attr-defined]
    ids = await queue(engine, "o", [1, 2, 3, 4])
    consumer.reply(500, times=2)  # the first event fails twice, then everything succeeds
    async with delivering(engine, [subscription("o", url, ordered=True)], FAST):
        await until(lambda: len(consumer.received) == 4)
    assert [a.event_id for a in consumer.attempts] == [ids[0], ids[0], *ids]
    assert [r.event_id for r in consumer.received] == ids


async def test_max_per_second_is_a_sliding_window(
    engine: AsyncEngine, consumer: WebhookReceiver
) -> None:
    url = f"{consumer.base_url}/hooks/m"  # type: ignore[attr-defined]
    await queue(engine, "m", list(range(12)))
    async with delivering(engine, [subscription("m", url, max_per_second=5)], FAST):
        await until(lambda: len(consumer.received) == 12)
    times = sorted(a.received_at for a in consumer.attempts)
    busiest = max(sum(1 for t in times if start <= t < start + 0.95) for start in times)
    assert busiest <= 5, f"{busiest} POSTs within one second"
    assert times[-1] - times[0] >= 1.9  # 12 at 5/s: the third batch starts after 2 s


async def test_a_body_above_the_cap_is_dead_lettered_unsent(
    engine: AsyncEngine, consumer: WebhookReceiver
) -> None:
    url = f"{consumer.base_url}/hooks/big"  # type: ignore[attr-defined]
    async with engine.begin() as connection:
        await outbox.insert_events(
            connection,
            [deliveries.NewEvent("big", "msg_big", TRIGGER, "1", '{"pad":"' + "x" * 5000 + '"}')],
            datetime.now(UTC),
        )
    await queue(engine, "big", [2])
    settings = FAST.model_copy(update={"max_body_bytes": 4096})
    async with delivering(engine, [subscription("big", url)], settings):
        await until(lambda: consumer.received)
        await until(lambda: _state(engine, "msg_big"))
    assert [r.json() for r in consumer.received] == [{"id": 2}]
    row = (await rows(engine))["msg_big"]
    assert (row.state, row.last_error) == (
        "dead",
        "body is 5010 bytes, above [delivery] max_body_bytes (4096); not sent",
    )


async def _state(engine: AsyncEngine, event_id: str) -> bool:
    return bool((await rows(engine))[event_id].state == "dead")
