"""The admin listener of a running daemon: /metrics after a run with known counts, /readyz,
the bearer token, and the replay function the admin page calls."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from daemon import config as config_module
from daemon import metrics
from daemon.clock import FakeClock
from daemon.db import database, outbox, tables
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.errors import AdminListenError
from daemon.polling import plan
from daemon.status import admin_page, listener, page_actions
from tests.conftest import API_TOKEN, POSTGRES_ADMIN_URL, SIGNING_SECRET, config_text
from tests.integration.test_pipeline import all_polled, eventually, opened, running

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
# Where an in-process app says it listens: requests without a token must name it in Host.
LISTENING_ON = ("127.0.0.1", 9465)
ADMIN_URL = "http://127.0.0.1:9465"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    tmp_path: Path,
    *,
    database_url: str,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    subscriptions: list[dict[str, Any]],
    admin_section: str,
    **delivery: Any,
) -> config_module.Config:
    path = tmp_path / "config.toml"
    text = config_text(
        database_url=database_url,
        api_url=sandbox.base_url,
        callback_url=receiver.base_url,
        subscriptions=subscriptions,
        delivery=delivery,
    )
    path.write_text(text + "\n[admin]\n" + admin_section, encoding="utf-8")
    return config_module.load(path)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get(("pipedrive_triggers_" + name, frozenset(labels.items())), 0.0)


def _api_calls(text: str) -> float:
    found = parse(text)
    return sum(v for (name, _), v in found.items() if name == "pipedrive_triggers_api_calls_total")


def tokens_spent(sandbox: Sandbox) -> int:
    decision = sandbox.limiter.peek(API_TOKEN, time.monotonic(), datetime.now(UTC))
    return decision.daily_limit - decision.daily_remaining


async def test_metrics_count_what_happened(
    tmp_path: Path, database_url: str, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        database_url=database_url,
        sandbox=sandbox,
        receiver=receiver,
        subscriptions=[
            {"name": "good", "trigger": "deal.added"},
            # Its callback is on loopback and it does not allow that: refused, then dead.
            {"name": "guarded", "trigger": "deal.added", "allow_private_targets": False},
        ],
        admin_section=f'listen = "127.0.0.1:{port}"\n',
        max_attempts=2,
    )
    base = f"http://127.0.0.1:{port}"
    async with running(config), httpx.AsyncClient(base_url=base) as client:
        await eventually(lambda: all_polled(config))
        # One poll fails (three 500s: the client's attempts), then a 429 makes the next wait.
        sandbox.faults.add(status=500, count=3, path_prefix="/api/v2/deals")
        sandbox.faults.add(status=429, count=1, path_prefix="/api/v2/deals", retry_after=1)
        receiver.reply(500)  # the first delivery is retried once
        for n in range(3):
            sandbox.add_deal(title=f"deal {n}")
        await asyncio.to_thread(receiver.wait_for, 3, 20)

        async def all_dead() -> bool:  # and the good ones' outcomes written
            async with opened(config) as engine:
                counts = await outbox.counts(engine)
            return counts["guarded"].dead == 3 and counts["good"].delivered == 3

        await eventually(all_dead)
        # Polls go on: a scrape is compared with the sandbox's count when no call was in
        # flight around it (one answered but not yet counted would look like a miss).
        for _ in range(50):
            calls_before, tokens_before = len(sandbox.calls), tokens_spent(sandbox)
            answer = await client.get("/metrics")
            calls_after, tokens_after = len(sandbox.calls), tokens_spent(sandbox)
            if calls_before == calls_after and _api_calls(answer.text) == calls_before:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).text == "ok\n"
        ready = await client.get("/readyz")
        page = await client.get("/")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = parse(answer.text)
    assert value(found, "deliveries_total", subscription="good", outcome="delivered") == 3
    assert value(found, "deliveries_total", subscription="good", outcome="retry") == 1
    assert value(found, "deliveries_total", subscription="guarded", outcome="refused") == 3
    assert value(found, "deliveries_total", subscription="guarded", outcome="dead") == 3
    for name in ("good", "guarded"):
        assert value(found, "events_total", subscription=name, trigger="deal.added") == 3
    assert value(found, "delivery_latency_seconds_count", subscription="good") == 3
    assert value(found, "delivery_latency_seconds_bucket", subscription="good", le="+Inf") == 3
    assert value(found, "polls_total", account="main", object="deals", outcome="ok") >= 2
    assert value(found, "polls_total", account="main", object="deals", outcome="failed") == 1
    # This replica, by its [cluster] instance, polls the one account; it holds the singleton,
    # so it exports the database's gauges.
    [(_, replica)] = [key for key in found if key[0] == "pipedrive_triggers_replica"]
    assert dict(replica)["instance"] and value(found, "replica", **dict(replica)) == 1
    assert value(found, "accounts_held") == 1
    assert value(found, "outbox_pending", subscription="good") == 0

    # Every request the sandbox answered, counted once, by route template and status.
    api_calls = {
        (dict(labels)["endpoint"], dict(labels)["status"]): v
        for (name, labels), v in found.items()
        if name == "pipedrive_triggers_api_calls_total"
    }
    assert calls_before <= sum(api_calls.values()) <= calls_after
    assert api_calls[("GET /api/v2/deals", "500")] == 3
    assert api_calls[("GET /api/v2/deals", "429")] == 1
    endpoints = {endpoint for endpoint, _ in api_calls}
    assert endpoints <= {
        "GET /api/v2/deals",
        "GET /v1/users",
        "GET /v1/users/{id}",
        "GET /v1/users/me",
        "GET /api/v2/stages",
        "GET /api/v2/stages/{id}",
    }
    # The sandbox charges its injected 429 (a real one costs nothing): one listing's 10 tokens.
    spent = value(found, "api_tokens_total", account="main")
    assert tokens_before - 10 <= spent <= tokens_after - 10
    assert value(found, "rate_limit_waits_total", account="main") == 1

    assert value(found, "outbox_pending", subscription="good") == 0
    assert value(found, "outbox_pending", subscription="guarded") == 0
    assert value(found, "dead_letters", subscription="guarded") == 3
    assert value(found, "dead_letters", subscription="good") == 0
    assert value(found, "subscription_state", subscription="good", state="ok") == 1
    assert value(found, "subscription_state", subscription="good", state="failing") == 0

    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert page.status_code == 200 and 'data-subscription="guarded"' in page.text
    for secret in (API_TOKEN, SIGNING_SECRET, SIGNING_SECRET.removeprefix("whsec_")):
        assert secret not in answer.text and secret not in page.text


@pytest.fixture
async def scratch_postgres() -> AsyncIterator[str]:
    """A migrated PostgreSQL database of its own, which the test may drop."""
    name = f"pdt_gone_{uuid.uuid4().hex[:10]}"
    server = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    await asyncio.to_thread(database.upgrade, rendered)
    try:
        yield rendered
    finally:
        with server.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def admin_config(database_url: str, **admin_keys: Any) -> config_module.Config:
    raw = {
        "database": {"url": database_url},
        "accounts": [{"name": "main", "api_token": API_TOKEN}],
        "subscriptions": [
            {
                "name": "won",
                "account": "main",
                "trigger": "deal.added",
                "callback_url": "http://127.0.0.1:9/h",
                "secret": SIGNING_SECRET,
            }
        ],
        "admin": {"listen": "127.0.0.1:0", **admin_keys},
    }
    return config_module.parse(raw, "c.toml", Path("/nonexistent"))


async def test_readyz_says_why_it_is_not_ready(scratch_postgres: str) -> None:
    config = admin_config(scratch_postgres)
    recorder = metrics.PrometheusMetrics()
    scheduler = [True]
    engine = database.create_engine(scratch_postgres)
    feeds = plan.feeds(config)
    app = listener.Admin(
        config, engine, recorder, feeds, lambda: scheduler[0], listening_on=LISTENING_ON
    ).app()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url=ADMIN_URL
        ) as client:
            assert (await client.get("/readyz")).status_code == 200
            scheduler[0] = False
            answer = await client.get("/readyz")
            assert (answer.status_code, answer.text) == (503, "not ready\nscheduler: not running\n")
            scheduler[0] = True

            server = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            name = sqlalchemy.engine.make_url(scratch_postgres).database
            with server.connect() as connection:
                connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            server.dispose()
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.text.startswith("not ready\ndatabase: cannot be queried (")
            assert (await client.get("/healthz")).status_code == 200, "alive, though not ready"
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200 and "outbox_pending" not in scrape.text
            page = await client.get("/")
            assert page.status_code == 503
            assert "Not available: the database cannot be read (" in page.text
    finally:
        await engine.dispose()


async def test_readyz_fails_when_a_feed_fails_past_three_intervals(database_url: str) -> None:
    config = admin_config(database_url)
    clock = FakeClock()
    recorder = metrics.PrometheusMetrics(clock=clock)
    engine = database.create_engine(database_url)
    app = listener.Admin(
        config, engine, recorder, plan.feeds(config), lambda: True, listening_on=LISTENING_ON
    ).app()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url=ADMIN_URL
        ) as client:
            recorder.poll("main", "deals", ok=False)
            clock.advance(3 * 120)
            assert (await client.get("/readyz")).status_code == 200
            clock.advance(1)
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert "subscription 'won': polls failing for 361s" in answer.text
    finally:
        await engine.dispose()


async def test_the_bearer_token_guards_everything_but_healthz(
    tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    config = admin_config(database_url, token_file=str(tmp_path / "admin-token"))
    engine = database.create_engine(database_url)
    state = listener.Admin(
        config, engine, metrics.PrometheusMetrics(), [], lambda: True, listening_on=LISTENING_ON
    )
    app = state.app()
    good = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url=ADMIN_URL
        ) as client:
            assert (await client.get("/healthz")).status_code == 200
            for path in ("/readyz", "/metrics", "/"):
                for headers in (
                    {},
                    {"authorization": "Bearer wrong"},
                    {"authorization": ADMIN_TOKEN},
                ):
                    answer = await client.get(path, headers=headers)
                    assert answer.status_code == 401, (path, headers)
                    assert answer.headers["www-authenticate"].startswith("Bearer")
                    assert ADMIN_TOKEN not in answer.text
                answer = await client.get(path, headers=good)
                assert answer.status_code == 200, path
                assert ADMIN_TOKEN not in answer.text
            form = {admin_page.CSRF_FIELD: state.csrf_token, "subscription": "won"}
            assert (await client.post("/replay", data=form)).status_code == 401
            answer = await client.post("/replay", data=form, headers=good)
            assert (answer.status_code, answer.headers["location"]) == (303, "./?replayed=0")
    finally:
        await engine.dispose()


async def test_replay_refuses_cross_site_posts(database_url: str) -> None:
    config = admin_config(database_url)
    engine = database.create_engine(database_url)
    state = listener.Admin(
        config, engine, metrics.PrometheusMetrics(), [], lambda: True, listening_on=LISTENING_ON
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(state.app()), base_url=ADMIN_URL
        ) as client:
            form = {"subscription": "won"}
            assert (await client.post("/replay", data=form)).status_code == 403, "no CSRF token"
            wrong = {**form, admin_page.CSRF_FIELD: "guess"}
            assert (await client.post("/replay", data=wrong)).status_code == 403
            right = {**form, admin_page.CSRF_FIELD: state.csrf_token}
            elsewhere = {"origin": "https://evil.example"}
            assert (await client.post("/replay", data=right, headers=elsewhere)).status_code == 403
            same = {"origin": ADMIN_URL}
            assert (await client.post("/replay", data=right, headers=same)).status_code == 303
            assert (await client.get("/replay")).status_code == 405, "GET changes nothing"
    finally:
        await engine.dispose()


def letter(event_id: str, subscription: str, dead_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "subscription": subscription,
        "event_type": "deal.added",
        "item_id": event_id.removeprefix("msg_"),
        "body": '{"type": "deal.added"}',
        "created_at": dead_at - timedelta(days=3),
        "attempts": 12,
        "last_status": 500,
        "last_error": "callback returned 500 Internal Server Error",
        "dead_at": dead_at,
        "state": tables.STATE_DEAD,
        "next_attempt_at": dead_at,
    }


async def test_replay_moves_dead_letters_back_once(database_url: str) -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    engine = database.create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                tables.deliveries.insert(),
                [
                    letter("msg_1", "a", now),
                    letter("msg_2", "a", now),
                    letter("msg_3", "b", now),
                ],
            )
            ids = dict(
                (await connection.execute(
                    select(tables.deliveries.c.event_id, tables.deliveries.c.id)
                )).all()
            )  # fmt: skip
        assert await page_actions.replay(engine, ids=[ids["msg_3"]], now=now) == 1
        assert await page_actions.replay(engine, ids=[ids["msg_3"]], now=now) == 0
        assert await page_actions.replay(engine, subscription="a", now=now) == 2
        assert await page_actions.replay(engine, subscription="a", now=now) == 0
        async with engine.connect() as connection:
            rows = (await connection.execute(select(tables.deliveries))).all()
        assert sorted(r.event_id for r in rows) == ["msg_1", "msg_2", "msg_3"]
        for row in rows:
            assert (row.state, row.attempts, row.next_attempt_at) == (tables.STATE_PENDING, 0, now)
            assert row.created_at == now - timedelta(days=3), "detection time kept"
        # The same event dead again and replayed again: still one row in the outbox.
        async with engine.begin() as connection:
            await connection.execute(
                tables.deliveries.update()
                .where(tables.deliveries.c.event_id == "msg_1")
                .values(state=tables.STATE_DEAD, dead_at=now)
            )
        assert await page_actions.replay(engine, subscription="a", now=now) == 1
        async with engine.connect() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(tables.deliveries)
                .where(tables.deliveries.c.event_id == "msg_1")
            )
        assert count == 1
        with pytest.raises(ValueError, match="give ids, a subscription"):
            await page_actions.replay(engine)
    finally:
        await engine.dispose()


async def test_a_taken_admin_port_is_one_clear_error(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = admin_config(database_url)
        config = config.model_copy(
            update={"admin": config_module.AdminConfig(listen=f"127.0.0.1:{port}")}
        )
        engine = database.create_engine(database_url)
        try:
            with pytest.raises(AdminListenError) as caught:
                async with listener.serving(config, engine, metrics.PrometheusMetrics(), [], bool):
                    pass
        finally:
            await engine.dispose()
    assert str(caught.value) == (
        f"admin.listen: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
