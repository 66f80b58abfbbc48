"""The daemon end to end, in-process: sandbox Pipedrive -> poller -> outbox -> real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon.db import database, feed_store, health_store, outbox, tables
from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.model import endpoint_health
from daemon.payloads import envelope
from daemon.pipedrive.client import RetryOptions
from daemon.service import lifecycle
from tests.conftest import API_TOKEN, SIGNING_SECRET, config_text
from tests.schema_check import assert_matches_schema
from tests.waiting import HANG_S

# Pipedrive errors are retried within a cycle; fast here so a test waits seconds, not minutes.
FAST_RETRY = RetryOptions(attempts=3, backoff_s=0.05, max_backoff_s=0.2)

SCHEMA_OF = {
    "deal.added": "DealResponseV2",
    "deal.added.legacy": "DealResponse",
    "activity.added": "ActivityResponse",
}


MakeConfig = Callable[..., config_module.Config]


@pytest.fixture
def make_config(
    tmp_path: Path, database_url: str, sandbox: Sandbox, receiver: WebhookReceiver
) -> MakeConfig:
    """A config file for this test's database, sandbox and receiver, read by the real loader."""

    def make(subscriptions: list[dict[str, Any]], **delivery: Any) -> config_module.Config:
        path = tmp_path / "config.toml"
        text = config_text(
            database_url=database_url,
            api_url=sandbox.base_url,
            callback_url=receiver.base_url,
            subscriptions=subscriptions,
            delivery=delivery,
        )
        path.write_text(text, encoding="utf-8")
        return config_module.load(path)

    return make


@contextlib.asynccontextmanager
async def running(config: config_module.Config) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(lifecycle.run(config, stop, FAST_RETRY))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=HANG_S)


async def eventually(check: Callable[[], Any], timeout_s: float = HANG_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s}s: {check}")


async def wait_for_events(receiver: WebhookReceiver, count: int, timeout_s: float = HANG_S) -> None:
    assert await asyncio.to_thread(receiver.wait_for, count, timeout_s), (
        f"{len(receiver.event_ids())} of {count} events arrived"
    )


@contextlib.asynccontextmanager
async def opened(config: config_module.Config) -> AsyncIterator[AsyncEngine]:
    """The daemon's database, opened beside it to check what it recorded."""
    engine = database.create_engine(config.database.url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def states(config: config_module.Config) -> dict[str, feed_store.SubscriptionState]:
    async with opened(config) as engine:
        return await feed_store.load_states(engine)


async def all_polled(config: config_module.Config) -> bool:
    """Every subscription has had a successful first cycle."""
    known = await states(config)
    return all(
        name in known
        and known[name].last_poll_at is not None
        and known[name].status == feed_store.STATUS_OK
        for name in (s.name for s in config.subscriptions)
    )


async def count_rows(config: config_module.Config, table: Any) -> int:
    async with opened(config) as engine, engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


DEAD_LETTERS = select(tables.deliveries).where(tables.deliveries.c.state == tables.STATE_DEAD)


async def count_dead(config: config_module.Config) -> int:
    async with opened(config) as engine, engine.connect() as connection:
        query = select(func.count()).select_from(DEAD_LETTERS.subquery())
        return int(await connection.scalar(query) or 0)


async def count_attempts(config: config_module.Config, at_least: int) -> bool:
    return await count_rows(config, tables.delivery_attempts) >= at_least


async def cycles_done(config: config_module.Config, name: str, cycles: int) -> None:
    """Wait until subscription `name` has finished `cycles` more poll cycles."""
    seen = [(await states(config))[name].last_poll_at]

    async def another() -> bool:
        polled = (await states(config))[name].last_poll_at
        if polled != seen[-1]:
            seen.append(polled)
        return len(seen) > cycles

    await eventually(another)


def listing_calls(sandbox: Sandbox, path: str) -> int:
    """Polls list with `sort_by`; lookups by `ids` are not listings."""
    return sum(
        1
        for call in sandbox.calls
        if call.method == "GET" and call.path == path and "ids" not in call.query
    )


async def test_each_trigger_delivers_its_connector_schema(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    subs = [
        {"name": "deals-v2", "trigger": "deal.added"},
        {"name": "deals-legacy", "trigger": "deal.added.legacy"},
        {"name": "activities", "trigger": "activity.added"},
    ]
    config = make_config(subs)
    person = sandbox.add_person("Ada Lovelace")
    org = sandbox.add_organization("Analytical Engines Ltd")
    stage = sandbox.stages[1]
    async with running(config):
        await eventually(lambda: all_polled(config))
        deal = sandbox.add_deal(
            title="Engine order",
            value=1200.5,
            currency="EUR",
            person_id=person["id"],
            org_id=org["id"],
            stage_id=stage["id"],
        )
        activity = sandbox.add_activity(
            subject="Call Ada",
            type="call",
            deal_id=deal["id"],
            person_id=person["id"],
            due_date="2026-12-01",
            due_time="10:30",
            duration="00:45",
        )
        await wait_for_events(receiver, 3)

    by_type = {item.json()["type"]: item for item in receiver.received}
    assert set(by_type) == set(SCHEMA_OF)
    for trigger, item in by_type.items():
        body = item.json()
        assert set(body) == {"type", "timestamp", "subscription", "data"}
        assert item.verified is True, "signature must verify with the subscription's secret"
        assert_matches_schema(body["data"], SCHEMA_OF[trigger])
        expected_item = activity["id"] if trigger == "activity.added" else deal["id"]
        subscription = next(s["name"] for s in subs if s["trigger"] == trigger)
        assert body["subscription"] == subscription
        origin = envelope.Origin(sandbox.store.company_id, installation="")  # unused here
        assert item.event_id == origin.addition(subscription, trigger, expected_item)
        assert item.headers["content-type"] == "application/json"
        assert abs(int(item.headers["webhook-timestamp"]) - time.time()) < 60
    legacy = by_type["deal.added.legacy"].json()["data"]
    assert legacy["title"] == "Engine order"
    assert legacy["stage_name"] == stage["name"]
    assert legacy["person_id"] == {"name": "Ada Lovelace", "value": person["id"]}
    assert legacy["org_id"] == {"name": "Analytical Engines Ltd", "value": org["id"]}
    assert legacy["user_id"]["name"] == sandbox.me["name"]
    assert "stage_name" not in by_type["deal.added"].json()["data"]
    act = by_type["activity.added"].json()["data"]
    assert (act["deal_title"], act["person_name"], act["due_time"], act["duration"]) == (
        "Engine order",
        "Ada Lovelace",
        "10:30",
        "00:45",
    )


async def test_same_second_and_backdated_deals_are_all_delivered(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}])
    async with running(config):
        await eventually(lambda: all_polled(config))
        same_second = "2026-11-20T10:00:00Z"
        ids = [sandbox.add_deal(title=f"twin {n}", add_time=same_second)["id"] for n in range(7)]
        ids.append(sandbox.add_deal(title="backdated", add_time="2019-01-01T00:00:00Z")["id"])
        await wait_for_events(receiver, len(ids))
        await cycles_done(config, "d", 1)  # another cycle must not deliver them again
    delivered = sorted(item.json()["data"]["id"] for item in receiver.received)
    assert delivered == sorted(ids)


async def test_start_time_backfills_items_added_since(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    sandbox.add_deal(title="before", add_time="2026-01-01T00:00:00Z")
    wanted = [
        sandbox.add_deal(title="after 1", add_time="2026-03-01T00:00:00Z")["id"],
        sandbox.add_deal(title="after 2", add_time="2026-06-01T12:00:00Z")["id"],
    ]
    config = make_config([{"name": "d", "trigger": "deal.added", "start": "2026-02-01T00:00:00Z"}])
    async with running(config):
        await wait_for_events(receiver, 2)
        later = sandbox.add_deal(title="live")["id"]
        await wait_for_events(receiver, 3)
    assert sorted(item.json()["data"]["id"] for item in receiver.received) == [*wanted, later]


async def test_failed_deliveries_are_retried_until_accepted(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}], max_attempts=5)
    async with running(config):
        await eventually(lambda: all_polled(config))
        receiver.reply(500)
        receiver.reply(503, retry_after=1)
        sandbox.add_deal(title="persistent")
        await wait_for_events(receiver, 1)
    attempts = receiver.attempts
    assert len(attempts) == 3
    assert len({a.event_id for a in attempts}) == 1, "webhook-id is stable across retries"
    assert attempts[2].received_at - attempts[1].received_at >= 0.95, "Retry-After honoured"
    assert all(a.verified for a in attempts), "every retry is signed afresh"
    assert await count_rows(config, tables.delivery_attempts) == 3


async def test_dead_letter_after_max_attempts_and_others_unaffected(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config(
        [
            {"name": "gone", "trigger": "deal.added", "callback_url": "http://127.0.0.1:9/refused"},
            {"name": "fine", "trigger": "deal.added"},
        ],
        max_attempts=3,
    )
    async with running(config):
        await eventually(lambda: all_polled(config))
        sandbox.add_deal(title="doomed for one")
        await wait_for_events(receiver, 1)
        await eventually(lambda: count_dead(config))
    assert await count_dead(config) == 1
    async with opened(config) as engine:
        counts = await outbox.counts(engine)
    assert counts["gone"] == outbox.SubscriptionCounts(pending=0, delivered=0, dead=1)
    assert counts["fine"] == outbox.SubscriptionCounts(pending=0, delivered=1, dead=0)


async def test_a_timeout_is_retried_then_dead_lettered_and_410_disables(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}], max_attempts=2, timeout=0.5)
    async with running(config):
        await eventually(lambda: all_polled(config))
        receiver.reply(200, delay_s=2, times=2)  # answers after the daemon gave up: timeouts
        sandbox.add_deal(title="too slow")
        await eventually(lambda: count_dead(config))
        receiver.reply(410)
        sandbox.add_deal(title="unwanted")

        async def disabled() -> bool:
            async with opened(config) as engine:
                return (await health_store.load(engine)).get(
                    "d", endpoint_health.HEALTHY
                ).state == "disabled"

        await eventually(disabled)

        async def pending() -> bool:  # the 410's outcome: recorded, the event still pending
            async with opened(config) as engine:
                return (await outbox.counts(engine))["d"].pending == 1

        await eventually(lambda: count_attempts(config, 3))
        await eventually(pending)
        await asyncio.sleep(0.3)
        async with opened(config) as engine:
            reason = (await health_store.load(engine))["d"].disabled_reason
            still_pending = (await outbox.counts(engine))["d"].pending
            await health_store.set_disabled(engine, "d", None, datetime.now(UTC))  # enable

        def titles() -> list[str]:
            return [item.json()["data"]["title"] for item in receiver.received]

        await eventually(lambda: "unwanted" in titles())
        await eventually(lambda: count_attempts(config, 4))
    async with opened(config) as engine, engine.connect() as connection:
        row = (await connection.execute(DEAD_LETTERS)).one()
        errors = (
            await connection.scalars(
                select(tables.delivery_attempts.c.error).order_by(tables.delivery_attempts.c.id)
            )
        ).all()
    assert errors == [
        "callback did not answer within 0.5s",
        "callback did not answer within 0.5s",
        "callback returned 410 Gone",
        None,
    ]
    assert row.attempts == 2 and row.last_error == errors[1]
    assert reason is not None and reason.startswith("410 Gone at ")
    assert still_pending == 1, "the event that got 410 stays pending"
    assert titles().count("unwanted") == 1


async def test_invalid_token_marks_failing_and_keeps_the_mark(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}])
    async with running(config):
        await eventually(lambda: all_polled(config))
        before = (await states(config))["d"]
        sandbox.token = "revoked-" + API_TOKEN  # the configured token now gets 401
        sandbox.add_deal(title="while revoked")

        async def failing() -> bool:
            return (await states(config))["d"].status == feed_store.STATUS_FAILING

        await eventually(failing)
        after = (await states(config))["d"]
        assert after.position == before.position
        assert after.last_error is not None and "401" in after.last_error
        assert "API token" in after.last_error
        sandbox.token = API_TOKEN
        await wait_for_events(receiver, 1)
    assert (await states(config))["d"].status == feed_store.STATUS_OK


async def test_rate_limited_and_broken_answers_lose_nothing(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}])
    async with running(config):
        await eventually(lambda: all_polled(config))
        sandbox.faults.add(status=429, count=1, path_prefix="/api/v2/deals")
        sandbox.faults.add(malformed=True, count=4, path_prefix="/api/v2/deals")
        ids = [sandbox.add_deal(title=f"deal {n}")["id"] for n in range(3)]
        await wait_for_events(receiver, 3)
    assert sorted(item.json()["data"]["id"] for item in receiver.received) == ids
    statuses = [c.status for c in sandbox.calls if c.path == "/api/v2/deals"]
    assert 429 in statuses


async def test_subscriptions_of_one_account_share_one_listing(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    subs = [{"name": f"v2-{n}", "trigger": "deal.added"} for n in range(3)]
    subs += [{"name": f"legacy-{n}", "trigger": "deal.added.legacy"} for n in range(2)]
    config = make_config(subs)
    async with running(config):
        await eventually(lambda: all_polled(config))
        sandbox.clear_calls()
        for n in range(4):
            sandbox.add_deal(title=f"shared {n}")
        await wait_for_events(receiver, 4 * len(subs))
        polls_before = listing_calls(sandbox, "/api/v2/deals")
        await cycles_done(config, "v2-0", 3)  # counted, not slept: a loaded machine polls late
        polls_after = listing_calls(sandbox, "/api/v2/deals")
    cycles = polls_after - polls_before
    assert 2 <= cycles <= 4, f"one listing per cycle for {len(subs)} subscriptions, got {cycles}"
    assert listing_calls(sandbox, "/api/v2/activities") == 0


async def test_secrets_never_reach_the_logs(
    make_config: MakeConfig,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config([{"name": "d", "trigger": "deal.added"}], max_attempts=2)
    async with running(config):
        await eventually(lambda: all_polled(config))
        sandbox.faults.add(status=500, count=10, path_prefix="/api/v2/deals")
        await eventually(lambda: any("poll failed" in r.getMessage() for r in caplog.records))
        receiver.reply(500, times=2)
        sandbox.add_deal(title="logged")
        await eventually(lambda: count_dead(config))
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records)
    assert "poll failed" in text and "dead-lettered" in text
    assert API_TOKEN not in text
    assert SIGNING_SECRET not in text and SIGNING_SECRET.removeprefix("whsec_") not in text


async def test_an_unmappable_item_is_dead_lettered_not_dropped(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = make_config([{"name": "d", "trigger": "deal.added"}])
    async with running(config):
        await eventually(lambda: all_polled(config))
        broken = sandbox.add_deal(title="will be garbled")["id"]
        with sandbox.store.lock:  # Pipedrive answering with a wrong type in one object
            sandbox.store.deals[broken]["value"] = "lots"
        good = sandbox.add_deal(title="fine")["id"]
        await wait_for_events(receiver, 1)
        await eventually(lambda: count_dead(config))
    assert [item.json()["data"]["id"] for item in receiver.received] == [good]
    async with opened(config) as engine, engine.connect() as connection:
        row = (await connection.execute(DEAD_LETTERS)).one()
    assert row.item_id == str(broken) and "value" in row.last_error


async def test_a_slow_consumer_does_not_slow_the_others(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    slow = WebhookReceiver(secret=SIGNING_SECRET)
    slow.reply(200, times=100, delay_s=1.5)
    with serve(slow) as slow_server:
        config = make_config(
            [
                {
                    "name": "slow",
                    "trigger": "deal.added",
                    "callback_url": f"{slow_server.base_url}/hooks/slow",
                },
                {"name": "fast", "trigger": "activity.added"},
            ],
            per_subscription_concurrency=2,
            concurrency=8,
            timeout=5,
        )
        async with running(config):
            await eventually(lambda: all_polled(config))
            for n in range(10):
                sandbox.add_deal(title=f"busy {n}")
            await asyncio.sleep(1.3)  # the slow consumer's deliveries are now in flight
            for n in range(10):
                sandbox.add_activity(subject=f"quick {n}", type="call")
            await wait_for_events(receiver, 10)
            slow_so_far = len(slow.event_ids())
    # 10 slow deliveries of 1.5 s, 2 at a time, take 7.5 s. Without the per-subscription cap
    # the slow consumer would hold all 8 slots and finish 8 before any activity got through.
    assert slow_so_far <= 5, f"fast waited behind the slow consumer ({slow_so_far} slow done)"


async def test_changing_a_subscriptions_trigger_starts_it_afresh(
    make_config: MakeConfig, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    """A deal id mark means nothing to activities: the renamed trigger starts from `start`."""
    for n in range(3):
        sandbox.add_activity(subject=f"old activity {n}", type="call")
    await asyncio.sleep(1.1)  # Pipedrive's whole seconds: the start's own second counts as after
    deals = make_config([{"name": "x", "trigger": "deal.added"}])
    async with running(deals):
        await eventually(lambda: all_polled(deals))
    activities = make_config([{"name": "x", "trigger": "activity.added"}])
    async with running(activities):

        async def remarked() -> bool:
            state = (await states(activities)).get("x")
            return state is not None and state.trigger == "activity.added"

        await eventually(remarked)
        new = sandbox.add_activity(subject="after the change", type="call")
        await wait_for_events(receiver, 1)
        await asyncio.sleep(1.2)
    assert [item.json()["data"]["id"] for item in receiver.received] == [new["id"]]
