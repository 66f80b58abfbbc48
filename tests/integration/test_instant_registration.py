"""Instant mode's webhook registration against the sandbox over loopback HTTP, recorded in real
SQLite and PostgreSQL: one webhook per account with our credentials, repaired when Pipedrive
deletes or deactivates it, deleted when no longer wanted, never touching another tool's."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon.db import installation, instant_webhooks
from daemon.dev.sandbox import Sandbox
from daemon.instant import decide, registration
from daemon.pipedrive import webhooks
from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.pipedrive.rate_limit import AccountRateLimiter
from tests.conftest import API_TOKEN

PUBLIC_URL = "http://127.0.0.1:9466/pipedrive"
WEBHOOKS = "/v1/webhooks"


def make_config(
    sandbox: Sandbox, *, instant: dict[str, Any] | None = None, opt_in: bool = True
) -> config_module.Config:
    """`instant`: the `[instant]` keys besides listen and public_url (None: no section);
    `opt_in`: the account's `instant`."""
    base_url = sandbox.base_url  # type: ignore[attr-defined]
    account = {"name": "main", "api_token": API_TOKEN, "base_url": base_url, "instant": opt_in}
    raw: dict[str, Any] = {"database": {"url": "sqlite:///unused.db"}, "accounts": [account]}
    if instant is not None:
        raw["instant"] = {"listen": "127.0.0.1:9466", "public_url": PUBLIC_URL, **instant}
    return config_module.parse(raw, "config.toml", Path("."))


@contextlib.asynccontextmanager
async def client_for(sandbox: Sandbox, account: str = "main") -> AsyncIterator[PipedriveClient]:
    base_url = sandbox.base_url  # type: ignore[attr-defined]
    async with PipedriveClient.http_client(base_url, lambda: SecretStr(API_TOKEN)) as http:
        yield PipedriveClient(
            http,
            account=account,
            limiter=AccountRateLimiter(10_000),
            retry=RetryOptions(attempts=1),
        )


async def repair(
    engine: AsyncEngine, config: config_module.Config, sandbox: Sandbox
) -> registration.Outcome:
    async with client_for(sandbox) as client:
        (outcome,) = await registration.repair_all(engine, config, {"main": client})
    return outcome


def listed(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [w for w in sandbox.webhooks if w["remove_time"] is None]


async def test_registers_one_webhook_with_our_credentials_once(
    engine: AsyncEngine, sandbox: Sandbox
) -> None:
    config = make_config(sandbox, instant={})
    outcome = await repair(engine, config, sandbox)

    (webhook,) = listed(sandbox)
    row = await instant_webhooks.load(engine, "main")
    assert row is not None
    installation_id = await installation.installation_id(engine, sandbox.now)
    assert outcome == registration.Outcome("main", registration.CREATED, webhook["id"])
    assert webhook["subscription_url"] == f"{PUBLIC_URL}/main"
    assert (webhook["event_action"], webhook["event_object"], webhook["version"]) == (
        "*",
        "*",
        "2.0",
    )
    assert webhook["name"] == decide.webhook_name(installation_id, "main")
    assert webhook["http_auth_user"] == row.http_auth_user
    assert webhook["http_auth_password"] == row.http_auth_password.get_secret_value()
    assert len(row.http_auth_password.get_secret_value()) >= 40
    assert (row.state, row.webhook_id, row.last_error) == ("registered", webhook["id"], None)
    assert row.subscription_url == f"{PUBLIC_URL}/main"
    assert row.registered_at is not None and row.checked_at is not None

    again = await repair(engine, config, sandbox)
    assert again == registration.Outcome("main", registration.UNCHANGED, webhook["id"])
    assert sandbox.calls_to("POST", WEBHOOKS) == 1
    assert sandbox.calls_to("GET", WEBHOOKS) == 2
    assert len(listed(sandbox)) == 1
    kept = await instant_webhooks.load(engine, "main")
    assert kept is not None and kept.http_auth_password == row.http_auth_password


@pytest.mark.parametrize("gone", ["deleted", "deactivated"])
async def test_a_webhook_pipedrive_deleted_or_deactivated_is_made_again(
    engine: AsyncEngine, sandbox: Sandbox, gone: str
) -> None:
    config = make_config(sandbox, instant={})
    first = await repair(engine, config, sandbox)
    assert first.webhook_id is not None
    if gone == "deleted":
        sandbox.delete_webhook(first.webhook_id)
    else:
        sandbox.deactivate_webhook(first.webhook_id)

    outcome = await repair(engine, config, sandbox)

    (webhook,) = listed(sandbox)
    assert webhook["id"] != first.webhook_id and webhook["is_active"] == 1
    assert outcome.did == registration.RECREATED
    assert outcome.deleted == (1 if gone == "deactivated" else 0)
    row = await instant_webhooks.load(engine, "main")
    assert row is not None and (row.state, row.webhook_id) == ("registered", webhook["id"])
    assert webhook["http_auth_password"] == row.http_auth_password.get_secret_value()


async def test_a_changed_public_url_moves_the_webhook(
    engine: AsyncEngine, sandbox: Sandbox
) -> None:
    first = await repair(engine, make_config(sandbox, instant={}), sandbox)
    moved = make_config(sandbox, instant={"public_url": "http://127.0.0.1:9999/in/"})

    outcome = await repair(engine, moved, sandbox)

    (webhook,) = listed(sandbox)
    assert webhook["subscription_url"] == "http://127.0.0.1:9999/in/main"
    assert (outcome.did, outcome.deleted) == (registration.RECREATED, 1)
    assert webhook["id"] != first.webhook_id


async def test_another_tools_webhooks_are_never_touched(
    engine: AsyncEngine, sandbox: Sandbox
) -> None:
    # Another tool's at our very URL, and another installation of this daemon.
    zapier = sandbox.add_webhook(f"{PUBLIC_URL}/main", name="Zapier")
    other = sandbox.add_webhook(f"{PUBLIC_URL}/main", name=decide.webhook_name("f" * 32, "main"))
    config = make_config(sandbox, instant={})

    await repair(engine, config, sandbox)
    await repair(engine, make_config(sandbox), sandbox)  # [instant] gone: ours is deleted
    async with client_for(sandbox) as client:
        installation_id = await installation.installation_id(engine, sandbox.now)
        assert await registration.remove(client, installation_id, "main") == 0

    assert [w["id"] for w in listed(sandbox)] == [zapier["id"], other["id"]]
    assert sandbox.calls_to("DELETE", f"{WEBHOOKS}/{zapier['id']}") == 0
    assert sandbox.calls_to("DELETE", f"{WEBHOOKS}/{other['id']}") == 0


async def test_the_limit_of_40_is_recorded_not_raised(
    engine: AsyncEngine, sandbox: Sandbox
) -> None:
    for number in range(40):
        sandbox.add_webhook(f"https://elsewhere.example/{number}", name=f"tool {number}")
    config = make_config(sandbox, instant={})

    outcome = await repair(engine, config, sandbox)

    assert outcome.did == registration.FAILED
    assert outcome.error is not None and "Webhooks limit reached" in outcome.error
    assert outcome.exit_code == 10
    row = await instant_webhooks.load(engine, "main")
    assert row is not None
    assert (row.state, row.webhook_id) == ("failed", None)
    assert row.last_error == outcome.error
    assert row.http_auth_password.get_secret_value() not in row.last_error

    # Room is made: the next repair registers it.
    sandbox.delete_webhook(listed(sandbox)[0]["id"])
    assert (await repair(engine, config, sandbox)).did == registration.CREATED


async def test_an_account_that_opts_out_has_ours_deleted(
    engine: AsyncEngine, sandbox: Sandbox
) -> None:
    await repair(engine, make_config(sandbox, instant={}), sandbox)
    opted_out = make_config(sandbox, instant={}, opt_in=False)
    assert listed(sandbox)

    outcome = await repair(engine, opted_out, sandbox)

    assert (outcome.did, outcome.deleted) == (registration.REMOVED, 1)
    assert listed(sandbox) == []
    row = await instant_webhooks.load(engine, "main")
    assert row is not None and (row.state, row.webhook_id) == ("removed", None)
    # Nothing left to do: no call is spent on an account that wants none.
    sandbox.clear_calls()
    assert (await repair(engine, opted_out, sandbox)).did == registration.NOTHING
    assert sandbox.calls_to("GET", WEBHOOKS) == 0


async def test_without_instant_no_call_is_spent(engine: AsyncEngine, sandbox: Sandbox) -> None:
    outcome = await repair(engine, make_config(sandbox), sandbox)
    assert outcome.did == registration.NOTHING
    assert sandbox.calls_to("GET", WEBHOOKS) == 0
    assert await instant_webhooks.load(engine, "main") is None


async def test_the_password_is_in_no_log_line_outcome_or_error(
    engine: AsyncEngine, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config(sandbox, instant={})
    outcomes = [await repair(engine, config, sandbox)]
    first = outcomes[0].webhook_id
    assert first is not None
    sandbox.deactivate_webhook(first)
    outcomes.append(await repair(engine, config, sandbox))
    sandbox.delete_webhook(listed(sandbox)[0]["id"])  # ours: re-creating it meets the limit
    for number in range(40):
        sandbox.add_webhook(f"https://elsewhere.example/{number}", name=f"tool {number}")
    outcomes.append(await repair(engine, config, sandbox))
    assert outcomes[-1].did == registration.FAILED

    row = await instant_webhooks.load(engine, "main")
    assert row is not None
    password = row.http_auth_password.get_secret_value()
    assert password not in repr(row)
    assert all(password not in repr(outcome) for outcome in outcomes)
    # aiosqlite logs every statement's parameters at DEBUG, the credentials' INSERT too:
    # daemon.logs must quiet it as it does httpx (see the report); every other logger here.
    ours = [record for record in caplog.records if not record.name.startswith("aiosqlite")]
    assert any(record.name.startswith("daemon") for record in ours)
    assert all(password not in record.getMessage() for record in ours)
    async with client_for(sandbox) as client:
        shown = await webhooks.list_webhooks(client)
    assert all(password not in repr(webhook) for webhook in shown)
