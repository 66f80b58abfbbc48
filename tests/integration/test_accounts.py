"""Every account's client sends on one shared HTTP client, each request with its own account's
API root and token, read when it is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import config
from daemon.dev.sandbox import Sandbox
from daemon.errors import PipedriveAuthError
from daemon.service import accounts
from tests.conftest import API_TOKEN

OTHER_TOKEN = "fedcba9876543210fedcba9876543210fedcba98"


def _config(tmp_path: Path, *entries: dict[str, Any]) -> config.Config:
    return config.parse(
        {"database": {"url": "sqlite://"}, "accounts": list(entries)}, "c.toml", tmp_path
    )


async def test_each_account_sends_its_own_token_to_its_own_root(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    both = _config(
        tmp_path,
        {"name": "right", "api_token": API_TOKEN, "base_url": sandbox.base_url},
        # /api/v1/... is the sandbox's alias of /v1/...: the root's path is this account's.
        {"name": "wrong", "api_token": OTHER_TOKEN, "base_url": f"{sandbox.base_url}/api"},
    )
    async with accounts.open_accounts(both) as opened:
        me = await opened.clients["right"].get("/v1/users/me")
        with pytest.raises(PipedriveAuthError) as refused:
            await opened.clients["wrong"].get("/v1/users/me")
    assert type(me["id"]) is int
    assert [(c.path, c.token_valid) for c in sandbox.calls] == [
        ("/v1/users/me", True),
        ("/api/v1/users/me", False),
    ]
    assert OTHER_TOKEN not in str(refused.value)


async def test_a_rotated_token_file_is_read_at_the_next_call(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token_file = tmp_path / "pd-token"
    token_file.write_text(API_TOKEN + "\n")
    one = _config(
        tmp_path, {"name": "main", "api_token_file": str(token_file), "base_url": sandbox.base_url}
    )
    pool = accounts.AccountPool()
    try:
        await pool.apply(one)
        client = pool.clients["main"]
        await client.get("/v1/users/me")
        sandbox.token = OTHER_TOKEN  # Pipedrive issued a new token; the old one is refused
        token_file.write_text(OTHER_TOKEN + "\n")
        await client.get("/v1/users/me")
    finally:
        await pool.aclose()
    assert [c.token_valid for c in sandbox.calls] == [True, True]


async def test_a_reload_remakes_changed_accounts_on_the_same_pool(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    main = {"name": "main", "api_token": API_TOKEN, "base_url": sandbox.base_url}
    spare = {"name": "spare", "api_token": API_TOKEN, "base_url": sandbox.base_url}
    pool = accounts.AccountPool()
    try:
        await pool.apply(_config(tmp_path, main, spare))
        kept = pool.clients["main"]
        await pool.apply(_config(tmp_path, main, {**spare, "api_token": OTHER_TOKEN}))
        assert pool.clients["main"] is kept, "an unchanged account keeps its rate limiter"
        with pytest.raises(PipedriveAuthError):
            await pool.clients["spare"].get("/v1/users/me")
        await pool.apply(_config(tmp_path, main))
        assert set(pool.clients) == set(pool.caches) == {"main"}
        await kept.get("/v1/users/me")
    finally:
        await pool.aclose()
    assert [c.token_valid for c in sandbox.calls] == [False, True]


def test_each_account_waits_at_most_one_cycle_of_its_fastest_feed(tmp_path: Path) -> None:
    loaded = config.parse(
        {
            "database": {"url": "sqlite://"},
            "accounts": [
                {"name": "fast", "api_token": API_TOKEN},
                {"name": "idle", "api_token": API_TOKEN},
            ],
            "subscriptions": [
                {
                    "name": f"s{interval}",
                    "account": "fast",
                    "trigger": "deal.added",
                    "callback_url": "https://hooks.example.com/x",
                    "poll_interval": interval,
                }
                for interval in (300, 30)
            ],
        },
        "c.toml",
        tmp_path,
    )
    assert accounts.max_wait_in_call_s(loaded) == {"fast": 30, "idle": 120}
