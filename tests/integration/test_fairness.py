"""Slow and hanging consumers never delay another subscription: with the default delivery
settings, four consumers that hang (100-event backlogs each) and one that answers in 1 s
(1,000 events) leave a healthy subscription's events waiting under a second (p99)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.config import DeliveryConfig
from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from tests.delivery_harness import delivering, queue, subscription, until
from tests.raw_servers import hanging_server

HEALTHY_EVENTS = 30
HEALTHY_EVERY_S = 0.1


async def test_hanging_and_slow_consumers_do_not_delay_a_healthy_one(
    engine: AsyncEngine,
) -> None:
    slow, healthy = WebhookReceiver(), WebhookReceiver()
    slow.reply(200, times=1000, delay_s=1.0)
    with contextlib.ExitStack() as stack:
        slow_url = stack.enter_context(serve(slow)).base_url
        healthy_url = stack.enter_context(serve(healthy)).base_url
        hanging = [stack.enter_context(hanging_server()) for _ in range(4)]
        subs = [subscription("slow", f"{slow_url}/s"), subscription("ok", f"{healthy_url}/h")]
        subs += [
            subscription(f"hang-{n}", f"http://127.0.0.1:{port}/h")
            for n, port in enumerate(hanging)
        ]
        await queue(engine, "slow", list(range(1000)))
        for n in range(4):
            await queue(engine, f"hang-{n}", list(range(100)))
        settings = DeliveryConfig()  # the defaults: 64 slots, 16 per subscription, 15 s
        async with delivering(engine, subs, settings, grace_s=0.1) as deliverer:
            await asyncio.sleep(1.5)  # every backlog has claimed what it may
            queued_at: dict[str, float] = {}
            for n in range(HEALTHY_EVENTS):
                (event_id,) = await queue(engine, "ok", [n])
                queued_at[event_id] = time.time()
                deliverer.wake()  # as the poller does after a commit
                await asyncio.sleep(HEALTHY_EVERY_S)
            await until(lambda: len(healthy.received) == HEALTHY_EVENTS, timeout_s=5)
            in_flight = dict(deliverer._slots.in_flight)
    delays = sorted(item.received_at - queued_at[item.event_id] for item in healthy.received)
    p99 = delays[int(len(delays) * 0.99) - 1] if len(delays) >= 100 else delays[-1]
    assert p99 <= 1.0, f"healthy events waited up to {p99:.2f}s: {delays}"
    # The hanging ones share the general slots (64 - 16 reserved); the slow one, whenever it
    # has nothing in flight, takes one reserved slot, as any subscription may.
    hanging_slots = sum(in_flight.get(f"hang-{n}", 0) for n in range(4))
    assert hanging_slots <= 48 and in_flight.get("slow", 0) >= 1, in_flight
    assert len(slow.received) >= 3, "the slow consumer keeps being served"


SLOW_BACKLOG = 50
SLOW_REPLY_S = 0.3


async def _drain_slow_backlog(
    engine: AsyncEngine, name: str, hanging_ports: list[int], settings: DeliveryConfig
) -> float:
    """Seconds a slow consumer takes to receive a backlog queued once the hanging consumers
    (if any) hold every slot they may."""
    slow = WebhookReceiver()
    slow.reply(200, times=SLOW_BACKLOG, delay_s=SLOW_REPLY_S)
    with serve(slow) as server:
        subs = [subscription(name, f"{server.base_url}/s")]
        subs += [
            subscription(f"{name}-hang-{n}", f"http://127.0.0.1:{port}/h")
            for n, port in enumerate(hanging_ports)
        ]
        for n in range(len(hanging_ports)):
            await queue(engine, f"{name}-hang-{n}", list(range(100)))
        async with delivering(engine, subs, settings, grace_s=0.1) as deliverer:
            if hanging_ports:
                await until(lambda: sum(deliverer._slots.in_flight.values()) >= 48)
            started = time.monotonic()
            await queue(engine, name, list(range(SLOW_BACKLOG)))
            deliverer.wake()
            await until(lambda: len(slow.received) == SLOW_BACKLOG, timeout_s=20)
            return time.monotonic() - started


async def test_a_slow_consumer_keeps_its_pace_beside_hanging_ones(engine: AsyncEngine) -> None:
    """A consumer that answers every POST in 0.3 s, beside 8 that never answer, takes its
    backlog at nearly the pace it has alone: it is answering, so the hanging ones (who may
    hold only the general slots) do not divide its share."""
    settings = DeliveryConfig()  # the defaults: 64 slots, 16 per subscription, 15 s
    alone = await _drain_slow_backlog(engine, "alone", [], settings)
    with contextlib.ExitStack() as stack:
        hanging = [stack.enter_context(hanging_server()) for _ in range(8)]
        beside = await _drain_slow_backlog(engine, "beside", hanging, settings)
    print(f"{SLOW_BACKLOG} events at {SLOW_REPLY_S}s: {alone:.2f}s alone, {beside:.2f}s beside")
    assert beside <= 2.5 * alone, f"{beside:.2f}s beside hanging consumers, {alone:.2f}s alone"
