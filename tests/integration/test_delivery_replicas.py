"""Two delivery loops on one database, as two replicas would run them (each its own engine),
against one real receiver on loopback that records what arrives at once: the
per-subscription caps, `max_per_second`, the pause and its one probe hold for both together,
and an event one of them queues is picked up by the other within a second."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.db import database, delivery_limits, health_store, outbox, rename, tables
from daemon.dev.local_server import serve
from daemon.model import endpoint_health
from tests.conftest import _empty_tables
from tests.delivery_harness import delivering, queue, rows, subscription, until

FAST = DeliveryConfig(timeout=2, retry_schedule=(0.05,), max_attempts=50, jitter=0)


class Recorder:
    """Answers every POST after `delay_s` with `status`, and records how many were in flight
    at once (at most), when each arrived and in which order."""

    def __init__(self, delay_s: float = 0.05, status: int = 200) -> None:
        self.delay_s, self.status = delay_s, status
        self.in_flight = self.most_in_flight = 0
        self.arrivals: list[tuple[float, str]] = []
        self.delivered: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        event_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrivals.append((time.monotonic(), event_id))
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        status = self.status
        if 200 <= status < 300:
            self.delivered.append(event_id)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def two_replicas(
    database_url: str, subs: Sequence[SubscriptionConfig], settings: DeliveryConfig
) -> AsyncIterator[AsyncEngine]:
    """Two delivery loops, each on its own engine; yields the first engine."""
    engines = [database.create_engine(database_url) for _ in range(2)]
    try:
        async with (
            delivering(engines[0], subs, settings),
            delivering(engines[1], subs, settings),
        ):
            yield engines[0]
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.fixture
def postgresql_url(postgres_url: str) -> str:
    """Only PostgreSQL is ever shared by two processes (a second `run` on SQLite is refused,
    and its one process serializes claims with `write_lock`, per engine): two engines in one
    test on one SQLite file would test a setup that cannot occur."""
    _empty_tables(postgres_url)
    return postgres_url


async def test_per_subscription_concurrency_holds_across_replicas(postgresql_url: str) -> None:
    database_url = postgresql_url
    recorder = Recorder(delay_s=0.05)
    settings = FAST.model_copy(update={"per_subscription_concurrency": 2})
    with serve(recorder) as server:
        sub = subscription("c", f"{server.base_url}/c")
        engine = database.create_engine(database_url)
        ids = await queue(engine, "c", list(range(30)))
        await engine.dispose()
        async with two_replicas(database_url, [sub], settings):
            await until(lambda: len(recorder.delivered) >= 30, timeout_s=30)
    assert sorted(recorder.delivered) == sorted(ids)
    assert recorder.most_in_flight == 2  # both replicas together, and the cap was reached


async def test_ordered_is_strict_across_replicas(database_url: str) -> None:
    recorder = Recorder(delay_s=0.01)
    with serve(recorder) as server:
        sub = subscription("o", f"{server.base_url}/o", ordered=True)
        engine = database.create_engine(database_url)
        ids = await queue(engine, "o", list(range(15)))
        await engine.dispose()
        async with two_replicas(database_url, [sub], FAST):
            await until(lambda: len(recorder.delivered) >= 15, timeout_s=30)
    assert recorder.delivered == ids
    assert recorder.most_in_flight == 1


async def test_max_per_second_holds_across_replicas(database_url: str) -> None:
    recorder = Recorder(delay_s=0.0)
    with serve(recorder) as server:
        sub = subscription("m", f"{server.base_url}/m", max_per_second=5)
        engine = database.create_engine(database_url)
        await queue(engine, "m", list(range(16)))
        await engine.dispose()
        async with two_replicas(database_url, [sub], FAST):
            await until(lambda: len(recorder.delivered) >= 16, timeout_s=30)
    times = sorted(at for at, _ in recorder.arrivals)
    # 0.95 s: the receiver's clock reads arrivals a little after each start.
    busiest = max(sum(1 for t in times if start <= t < start + 0.95) for start in times)
    assert busiest <= 5, f"{busiest} POSTs within one second"
    assert times[-1] - times[0] >= 2.5  # 16 at most 5 a second: four bursts, 3 s apart


async def test_pause_after_counts_both_replicas_and_one_probe_runs(database_url: str) -> None:
    recorder = Recorder(delay_s=0.02, status=503)
    settings = FAST.model_copy(
        update={
            "pause_after": 3,
            "per_subscription_concurrency": 1,
            "probe_interval": 0.3,
            "retry_schedule": (3600,),
        }
    )
    with serve(recorder) as server:
        sub = subscription("p", f"{server.base_url}/p")
        engine = database.create_engine(database_url)
        await queue(engine, "p", list(range(20)))
        try:
            async with two_replicas(database_url, [sub], settings):
                await until(lambda: _paused(engine), timeout_s=20)
                await until(lambda: len(recorder.arrivals) >= 6, timeout_s=20)
            health = (await health_store.load(engine))["p"]
        finally:
            await engine.dispose()
    assert health.pause_reason is not None
    assert health.pause_reason.startswith("3 consecutive failures"), health.pause_reason
    # Three failures paused it; every later POST is the one probe, never two at once.
    probed = [event_id for _, event_id in recorder.arrivals[3:]]
    assert len(set(probed)) == 1, probed
    assert recorder.most_in_flight == 1
    probes = [at for at, _ in recorder.arrivals[3:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    assert min(gaps) >= 0.25, gaps  # one probe per probe_interval, whichever replica sends it


async def _probe_claim(engine: AsyncEngine) -> list[str]:
    """One claim as a delivery loop makes it, for the paused subscription "p"."""
    now = datetime.now(UTC)
    request = delivery_limits.Request("h", {"p": delivery_limits.Wanted(cap=1, slots=1)}, {}, 10)
    claim = await outbox.claim_within_limits(
        engine,
        now=now,
        lease_until=now + timedelta(seconds=10),
        capacity={"p": 1},
        limit=4,
        limits=request,
    )
    assert all(row.probe for row in claim.rows)
    return [row.event_id for row in claim.rows]


async def _pause_with_probe_due(engine: AsyncEngine) -> None:
    at = datetime.now(UTC) - timedelta(seconds=10)
    paused = endpoint_health.paused("3 consecutive failures; last: 503", at, 1)
    await health_store.save(engine, "p", paused, at)


async def test_the_probe_waits_for_its_event_while_another_holds_it(database_url: str) -> None:
    """A release not yet committed (rows claimed ahead before the pause) keeps the oldest due
    event claimed for a moment: the probe waits for it rather than take the next one."""
    engine = database.create_engine(database_url)
    try:
        oldest, *_ = await queue(engine, "p", [1, 2, 3])
        await _pause_with_probe_due(engine)
        async with engine.begin() as connection:
            await connection.execute(
                update(tables.deliveries)
                .where(tables.deliveries.c.event_id == oldest)
                .values(claimed_until=datetime.now(UTC) + timedelta(seconds=30))
            )
        assert await _probe_claim(engine) == []
        await outbox.release(engine, [(await rows(engine))[oldest].id])
        assert await _probe_claim(engine) == [oldest]
    finally:
        await engine.dispose()


async def test_the_probe_waits_for_its_event_while_a_claim_has_it_locked(
    postgresql_url: str,
) -> None:
    """Another replica's claim locks the rows it reads (even when the limits leave it nothing
    to take): SKIP LOCKED must not make the probe the next event."""
    engine, other = database.create_engine(postgresql_url), database.create_engine(postgresql_url)
    try:
        oldest, *_ = await queue(engine, "p", [1, 2, 3])
        await _pause_with_probe_due(engine)
        async with other.begin() as connection:
            await connection.execute(
                select(tables.deliveries.c.id)
                .where(tables.deliveries.c.event_id == oldest)
                .with_for_update()
            )
            assert await _probe_claim(engine) == []
        assert await _probe_claim(engine) == [oldest]
    finally:
        await engine.dispose()
        await other.dispose()


async def test_rename_starts_the_failure_count_afresh(database_url: str) -> None:
    engine = database.create_engine(database_url)
    try:
        await queue(engine, "old", [1])
        now = datetime.now(UTC)
        paused = endpoint_health.paused("3 consecutive failures; last: 503", now, 60)
        stored = dataclasses.replace(paused, failures=7, probe_until=now + timedelta(seconds=9))
        await health_store.save(engine, "old", stored, now)
        async with engine.begin() as connection:
            await connection.execute(update(tables.subscription_health).values(starts="1.000:1"))
        await rename.rename(engine, "old", "new")
        health = (await health_store.load(engine))["new"]
        assert health.state == "ok"
        assert (health.failures, health.probe_until) == (0, None)
        async with engine.connect() as connection:
            starts = await connection.scalar(select(tables.subscription_health.c.starts))
        assert starts is None
    finally:
        await engine.dispose()


async def test_expired_slots_are_deleted(database_url: str) -> None:
    engine = database.create_engine(database_url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            for holder, until in (
                ("crashed", now - timedelta(seconds=1)),
                ("live", now + timedelta(seconds=30)),
            ):
                await delivery_limits.hold(connection, holder, "s", delivery_limits.Held(1, until))
        assert await delivery_limits.delete_expired(engine, now) == 1
        async with engine.connect() as connection:
            holders = (await connection.execute(select(tables.delivery_slots.c.holder))).scalars()
            assert list(holders) == ["live"]
    finally:
        await engine.dispose()


async def _paused(engine: AsyncEngine) -> bool:
    health = (await health_store.load(engine)).get("p")
    return health is not None and health.state == "paused"


async def test_an_event_queued_by_one_replica_is_sent_by_the_other_within_a_second(
    database_url: str,
) -> None:
    recorder = Recorder(delay_s=0.0)
    with serve(recorder) as server:
        sub = subscription("w", f"{server.base_url}/w")
        queuing = database.create_engine(database_url)
        delivering_engine = database.create_engine(database_url)
        try:
            async with delivering(delivering_engine, [sub], FAST):
                await asyncio.sleep(0.6)  # the delivering loop is idle by now
                queued = time.monotonic()
                (event_id,) = await queue(queuing, "w", [1])  # no wake-up reaches it
                await until(lambda: recorder.delivered, timeout_s=5)
        finally:
            await queuing.dispose()
            await delivering_engine.dispose()
    arrived, got = recorder.arrivals[0]
    assert got == event_id
    # The idle loop looks every 0.5 s: within a second on a quiet machine; the suite's eight
    # workers on two cores get half a second more.
    assert arrived - queued < 1.5


async def _slots_claim(
    engine: AsyncEngine, holder: str, held: delivery_limits.Held | None, in_flight: int = 0
) -> tuple[int, delivery_limits.Held | None]:
    """One claim of holder's for subscription "s" (cap 16, wanting all of it): the rows it
    may take and the slots it holds after."""
    now = datetime.now(UTC)
    wanted = delivery_limits.Wanted(cap=16, slots=16, in_flight=in_flight)
    request = delivery_limits.Request(holder, {"s": wanted}, {"s": held} if held else {}, 10)
    claim = await outbox.claim_within_limits(
        engine,
        now=now,
        lease_until=now + timedelta(seconds=10),
        capacity={"s": 16},
        limit=16,
        limits=request,
    )
    given = claim.grants["s"]
    return len(claim.rows), given.held


async def test_a_second_replica_gets_its_share_while_the_first_has_a_backlog(
    postgresql_url: str,
) -> None:
    engine = database.create_engine(postgresql_url)
    try:
        await queue(engine, "s", list(range(100)))
        await health_store.ensure_rows(engine, ["s"], datetime.now(UTC))
        taken, first = await _slots_claim(engine, "first", None)
        assert (taken, first and first.slots) == (16, 16)
        taken, second = await _slots_claim(engine, "second", None)
        assert taken == 0 and second is not None and second.slots == 0  # waits, and says so
        # The first renews (about every second): an even share while the second waits; the
        # slots of its POSTs in flight stay held until they end.
        stale = dataclasses.replace(first, until=datetime.now(UTC))
        _, first = await _slots_claim(engine, "first", stale, in_flight=16)
        assert first is not None and (first.slots, first.share) == (16, 8)
        await _release(engine, "first", 8)  # its POSTs ended: down to its share
        taken, second = await _slots_claim(engine, "second", second)
        assert second is not None and second.slots == 8 and taken > 0  # starts 8 at most
        # Both hold some now: neither waits, each keeps its half.
        _, first = await _slots_claim(engine, "first", dataclasses.replace(first, slots=8))
        assert first is not None and (first.slots, first.share) == (8, 8)
    finally:
        await engine.dispose()


async def _release(engine: AsyncEngine, holder: str, keep: int) -> None:
    async with engine.begin() as connection:
        await delivery_limits.release_slots(connection, holder, {"s": keep})
