"""`[instant]` and `accounts[].instant`: defaults, the public URL's rules, reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import config
from daemon.errors import ConfigError
from daemon.service import reload

BASE: dict[str, Any] = {
    "database": {"url": "sqlite:///x.db"},
    "accounts": [{"name": "main", "api_token": "t"}, {"name": "eu", "api_token": "t"}],
}
INSTANT = {"listen": "127.0.0.1:9466", "public_url": "https://hooks.example.com/pipedrive"}


def parse(raw: dict[str, Any]) -> config.Config:
    return config.parse(raw, "config.toml", Path("."))


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return caught.value.problems


def test_off_unless_set_and_defaults_when_set() -> None:
    assert parse(BASE).instant is None
    found = parse({**BASE, "instant": INSTANT})
    assert found.instant is not None
    assert found.instant.reconcile_interval == 600
    assert found.instant.repair_interval == 3600
    assert found.instant.coalesce == 1
    assert found.instant.address == ("127.0.0.1", 9466)
    assert [a.instant for a in found.accounts] == [True, True]


def test_durations_and_opt_out() -> None:
    raw = {
        **BASE,
        "instant": {**INSTANT, "reconcile_interval": "5m", "repair_interval": "2h", "coalesce": 0},
        "accounts": [{"name": "main", "api_token": "t", "instant": False}],
    }
    found = parse(raw)
    assert found.instant is not None
    assert (found.instant.reconcile_interval, found.instant.repair_interval) == (300, 7200)
    assert found.instant.coalesce == 0
    assert found.accounts[0].instant is False


@pytest.mark.parametrize(
    ("public_url", "subscription_url"),
    [
        ("https://hooks.example.com/pipedrive", "https://hooks.example.com/pipedrive/main"),
        ("https://hooks.example.com/pipedrive/", "https://hooks.example.com/pipedrive/main"),
        ("https://hooks.example.com", "https://hooks.example.com/main"),
        ("http://127.0.0.1:9466", "http://127.0.0.1:9466/main"),
        ("http://localhost:8080/in/", "http://localhost:8080/in/main"),
        ("http://[::1]:8080", "http://[::1]:8080/main"),
    ],
)
def test_the_account_is_appended(public_url: str, subscription_url: str) -> None:
    found = parse({**BASE, "instant": {**INSTANT, "public_url": public_url}}).instant
    assert found is not None
    assert found.subscription_url("main") == subscription_url


def test_an_account_name_is_quoted_in_the_url() -> None:
    found = parse({**BASE, "instant": INSTANT}).instant
    assert found is not None
    assert found.subscription_url("é u/1") == "https://hooks.example.com/pipedrive/%C3%A9%20u%2F1"


@pytest.mark.parametrize(
    ("public_url", "reason"),
    [
        ("http://hooks.example.com/p", "must be https"),
        ("http://10.0.0.1/p", "must be https"),
        ("ftp://hooks.example.com/p", "must be an https URL"),
        ("hooks.example.com/p", "must be an https URL"),
        ("https://hooks.example.com/p?x=1", "must not have a query or a fragment"),
        ("https://hooks.example.com/p#x", "must not have a query or a fragment"),
        ("https://u:secret@hooks.example.com/p", "must not hold credentials"),
        ("https://hooks.example.com:99999/p", "is not a valid URL"),
    ],
)
def test_a_bad_public_url_is_refused(public_url: str, reason: str) -> None:
    found = problems({**BASE, "instant": {**INSTANT, "public_url": public_url}})
    assert len(found) == 1
    assert found[0].startswith(f"instant.public_url: {reason}")
    assert "secret" not in found[0]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("listen", "9466", 'instant.listen: must be "host:port"'),
        ("repair_interval", "4s", "instant.repair_interval: must be >= 5"),
        ("coalesce", "2m", "instant.coalesce: must be <= 60"),
        ("reconcile_interval", 0.5, "instant.reconcile_interval: must be >= 1"),
        ("typo", 1, "instant.typo: unknown key"),
    ],
)
def test_bad_values_name_their_key(key: str, value: Any, problem: str) -> None:
    found = problems({**BASE, "instant": {**INSTANT, key: value}})
    assert [p[: len(problem)] for p in found] == [problem]


def test_listen_and_public_url_are_required() -> None:
    assert sorted(problems({**BASE, "instant": {}})) == [
        "instant.listen: is required",
        "instant.public_url: is required",
    ]


def test_a_reload_applies_instant_but_the_listen_address_needs_a_restart() -> None:
    off = parse(BASE)
    on = parse({**BASE, "instant": INSTANT})
    moved = parse({**BASE, "instant": {**INSTANT, "listen": "127.0.0.1:9467"}})
    slower = parse({**BASE, "instant": {**INSTANT, "repair_interval": "2h"}})
    assert reload.changes(off, on).restart_only == ["instant.listen"]
    assert reload.changes(on, off).restart_only == ["instant.listen"]
    assert reload.changes(on, moved).restart_only == ["instant.listen"]
    assert reload.changes(on, slower).restart_only == []
    assert "instant.listen" in reload.RESTART_ONLY
