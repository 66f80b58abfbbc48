"""The change feed against the sandbox, cycle by cycle, on real SQLite and PostgreSQL.

Each test drives poll cycles by hand (as the scheduler would) and reads what the outbox
queued: the bodies there are what consumers receive, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import select

from daemon import clock as clock_module
from daemon import config as config_module
from daemon import metrics as metrics_module
from daemon.cli import main
from daemon.db import database, feed_store, outbox_admin, tables
from daemon.dev.sandbox import Sandbox
from daemon.pipedrive import rate_limit
from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.pipedrive.lookups import LookupCache
from daemon.pipedrive.rate_limit import AccountRateLimiter
from daemon.polling import cycles, plan, poller, reread
from daemon.status import snapshot
from tests.conftest import API_TOKEN, config_text
from tests.schema_check import assert_matches_schema

ONE_TRY = RetryOptions(attempts=1)


def printed_schemas(directory: Path) -> dict[str, jsonschema.Draft202012Validator]:
    """What `pipedrive-triggers schema --all --out DIR` writes, one validator per trigger."""
    result = CliRunner().invoke(main.main, ["schema", "--all", "--out", str(directory)])
    assert result.exit_code == 0, result.output
    validators = {}
    for path in directory.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[path.stem] = jsonschema.Draft202012Validator(schema)
    return validators


DEAD_LETTERS = select(tables.deliveries).where(tables.deliveries.c.state == tables.STATE_DEAD)


class Harness:
    def __init__(self, config: config_module.Config, poll: poller.Poller, engine: Any) -> None:
        self.config = config
        self.poll = poll
        self.engine = engine
        self.clients: dict[str, PipedriveClient] = {}  # what the poller uses, for replays
        self.caches: dict[str, LookupCache] = {}

    async def cycle(self) -> None:
        for feed in plan.feeds(self.config):
            await self.poll.poll(feed)

    async def events(self, subscription: str | None = None) -> list[dict[str, Any]]:
        query = (
            select(tables.deliveries)
            .where(tables.deliveries.c.state != tables.STATE_DEAD)
            .order_by(tables.deliveries.c.id)
        )
        if subscription is not None:
            query = query.where(tables.deliveries.c.subscription == subscription)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [{**json.loads(row.body), "webhook_id": row.event_id} for row in rows]

    async def dead(self) -> list[Any]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(DEAD_LETTERS)).all())

    async def state(self, name: str) -> feed_store.SubscriptionState:
        return (await feed_store.load_states(self.engine, [name]))[name]


MakeHarness = Callable[..., contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture
def harness(tmp_path: Path, database_url: str, sandbox: Sandbox) -> MakeHarness:
    @contextlib.asynccontextmanager
    async def make(
        subscriptions: list[dict[str, Any]],
        retry: RetryOptions = ONE_TRY,
        look_back: str = "60s",
        calls_per_minute: int = 1000,
        metrics: metrics_module.Metrics = metrics_module.NONE,
        as_the_daemon: bool = False,
    ) -> AsyncIterator[Harness]:
        path = tmp_path / "config.toml"
        text = config_text(
            database_url=database_url,
            api_url=sandbox.base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=subscriptions,
            calls_per_minute=calls_per_minute,
        )
        path.write_text(
            text.replace("[[subscriptions]]", f'look_back = "{look_back}"\n\n[[subscriptions]]', 1),
            encoding="utf-8",
        )
        config = config_module.load(path)
        engine = database.create_engine(database_url)
        http = PipedriveClient.http_client(sandbox.base_url, lambda: SecretStr(API_TOKEN))
        client = PipedriveClient(
            http, account="main", limiter=AccountRateLimiter(calls_per_minute), retry=retry
        )
        try:
            cache = LookupCache()
            # The daemon's poller remembers each feed's marks and batches cycle outcomes.
            daemon_style: dict[str, Any] = (
                {"remember_feeds": True, "cycle_log": cycles.CycleLog(engine, clock_module.SYSTEM)}
                if as_the_daemon
                else {}
            )
            poll = poller.Poller(
                engine, {"main": client}, {"main": cache}, metrics=metrics, **daemon_style
            )
            made = Harness(config, poll, engine)
            made.clients, made.caches = {"main": client}, {"main": cache}
            yield made
        finally:
            await http.aclose()
            await engine.dispose()

    return make


def old(sandbox: Sandbox, minutes: int = 10) -> str:
    """A timestamp well before the look-back: the feed never lists what was last touched then."""
    return (sandbox.now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def test_updated_carries_previous_values_and_added_does_not(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    subs = [{"name": "added", "trigger": "deal.added"}, {"name": "upd", "trigger": "deal.updated"}]
    async with harness(subs) as h:
        await h.cycle()
        deal = sandbox.add_deal("First title", value=100)
        await h.cycle()
        sandbox.update_deal(deal["id"], title="Second title", value=250)
        await h.cycle()
        added, updated = await h.events("added"), await h.events("upd")
    assert types(added) == ["deal.added"] and "previous" not in added[0]
    assert types(updated) == ["deal.updated"]  # creation is not an update
    assert updated[0]["data"]["title"] == "Second title"
    previous = updated[0]["previous"]
    assert previous["title"] == "First title" and previous["value"] == 100
    assert "currency" not in previous  # unchanged fields are left out
    assert_matches_schema(updated[0]["data"], "DealResponseV2")


async def test_stage_change_of_a_deal_from_before_the_start(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    stages = [s["id"] for s in sandbox.stages if s["pipeline_id"] == 1]
    unseen = sandbox.add_deal("Old deal", add_time=old(sandbox, 600), update_time=old(sandbox))
    async with harness([{"name": "moves", "trigger": "deal.stage_changed"}]) as h:
        await h.cycle()
        sandbox.update_deal(unseen["id"], stage_id=stages[1])
        await h.cycle()
        sandbox.update_deal(unseen["id"], stage_id=stages[2])
        await h.cycle()
        sandbox.update_deal(unseen["id"], title="renamed, same stage")
        await h.cycle()
        moved = await h.events("moves")
    assert [e["data"]["stage_id"] for e in moved] == [stages[1], stages[2]]
    assert moved[0]["previous"] is None  # never seen before the subscription started
    assert moved[1]["previous"]["stage_id"] == stages[1]
    assert len({e["webhook_id"] for e in moved}) == 2


async def test_win_reopen_win_fires_won_twice_and_lost_and_deleted(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    subs = [
        {"name": "won", "trigger": "deal.won"},
        {"name": "lost", "trigger": "deal.lost"},
        {"name": "deleted", "trigger": "deal.deleted"},
        {"name": "updated", "trigger": "deal.updated"},
    ]
    async with harness(subs) as h:
        await h.cycle()
        deal = sandbox.add_deal("Contract")
        other = sandbox.add_deal("Lost cause")
        await h.cycle()
        for status in ("won", "open", "won"):
            sandbox.update_deal(deal["id"], status=status)
            await h.cycle()
        sandbox.update_deal(other["id"], status="lost", lost_reason="price")
        await h.cycle()
        sandbox.delete_deal(other["id"])
        await h.cycle()
        won, lost, deleted = (
            await h.events("won"),
            await h.events("lost"),
            await h.events("deleted"),
        )
        updated = await h.events("updated")
    assert types(won) == ["deal.won", "deal.won"]
    assert won[0]["webhook_id"] != won[1]["webhook_id"]
    assert won[1]["previous"]["status"] == "open"
    assert [e["data"]["lost_reason"] for e in lost] == ["price"]
    assert [e["data"]["id"] for e in deleted] == [other["id"]]
    assert deleted[0]["data"]["deleted"] is True
    assert not any(e["data"]["deleted"] for e in updated)  # the deletion is no update


async def test_two_edits_in_one_second_are_two_changes(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    async with harness([{"name": "upd", "trigger": "deal.updated"}]) as h:
        await h.cycle()
        deal = sandbox.add_deal("Same second")
        await h.cycle()
        sandbox.set_time(sandbox.now + timedelta(seconds=2))  # frozen: one update_time
        sandbox.update_deal(deal["id"], value=1)
        await h.cycle()
        sandbox.update_deal(deal["id"], value=2)
        await h.cycle()
        sandbox.update_deal(deal["id"], value=1)  # back to an earlier state: still a change
        await h.cycle()
        await h.cycle()  # a re-read of the same version is no change
        updated = await h.events("upd")
    assert [e["data"]["value"] for e in updated] == [1, 2, 1]
    assert len({e["data"]["update_time"] for e in updated}) == 1
    assert len({e["webhook_id"] for e in updated}) == 3


async def test_an_item_visible_late_inside_the_look_back_is_delivered_once(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    subs = [
        {"name": "a", "trigger": "deal.added"},
        {"name": "b", "trigger": "deal.added.legacy"},
        {"name": "c", "trigger": "deal.added", "filter": {"status": "open"}},
    ]
    async with harness(subs) as h:
        await h.cycle()
        base = sandbox.set_time(sandbox.now + timedelta(seconds=1))
        late = sandbox.add_deal("committed late", visible_after=3)  # the lower id
        sandbox.advance_time(1)
        early = sandbox.add_deal("committed first")
        await h.cycle()
        assert [e["data"]["id"] for e in await h.events("a")] == [early["id"]]
        sandbox.set_time(base + timedelta(seconds=5))
        await h.cycle()
        await h.cycle()
        for name in ("a", "b", "c"):
            ids = [e["data"]["id"] for e in await h.events(name)]
            assert sorted(ids) == sorted([early["id"], late["id"]]), name


async def test_filters_match_values_lists_and_labels(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    second = sandbox.add_pipeline("Partners", ["Intro", "Pilot", "Signed"])
    stages = [s["id"] for s in sandbox.stages if s["pipeline_id"] == second["id"]]
    subs = [
        {"name": "pipeline", "trigger": "deal.added", "filter": {"pipeline_id": second["id"]}},
        {"name": "stages", "trigger": "deal.added", "filter": {"stage_id": stages[1:]}},
        {"name": "label", "trigger": "deal.added", "filter": {"label_ids": [7, 9]}},
        {"name": "none", "trigger": "deal.added", "filter": {"pipeline_id": 999}},
    ]
    async with harness(subs) as h:
        await h.cycle()
        first = sandbox.add_deal("Intro deal", pipeline_id=second["id"], stage_id=stages[0])
        piloted = sandbox.add_deal("Pilot deal", pipeline_id=second["id"], stage_id=stages[1])
        labelled = sandbox.add_deal("Labelled", label_ids=[3, 9])
        await h.cycle()

        async def ids(name: str) -> list[int]:
            return sorted(e["data"]["id"] for e in await h.events(name))

        assert await ids("pipeline") == [first["id"], piloted["id"]]
        assert await ids("stages") == [piloted["id"]]
        assert await ids("label") == [labelled["id"]]
        assert await ids("none") == []


async def test_ten_subscriptions_cost_one_listing_per_object_type_per_cycle(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    triggers = [
        "deal.added", "deal.added.legacy", "deal.updated", "deal.stage_changed", "deal.won",
        "activity.added", "activity.done", "deal.added", "deal.won", "activity.added",
    ]  # fmt: skip
    subs = [{"name": f"s{n}", "trigger": t} for n, t in enumerate(triggers)]
    subs[7]["filter"] = {"status": "open"}
    async with harness(subs) as h:
        await h.cycle()  # the first: one id probe per feed, then the listing
        sandbox.clear_calls()
        for n in range(5):
            deal = sandbox.add_deal(f"Deal {n}")
            sandbox.add_activity(subject=f"Call {n}", type="call", deal_id=deal["id"])
            await h.cycle()
        listings = [c for c in sandbox.calls if c.method == "GET" and "updated_since" in c.query]
        assert len(await h.events("s0")) == 5 and len(await h.events("s5")) == 5
    assert sorted(c.path for c in listings) == ["/api/v2/activities"] * 5 + ["/api/v2/deals"] * 5


async def test_an_idle_hour_costs_listings_and_no_lookup(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    subs = [
        {"name": "d", "trigger": "deal.added.legacy"},
        {"name": "a", "trigger": "activity.added"},
    ]
    async with harness(subs) as h:
        await h.cycle()
        sandbox.add_deal("warms the caches")
        await h.cycle()
        sandbox.clear_calls()
        for _ in range(10):  # idle cycles back to back (bench/api_cost.py runs a whole hour)
            await h.cycle()
    paths = sorted({c.path for c in sandbox.calls})
    assert paths == ["/api/v2/activities", "/api/v2/deals"]
    assert len(sandbox.calls) == 20 and all("updated_since" in c.query for c in sandbox.calls)


async def test_a_crash_between_pages_repeats_and_loses_nothing(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    start = (sandbox.now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for n in range(1100):  # three pages of 500
        sandbox.add_deal(
            f"Backlog {n}", add_time=old(sandbox, 30), update_time=old(sandbox, 20 - n // 100)
        )
    async with harness([{"name": "b", "trigger": "deal.added", "start": start}]) as h:
        sandbox.faults.add(status=503, path="/api/v2/deals", skip=3)  # probe + two pages pass
        await h.cycle()
        failing = await h.state("b")
        assert failing.status == feed_store.STATUS_FAILING and "503" in (failing.last_error or "")
        assert len(await h.events("b")) == 1000  # two pages committed before the fault
        await h.cycle()
        ids = [e["data"]["id"] for e in await h.events("b")]
    assert len(ids) == 1100 and len(set(ids)) == 1100


async def test_start_now_is_the_first_attempt_even_if_pipedrive_is_down(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    async with harness([{"name": "d", "trigger": "deal.added"}]) as h:
        sandbox.token = "revoked"
        await h.cycle()  # 401: nothing listed, but the start is recorded
        created = [sandbox.add_deal(f"during the outage {n}")["id"] for n in range(5)]
        await h.cycle()
        assert (await h.state("d")).status == feed_store.STATUS_FAILING
        sandbox.token = API_TOKEN
        await h.cycle()
        assert sorted(e["data"]["id"] for e in await h.events("d")) == created
        assert (await h.state("d")).status == feed_store.STATUS_OK


@pytest.mark.parametrize(
    ("field", "garbage"),
    [("add_time", "0001-01-01T00:00:00+01:00"), ("id", 2**64), ("update_time", "soon")],
)
async def test_an_unmappable_item_is_dead_lettered_and_a_later_good_version_delivered(
    harness: MakeHarness, sandbox: Sandbox, field: str, garbage: Any, caplog: Any
) -> None:
    async with harness([{"name": "d", "trigger": "deal.added"}]) as h:
        await h.cycle()
        broken = sandbox.add_deal("garbled")["id"]
        with sandbox.store.lock:
            saved = sandbox.store.deals[broken][field]
            sandbox.store.deals[broken][field] = garbage
        good = sandbox.add_deal("fine")["id"]
        await h.cycle()
        assert [e["data"]["id"] for e in await h.events("d")] == [good]
        dead = await h.dead()
        assert len(dead) == 1 and field in dead[0].last_error
        assert (await h.state("d")).status == feed_store.STATUS_OK  # the feed did not stall
        await h.cycle()  # the look-back reads it again: the same dead letter, no new error
        said = [r for r in caplog.records if getattr(r, "action", "") == "poll.unmappable"]
        assert len(said) == 1 and len(await h.dead()) == 1, [r.getMessage() for r in said]
        with sandbox.store.lock:
            sandbox.store.deals[broken][field] = saved
        sandbox.update_deal(broken, title="fixed")
        await h.cycle()
        assert sorted(e["data"]["id"] for e in await h.events("d")) == sorted([good, broken])


async def test_a_repeating_cursor_stops_with_an_error_and_bounded_calls(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    for n in range(3):
        sandbox.add_deal(f"d{n}")
    start = old(sandbox, 60)
    async with harness([{"name": "d", "trigger": "deal.added", "start": start}]) as h:
        sandbox.faults.add(repeat_cursor=True, count=1000, path="/api/v2/deals", skip=1)
        sandbox.clear_calls()
        await h.cycle()
        state = await h.state("d")
    error = state.last_error or ""
    assert state.status == feed_store.STATUS_FAILING
    assert "repeated a page cursor" in error or "same page again" in error
    assert sandbox.calls_to("GET", "/api/v2/deals") <= 4


async def test_a_huge_retry_after_fails_the_cycle_instead_of_freezing(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    async with harness(
        [{"name": "d", "trigger": "deal.added"}], retry=RetryOptions(attempts=3)
    ) as h:
        await h.cycle()
        # Budget left: the Retry-After of 11 days is not believed; the burst window's is.
        sandbox.faults.add(status=429, retry_after=999999, path="/api/v2/deals")
        started = datetime.now(UTC)
        await h.cycle()
        assert (datetime.now(UTC) - started).total_seconds() < 30
        assert (await h.state("d")).status == feed_store.STATUS_OK
        # The daily budget spent: believed, until the reset at UTC midnight at most; each
        # cycle fails at once with the reason, and no call goes out into the spent budget.
        sandbox.set_limits(daily_tokens=1)
        await h.cycle()
        sandbox.clear_calls()
        started = datetime.now(UTC)
        await h.cycle()
        took = (datetime.now(UTC) - started).total_seconds()
        state = await h.state("d")
    assert took < 5 and sandbox.calls == []
    error = state.last_error or ""
    assert state.status == feed_store.STATUS_FAILING and "daily token budget" in error
    pause = rate_limit.parse_pause(error)
    assert pause is not None
    assert pause[0] - datetime.now(UTC) <= timedelta(days=1)  # not 11.6 days


async def test_a_start_that_cannot_be_served_fails_its_subscription_alone(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    subs = [{"name": "bad", "trigger": "deal.added"}, {"name": "good", "trigger": "deal.added"}]
    async with harness(subs) as h:
        # check-config refuses it now; a value that still slips through (an older daemon's
        # config, a bound that moves) must not stall the feed for the siblings.
        broken = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
        h.config = h.config.model_copy(
            update={
                "subscriptions": [
                    s.model_copy(update={"start": broken}) if s.name == "bad" else s
                    for s in h.config.subscriptions
                ]
            }
        )
        await h.cycle()
        created = sandbox.add_deal("after the start")["id"]
        await h.cycle()
        assert [e["data"]["id"] for e in await h.events("good")] == [created]
        good, bad = await h.state("good"), await h.state("bad")
    assert good.status == feed_store.STATUS_OK
    assert bad.status == feed_store.STATUS_FAILING
    assert "start" in (bad.last_error or "") and "0001-01-01" in (bad.last_error or "")


async def test_every_trigger_end_to_end_to_a_real_receiver(
    tmp_path: Path, database_url: str, sandbox: Sandbox, receiver: Any
) -> None:
    """The whole catalog through the daemon: listed, detected, signed, delivered."""
    import asyncio

    from daemon import triggers
    from daemon.service import lifecycle
    from tests.integration.test_pipeline import FAST_RETRY, eventually, wait_for_events
    from tests.waiting import HANG_S

    # Deletions of persons, ... fire only from instant mode's webhooks: see
    # tests/acceptance/test_instant_deletions.py.
    names = sorted(n for n, t in triggers.REGISTRY.items() if not t.deletion)
    subs = [{"name": n.replace(".", "-"), "trigger": n} for n in names]
    subs.append({"name": "deals-custom", "trigger": "deal.added", "include_custom_fields": True})
    path = tmp_path / "all.toml"
    path.write_text(
        config_text(
            database_url=database_url,
            api_url=sandbox.base_url,
            callback_url=receiver.base_url,
            subscriptions=subs,
        ),
        encoding="utf-8",
    )
    config = config_module.load(path)
    size = sandbox.define_field("deal", "Company size", "enum", ["Small", "Large"])
    large = next(o["id"] for o in size["options"] if o["label"] == "Large")
    stages = [s["id"] for s in sandbox.stages if s["pipeline_id"] == 1]
    stop = asyncio.Event()
    task = asyncio.create_task(lifecycle.run(config, stop, FAST_RETRY))
    try:
        engine = database.create_engine(database_url)

        async def all_polled() -> bool:
            known = await feed_store.load_states(engine)
            return len(known) == len(subs) and all(s.last_poll_at for s in known.values())

        try:
            await eventually(all_polled)
        finally:
            await engine.dispose()
        person = sandbox.add_person("Ada Lovelace")
        org = sandbox.add_organization("Analytical Engines")
        won = sandbox.add_deal(
            "To win", person_id=person["id"], custom_fields={size["field_code"]: large}
        )
        lost = sandbox.add_deal("To lose", org_id=org["id"])
        gone = sandbox.add_deal("To delete")
        call = sandbox.add_activity(subject="Call Ada", type="call", deal_id=won["id"])
        sandbox.add_note("Met at the fair", deal_id=won["id"])
        sandbox.add_lead("Inbound", person_id=person["id"])
        await wait_for_events(receiver, 12)  # every *.added (two deal ones x3, +custom x3)
        sandbox.update_person(person["id"], name="Ada King")
        sandbox.update_organization(org["id"], name="Analytical Engines Ltd")
        sandbox.update_deal(won["id"], stage_id=stages[1])
        sandbox.update_deal(lost["id"], status="lost", lost_reason="budget")
        sandbox.delete_deal(gone["id"])
        sandbox.update_activity(call["id"], done=True)
        await asyncio.sleep(1.5)
        sandbox.update_deal(won["id"], status="won")
        got = await asyncio.to_thread(
            lambda: receiver.wait_for(len(receiver.event_ids()) + 1, HANG_S) and receiver.received
        )
        assert got
        deadline = asyncio.get_running_loop().time() + HANG_S
        while {item.json()["type"] for item in receiver.received} != set(names):
            assert asyncio.get_running_loop().time() < deadline, sorted(
                set(names) - {item.json()["type"] for item in receiver.received}
            )
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=HANG_S)
    bodies = [item.json() for item in receiver.received]
    printed = printed_schemas(tmp_path / "schemas")
    assert set(printed) == set(triggers.REGISTRY)  # the deletions' schemas too
    for body in bodies:
        problems = [f"{e.json_path}: {e.message}" for e in printed[body["type"]].iter_errors(body)]
        assert problems == [], f"{body['type']}: {problems}"
    for body in bodies:
        schema = triggers.get(body["type"]).payload.schema
        if schema is not None:  # custom_fields is the one key added on request
            assert_matches_schema(
                {k: v for k, v in body["data"].items() if k != "custom_fields"}, schema
            )
        assert ("previous" in body) == (triggers.get(body["type"]).kind == "change")
    person_event = next(b for b in bodies if b["type"] == "person.updated")
    assert person_event["data"] == sandbox.person(person["id"])  # the API v2 object
    assert person_event["previous"]["name"] == "Ada Lovelace"
    custom = [b for b in bodies if b["subscription"] == "deals-custom"]
    by_title = {b["data"]["title"]: b["data"] for b in custom}
    assert by_title["To win"]["custom_fields"] == {"Company size": "Large"}
    assert all(
        "custom_fields" not in b["data"] for b in bodies if b["subscription"] == "deal-added"
    )


@pytest.mark.parametrize("ahead", ["2099-01-01T00:00:00Z", timedelta(hours=1)])
async def test_a_future_dated_item_does_not_hide_later_changes(
    harness: MakeHarness, sandbox: Sandbox, ahead: str | timedelta, caplog: Any
) -> None:
    """One item dated ahead of Pipedrive's clock (a bad clock, an import): it is delivered and
    reported, and the feed's watermark stays at the listing's time, so later changes of other
    items and of that item are still listed, also after a restart."""
    future = ahead if isinstance(ahead, str) else sandbox.now + ahead
    subs = [{"name": "upd", "trigger": "deal.updated"}]
    counted = metrics_module.PrometheusMetrics()
    async with harness(subs, metrics=counted) as h:
        await h.cycle()
        other = sandbox.add_deal("other")["id"]
        dated = sandbox.add_deal("dated")["id"]
        await h.cycle()
        sandbox.update_deal(dated, title="from the future", update_time=future)
        await h.cycle()
        await h.cycle()  # listed again (it is after the watermark): not news, not logged again
        assert [e["data"]["title"] for e in await h.events("upd")] == ["from the future"]
        sandbox.update_deal(other, title="other, later")
        await h.cycle()
        sandbox.update_deal(dated, title="dated, corrected")
        await h.cycle()
        titles = [e["data"]["title"] for e in await h.events("upd")]
        assert titles == ["from the future", "other, later", "dated, corrected"]
        said = [r for r in caplog.records if getattr(r, "action", "") == "poll.future_dated"]
        assert len(said) == 1 and said[0].item_id == str(dated), [r.getMessage() for r in said]
        sample = counted.registry.get_sample_value(
            "pipedrive_triggers_future_dated_items_total", {"account": "main", "object": "deals"}
        )
        assert sample == 1
        sandbox.update_deal(dated, title="ahead again", update_time=future)
        await h.cycle()
        report = await snapshot.gather(h.config, h.engine, datetime.now(UTC))
        (row,) = report.subscriptions
        assert row["future_dated_items"] == 1 and row["status"] == feed_store.STATUS_OK
        assert "dated in the future" in snapshot.render(report)
    async with harness(subs) as h:  # a restart: what was stored is what the next daemon reads
        sandbox.update_deal(other, title="other, after the restart")
        await h.cycle()
        assert [e["data"]["title"] for e in await h.events("upd")][-2:] == [
            "ahead again",
            "other, after the restart",
        ]


BROKEN_TITLE = {"de": "kaputt"}  # what a flaky Pipedrive answered instead of a string


def garble(sandbox: Sandbox, *deal_ids: int) -> dict[int, Any]:
    """Break the deals' titles in place (no new update_time): returns what to restore."""
    with sandbox.store.lock:
        saved = {i: sandbox.store.deals[i]["title"] for i in deal_ids}
        for i in deal_ids:
            sandbox.store.deals[i]["title"] = BROKEN_TITLE
    return saved


def restore(sandbox: Sandbox, saved: dict[int, Any]) -> None:
    with sandbox.store.lock:
        for i, title in saved.items():
            sandbox.store.deals[i]["title"] = title


async def test_a_transient_malformed_field_does_not_strand_the_real_event(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    """A title that is a dict in two listings and right in the third (same update_time): the
    version that maps is delivered, and the dead letter says it was superseded."""
    subs = [{"name": "add", "trigger": "deal.added"}, {"name": "upd", "trigger": "deal.updated"}]
    async with harness(subs) as h:
        await h.cycle()
        kept = sandbox.add_deal("kept")["id"]
        await h.cycle()
        fresh = sandbox.add_deal("fresh")["id"]
        sandbox.update_deal(kept, title="renamed")
        saved = garble(sandbox, fresh, kept)
        await h.cycle()
        await h.cycle()
        dead = sorted((row.subscription, row.item_id) for row in await h.dead())
        assert dead == [("add", str(fresh)), ("upd", str(kept))]
        restore(sandbox, saved)
        await h.cycle()
        added = {e["data"]["id"]: e for e in await h.events("add")}
        assert sorted(added) == [kept, fresh] and added[fresh]["data"]["title"] == "fresh"
        (renamed,) = await h.events("upd")
        assert renamed["data"]["title"] == "renamed" and renamed["previous"]["title"] == "kept"
        letters = await outbox_admin.list_dead(h.engine, outbox_admin.Selection())
        superseding = {"add": added[fresh]["webhook_id"], "upd": renamed["webhook_id"]}
        assert {x.subscription: x.superseded_by for x in letters} == superseding
        assert all(x.as_json()["superseded_by"] for x in letters)
        detail = await outbox_admin.show_dead(h.engine, letters[0].id)
        assert detail is not None and detail.letter.superseded_by is not None


async def test_replaying_an_unreadable_item_reads_it_again_from_pipedrive(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    """Replay never resends the raw object that failed: it GETs the item again and maps it;
    while it still does not map, the letter stays dead and the replay says why."""
    async with harness([{"name": "add", "trigger": "deal.added"}]) as h:
        await h.cycle()
        deal_id = sandbox.add_deal("the real title")["id"]
        saved = garble(sandbox, deal_id)
        await h.cycle()
        (letter,) = await outbox_admin.list_dead(h.engine, outbox_admin.Selection())
        selection = outbox_admin.Selection(ids=[letter.id])
        sandbox.clear_calls()
        outcome = await reread.replay(
            h.engine, h.config, h.clients, h.caches, selection, datetime.now(UTC)
        )
        assert (outcome.resent, outcome.reread) == (0, [])
        ((kept_id, why),) = outcome.kept
        assert kept_id == letter.id and "still cannot be mapped" in why and "title" in why
        assert sandbox.calls_to("GET", f"/api/v2/deals/{deal_id}") == 1
        assert [row.id for row in await h.dead()] == [letter.id]
        restore(sandbox, saved)  # fixed at Pipedrive, not listed since
        outcome = await reread.replay(
            h.engine, h.config, h.clients, h.caches, selection, datetime.now(UTC)
        )
        assert (outcome.reread, outcome.kept) == ([letter.id], [])
        assert await h.dead() == []
        (queued,) = await h.events("add")
        assert queued["data"]["title"] == "the real title" and queued["webhook_id"] == (
            letter.webhook_id
        )


async def test_the_daemons_poller_remembers_its_marks_and_detects_the_same(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    """Marks remembered between cycles (not read again) and outcomes written in batches:
    the same events as reading them each time, and the same state once flushed."""
    subs = [
        {"name": "added", "trigger": "deal.added", "start": "2026-01-01T00:00:00Z"},
        {"name": "upd", "trigger": "deal.updated", "start": "2026-01-01T00:00:00Z"},
    ]
    # Pipedrive's clock an hour behind, moving 5 minutes between changes: each listing's
    # `updated_since` shows where the remembered watermark stood.
    sandbox.set_time(datetime.now(UTC) - timedelta(hours=1))
    async with harness(subs, as_the_daemon=True) as h:
        await h.cycle()
        sandbox.advance_time(300)
        deal = sandbox.add_deal("First title", value=100)
        await h.cycle()
        sandbox.advance_time(300)
        sandbox.update_deal(deal["id"], title="Second title", value=250)
        await h.cycle()
        await h.cycle()  # nothing new: nothing more
        sandbox.advance_time(300)
        second = sandbox.add_deal("Second deal")
        sandbox.update_deal(second["id"], title="Renamed at once")
        await h.cycle()
        added, updated = await h.events("added"), await h.events("upd")
        log = h.poll._cycle_log
        assert log is not None
        assert (await h.state("added")).last_poll_at is None, "not written before a flush"
        assert await log.flush()
        state = await h.state("added")
    assert types(added) == ["deal.added", "deal.added"]
    assert [e["data"]["title"] for e in added] == ["First title", "Renamed at once"]
    assert types(updated) == ["deal.updated"]
    assert updated[0]["previous"]["title"] == "First title"
    assert state.status == "ok" and state.last_poll_at is not None
    # The remembered watermark moved on: each listing starts a look-back before the newest
    # change read, not from where the first one started.
    since = [
        c.query["updated_since"]
        for c in sandbox.calls
        if c.path == "/api/v2/deals" and "updated_since" in c.query
    ]
    assert since[0] == since[1] < since[2] < since[3] == since[4], since


# --- instant mode's reads by id (`Poller.read`) -------------------------------------------------


def _feed(made: Harness, object_type: str) -> plan.Feed:
    return next(f for f in plan.feeds(made.config) if f.object.name == object_type)


async def test_a_read_by_id_fires_once_and_the_next_listing_does_not_fire_again(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    async with harness(
        [{"name": "new", "trigger": "deal.added"}, {"name": "moved", "trigger": "deal.updated"}],
        as_the_daemon=True,
    ) as made:
        deals = _feed(made, "deals")
        await made.cycle()  # the feed starts: the id probe and a first listing
        marks = await made.state("new"), await made.state("moved")
        first = sandbox.add_deal("Read by id", value=100)
        sandbox.clear_calls()
        await made.poll.read(deals, frozenset({str(first["id"])}))
        feed_calls = [c.path for c in sandbox.calls if c.path.startswith("/api/v2/deals")]
        assert feed_calls == [f"/api/v2/deals/{first['id']}"]  # and the payload's lookups
        [added] = await made.events("new")
        assert added["data"]["title"] == "Read by id"
        assert_matches_schema(added["data"], "DealResponseV2")
        # No mark moved: a read by id does not say that everything before it was listed.
        assert (await made.state("new"), await made.state("moved")) == marks
        sandbox.update_deal(first["id"], value=200)
        await made.poll.read(deals, frozenset({str(first["id"])}))
        [updated] = await made.events("moved")
        assert updated["previous"] == {"value": 100}
        # The listing finds both versions known: nothing fires twice; a change no nudge
        # named is found by it as ever.
        other = sandbox.add_deal("Not nudged")
        await made.cycle()
        titles = [e["data"]["title"] for e in await made.events("new")]
        assert titles == ["Read by id", "Not nudged"]
        assert len(await made.events("moved")) == 1
        assert other["id"] > first["id"]


async def test_a_read_by_id_of_an_invented_item_is_one_call_and_nothing_else(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    async with harness([{"name": "new", "trigger": "deal.added"}], as_the_daemon=True) as made:
        await made.cycle()
        sandbox.clear_calls()
        await made.poll.read(_feed(made, "deals"), frozenset({"987654"}))
        assert [c.path for c in sandbox.calls] == ["/api/v2/deals/987654"]  # nothing else
        assert await made.events() == []


@pytest.mark.parametrize(
    ("why", "ids"),
    [
        ("more items than cost less one by one", {str(n) for n in range(1, 7)}),
        ("a nudge that named no item", None),
    ],
)
async def test_a_read_lists_the_feed_where_by_id_would_cost_more_or_cannot_serve(
    harness: MakeHarness, sandbox: Sandbox, why: str, ids: set[str] | None
) -> None:
    async with harness([{"name": "new", "trigger": "deal.added"}], as_the_daemon=True) as made:
        await made.cycle()
        sandbox.add_deal("Listed")
        sandbox.clear_calls()
        await made.poll.read(_feed(made, "deals"), None if ids is None else frozenset(ids))
        feed_calls = [c.path for c in sandbox.calls if c.path.startswith("/api/v2/deals")]
        assert feed_calls == ["/api/v2/deals"], why
        assert [e["data"]["title"] for e in await made.events()] == ["Listed"]


async def test_a_feed_not_started_or_a_subscription_backfilling_is_listed_not_read_by_id(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    old = sandbox.add_deal("Before the start")
    async with harness(
        [{"name": "backfill", "trigger": "deal.added", "start": "2020-01-01T00:00:00Z"}],
        as_the_daemon=True,
    ) as made:
        deals = _feed(made, "deals")
        # Not started: the id probe and the listing, as a poll.
        await made.poll.read(deals, frozenset({str(old["id"])}))
        assert sandbox.calls_to("GET", f"/api/v2/deals/{old['id']}") == 0
        assert [e["data"]["title"] for e in await made.events()] == ["Before the start"]


async def test_an_activity_read_by_id_fills_its_payload_with_lookups_by_id(
    harness: MakeHarness, sandbox: Sandbox
) -> None:
    person = sandbox.add_person("Grace Hopper")
    deal = sandbox.add_deal("Compiler", person_id=person["id"])
    async with harness([{"name": "acts", "trigger": "activity.added"}], as_the_daemon=True) as made:
        await made.cycle()
        act = sandbox.add_activity(
            subject="Call", type="call", deal_id=deal["id"], person_id=person["id"]
        )
        sandbox.clear_calls()
        await made.poll.read(_feed(made, "activities"), frozenset({str(act["id"])}))
        [event] = await made.events()
        assert (event["data"]["person_name"], event["data"]["deal_title"]) == (
            "Grace Hopper",
            "Compiler",
        )
        assert_matches_schema(event["data"], "ActivityResponse")
        # Every call one object by id: 1 token each (a user 2), no listing of 10 (and the
        # company's id, asked once per client).
        paths = [c.path for c in sandbox.calls if c.path != "/v1/users/me"]
        assert paths and all(p.rsplit("/", 1)[-1].isdigit() for p in paths), paths
