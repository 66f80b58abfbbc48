"""`webhooks list | register | remove` against the sandbox over loopback HTTP, on real SQLite
and PostgreSQL: what each prints, its exit code, and that no output shows our password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from daemon.cli import main
from daemon.dev.sandbox import Sandbox
from tests.conftest import API_TOKEN

PUBLIC_URL = "http://127.0.0.1:9466/pipedrive"
INSTANT = f'[instant]\nlisten = "127.0.0.1:9466"\npublic_url = "{PUBLIC_URL}"\n'


def write_config(path: Path, database_url: str, sandbox: Sandbox, *, instant: bool) -> Path:
    base_url = sandbox.base_url  # type: ignore[attr-defined]
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        + (INSTANT if instant else "")
        + f'\n[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\nbase_url = "{base_url}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def with_instant(tmp_path: Path, database_url: str, sandbox: Sandbox) -> Path:
    return write_config(tmp_path / "config.toml", database_url, sandbox, instant=True)


@pytest.fixture
def without_instant(tmp_path: Path, database_url: str, sandbox: Sandbox) -> Path:
    return write_config(tmp_path / "plain.toml", database_url, sandbox, instant=False)


def invoke(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main.main, ["--config", str(config_path), "webhooks", *args])


def ok(config_path: Path, *args: str) -> str:
    result = invoke(config_path, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_register_then_list_then_remove(with_instant: Path, sandbox: Sandbox) -> None:
    zapier = sandbox.add_webhook("https://zapier.example/hook?token=abc", name="Zapier")
    outputs = [ok(with_instant, "register")]
    (ours,) = [w for w in sandbox.webhooks if w["name"] != "Zapier"]
    assert outputs[0] == f"account 'main': created webhook {ours['id']}\n"

    outputs.append(ok(with_instant, "register", "--account", "main"))
    assert outputs[-1] == f"account 'main': unchanged webhook {ours['id']}\n"
    assert sandbox.calls_to("POST", "/v1/webhooks") == 1

    outputs.append(ok(with_instant, "list", "--json"))
    rows = json.loads(outputs[-1])
    assert [set(row) for row in rows] == [
        {"account", "id", "url", "event", "active", "last_delivery_at", "last_http_status", "ours"}
    ] * 2
    by_id = {row["id"]: row for row in rows}
    assert by_id[zapier["id"]] == {
        "account": "main",
        "id": zapier["id"],
        "url": "https://zapier.example/hook?token=***",  # another tool's token stays hidden
        "event": "*.*",
        "active": True,
        "last_delivery_at": None,
        "last_http_status": None,
        "ours": False,
    }
    assert by_id[ours["id"]]["ours"] is True
    assert by_id[ours["id"]]["url"] == f"{PUBLIC_URL}/main"

    outputs.append(ok(with_instant, "list"))
    header, *lines = outputs[-1].splitlines()
    assert header.split() == [
        "account", "id", "ours", "active", "event", "last_delivery_at", "last_http_status", "url",
    ]  # fmt: skip
    assert len(lines) == 2

    outputs.append(ok(with_instant, "remove"))
    assert outputs[-1] == "removed 1\n"
    assert [w["id"] for w in sandbox.webhooks if w["remove_time"] is None] == [zapier["id"]]
    outputs.append(ok(with_instant, "remove"))
    assert outputs[-1] == "removed 0\n"

    password = ours["http_auth_password"]
    assert password and all(password not in output for output in outputs)


def test_register_needs_instant_but_list_and_remove_do_not(
    with_instant: Path, without_instant: Path, sandbox: Sandbox
) -> None:
    ok(with_instant, "register")

    refused = invoke(without_instant, "register")
    assert refused.exit_code == 3
    assert "no [instant] section" in refused.stderr
    assert refused.stdout == ""

    assert len(json.loads(ok(without_instant, "list", "--json"))) == 1
    assert ok(without_instant, "remove") == "removed 1\n"


def test_the_limit_is_a_clear_error_and_pipedrives_exit_code(
    with_instant: Path, sandbox: Sandbox
) -> None:
    for number in range(40):
        sandbox.add_webhook(f"https://elsewhere.example/{number}", name=f"tool {number}")

    result = invoke(with_instant, "register")

    assert result.exit_code == 10
    assert result.stdout == ""
    assert "account 'main': failed:" in result.stderr
    assert "Webhooks limit reached" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_account_is_a_bad_argument(with_instant: Path, sandbox: Sandbox) -> None:
    for command in ("list", "register", "remove"):
        result = invoke(with_instant, command, "--account", "nope")
        assert result.exit_code == 2
        assert "no account named 'nope' (known: main)" in result.stderr
    assert sandbox.calls_to("GET", "/v1/webhooks") == 0
