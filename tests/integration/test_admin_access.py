"""Who may use the admin app: without a token only requests naming the listener in `Host` (DNS
rebinding), a token re-read at reload, and replay ids that are ids."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon import metrics
from daemon.db import database, outbox_admin, tables
from daemon.status import admin_page, listener
from tests.integration.test_admin import LISTENING_ON, admin_config, letter

REBOUND = "http://attacker.test:9465"  # the attacker's name, re-pointed at 127.0.0.1
OLD_TOKEN = "the-old-admin-token-0123456789"
NEW_TOKEN = "the-new-admin-token-9876543210"


@pytest.fixture
async def dead_letter(database_url: str) -> AsyncIterator[tuple[AsyncEngine, int]]:
    """An engine on a database holding one dead letter of subscription 'won', and its id."""
    engine = database.create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                tables.deliveries.insert(), [letter("msg_1", "won", datetime.now(UTC))]
            )
            letter_id = await connection.scalar(select(tables.deliveries.c.id))
        assert isinstance(letter_id, int)
        yield engine, letter_id
    finally:
        await engine.dispose()


async def still_dead(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        state = await connection.scalar(select(tables.deliveries.c.state))
    return bool(state == tables.STATE_DEAD)


def admin_app(
    config: config_module.Config, engine: AsyncEngine, listening_on: tuple[str, int] = LISTENING_ON
) -> listener.Admin:
    return listener.Admin(
        config, engine, metrics.PrometheusMetrics(), [], lambda: True, listening_on=listening_on
    )


def client(state: listener.Admin, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(state.app()), base_url=base_url)


async def test_a_rebound_name_reads_and_replays_nothing(
    database_url: str, dead_letter: tuple[AsyncEngine, int]
) -> None:
    engine, _ = dead_letter
    state = admin_app(admin_config(database_url), engine)
    form = {admin_page.CSRF_FIELD: state.csrf_token, "subscription": "won"}
    async with client(state, REBOUND) as rebound:
        for path in ("/", "/metrics", "/readyz", "/healthz"):
            answer = await rebound.get(path)
            assert answer.status_code == 403, path
            assert answer.text.startswith(
                "refused: Host 'attacker.test:9465' does not name this listener; use one of "
                "http://127.0.0.1:9465/, http://localhost:9465/"
            )
            assert "won" not in answer.text
        # Origin and Host agree, as they do for a rebinding page: still refused.
        answer = await rebound.post("/replay", data=form, headers={"origin": REBOUND})
        assert answer.status_code == 403
    assert await still_dead(engine)
    async with client(state, "http://localhost:9465") as local:
        answer = await local.post("/replay", data=form, headers={"origin": "http://localhost:9465"})
        assert (answer.status_code, answer.headers["location"]) == (303, "./?replayed=1")
    assert not await still_dead(engine)


@pytest.mark.parametrize(
    ("listening_on", "allowed", "refused"),
    [
        (
            ("127.0.0.1", 9465),
            ["127.0.0.1:9465", "localhost:9465", "LocalHost:9465"],
            ["127.0.0.1:9466", "127.0.0.1", "localhost", "[::1]:9465", "localhost.:9465",
             "127.1:9465", "attacker.test:9465", "127.0.0.1:9465.attacker.test", ""],
        ),
        (("::1", 9465), ["[::1]:9465", "localhost:9465", "127.0.0.1:9465"], ["::1:9465"]),
        (("localhost", 80), ["localhost", "localhost:80", "127.0.0.1"], ["localhost:8080"]),
    ],
)  # fmt: skip
async def test_the_hosts_that_name_the_listener(
    listening_on: tuple[str, int], allowed: list[str], refused: list[str], tmp_path: Path
) -> None:
    engine = database.create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    state = admin_app(admin_config("sqlite://"), engine, listening_on)
    try:
        async with client(state, "http://ignored") as any_host:
            for host in allowed:
                answer = await any_host.get("/healthz", headers={"host": host})
                assert answer.status_code == 200, host
            for host in refused:
                answer = await any_host.get("/healthz", headers={"host": host})
                assert answer.status_code == 403, host
    finally:
        await engine.dispose()


async def test_with_a_token_any_host_may_ask(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "admin-token").write_text(OLD_TOKEN + "\n")
    config = admin_config(database_url, token_file=str(tmp_path / "admin-token"))
    engine = database.create_engine(database_url)
    state = admin_app(config, engine)
    try:
        # A browser never sends the token by itself; a proxy in front sends its own Host.
        async with client(state, "https://admin.example.com") as proxied:
            answer = await proxied.get("/readyz", headers={"authorization": f"Bearer {OLD_TOKEN}"})
            assert answer.status_code == 200
            assert (await proxied.get("/readyz")).status_code == 401
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "given",
    ["²", "١٢", "12345678901234567890", "9223372036854775808", "0", "-1", " 1", "1e3", "0x1"],
)
async def test_replay_ids_are_ascii_numbers_in_range(
    given: str, database_url: str, dead_letter: tuple[AsyncEngine, int]
) -> None:
    engine, _ = dead_letter
    state = admin_app(admin_config(database_url), engine)
    form = {admin_page.CSRF_FIELD: state.csrf_token, "id": given}
    async with client(state, "http://127.0.0.1:9465") as local:
        answer = await local.post("/replay", data=form)
    assert (answer.status_code, answer.text) == (
        400,
        "id: must be a dead letter's number, 1 to 9223372036854775807 in ASCII digits\n",
    )
    assert await still_dead(engine)


async def test_the_largest_id_is_asked_and_the_letter_replays(
    database_url: str, dead_letter: tuple[AsyncEngine, int]
) -> None:
    engine, letter_id = dead_letter
    state = admin_app(admin_config(database_url), engine)
    async with client(state, "http://127.0.0.1:9465") as local:
        for given, moved in ((str(outbox_admin.MAX_ID), 0), (str(letter_id), 1)):
            form = {admin_page.CSRF_FIELD: state.csrf_token, "id": given}
            answer = await local.post("/replay", data=form)
            assert (answer.status_code, answer.headers["location"]) == (
                303,
                f"./?replayed={moved}",
            )
        page = await local.get("/?replayed=²")
        assert page.status_code == 200 and "queued for delivery again" not in page.text


def with_admin(config: config_module.Config, **admin: Any) -> config_module.Config:
    return config.model_copy(update={"admin": config_module.AdminConfig(**admin)})


async def test_a_reload_reads_the_token_file_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token_file = tmp_path / "admin-token"
    token_file.write_text(OLD_TOKEN + "\n")
    config = admin_config("sqlite://", token_file=str(token_file))
    engine = database.create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    state = admin_app(config, engine)
    old = {"authorization": f"Bearer {OLD_TOKEN}"}
    new = {"authorization": f"Bearer {NEW_TOKEN}"}
    try:
        async with client(state, "http://127.0.0.1:9465") as local:
            assert (await local.get("/metrics", headers=old)).status_code == 200
            token_file.write_text(NEW_TOKEN + "\n")
            assert (await local.get("/metrics", headers=old)).status_code == 200, "until reload"
            state.reconfigure(config, [])
            assert (await local.get("/metrics", headers=old)).status_code == 401
            assert (await local.get("/metrics", headers=new)).status_code == 200

            token_file.unlink()  # gone between the reload's check and its use: kept
            state.reconfigure(config, [])
            assert (await local.get("/metrics", headers=new)).status_code == 200

            state.reconfigure(with_admin(config, listen="127.0.0.1:0"), [])  # no token_file
            assert (await local.get("/metrics")).status_code == 200, "loopback: Host is the rule"
    finally:
        await engine.dispose()
    actions = [getattr(r, "action", "") for r in caplog.records]
    assert [action for action in actions if action.startswith("reload.")] == [
        "reload.admin_token_changed",
        "reload.admin_token_kept",
        "reload.admin_token_changed",
    ]
    assert all(OLD_TOKEN not in r.getMessage() and NEW_TOKEN not in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_a_listener_off_loopback_keeps_its_token_until_a_restart(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(OLD_TOKEN)
    config = admin_config("sqlite://", token_file=str(token_file))
    config = with_admin(config, listen="0.0.0.0:9465", token_file=str(token_file))
    engine = database.create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    state = admin_app(config, engine, ("0.0.0.0", 9465))
    try:
        # The new config moves the listener to loopback without a token: valid, but the
        # running listener is still on 0.0.0.0 until a restart.
        state.reconfigure(with_admin(config, listen="127.0.0.1:9465"), [])
        async with client(state, "http://192.0.2.7:9465") as remote:
            assert (await remote.get("/metrics")).status_code == 401
            answer = await remote.get("/metrics", headers={"authorization": f"Bearer {OLD_TOKEN}"})
            assert answer.status_code == 200
    finally:
        await engine.dispose()
