"""Errors an operator can act on: one line, the right exit code, the right advice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.acceptance.test_cli import cli, start_daemon, write_daemon_config

ACCOUNT = '[[accounts]]\nname = "main"\napi_token = "${PDT_TEST_TOKEN}"\n'
SUBSCRIPTION = (
    '[[subscriptions]]\nname = "s"\naccount = "main"\ntrigger = "deal.added"\n'
    'callback_url = "https://hooks.example.com/x"\nsecret = "${PDT_TEST_SECRET}"\n'
)

SECRETS = {"PDT_TEST_TOKEN": "t", "PDT_TEST_SECRET": "whsec_" + "A" * 40}


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{url}"\n\n{ACCOUNT}\n{SUBSCRIPTION}', encoding="utf-8")
    return path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/proc")  # root writes through permissions, not into procfs
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _one_line(stderr: str, log_format: str) -> str:
    # Config warnings (here: a poll interval under the connector's) may come first.
    lines = [
        line
        for line in stderr.splitlines()
        if " WARNING " not in line and '"level": "warning"' not in line
    ]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    if log_format == "json":
        entry = json.loads(lines[0])
        assert entry["level"] == "error" and "exception" not in entry
        return str(entry["message"])
    return lines[0]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_database_that_cannot_be_opened_is_one_line_and_exit_4(
    tmp_path: Path, log_format: str
) -> None:
    folder = _read_only_dir(tmp_path)
    port = _closed_port()
    cases = {
        f"sqlite:///{folder}/pdt-test.db": (f"{folder}/pdt-test.db", "may this user write to it?"),
        f"postgresql+psycopg://postgres:DBPASS@127.0.0.1:{port}/test": (
            f"127.0.0.1:{port}/test",
            "Connection refused",
        ),
        "postgresql+psycopg://postgres:DBPASS@127.0.0.1:5432/pdt_missing_db": (
            "127.0.0.1:5432/pdt_missing_db",
            'database "pdt_missing_db" does not exist',
        ),
    }
    for url, (names, reason) in cases.items():
        config = _config(tmp_path, url)
        for command in ("run", "status"):
            result = cli("--log-format", log_format, "--config", str(config), command, env=SECRETS)
            assert result.returncode == 4, (url, command, result.stderr)
            line = _one_line(result.stderr, log_format)
            assert "cannot open database" in line and names in line and reason in line, line
            assert "DBPASS" not in line


def test_status_and_migrate_need_no_tokens_and_check_config_does(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    assert cli("--config", str(config), "migrate").returncode == 0
    status = cli("--config", str(config), "status", "--json")
    assert status.returncode == 1, status.stderr  # readable; no daemon runs on it
    assert json.loads(status.stdout)[0]["subscription"] == "s"
    checked = cli("--config", str(config), "check-config")
    assert checked.returncode == 3
    assert 'accounts[0] ("main").api_token: environment variable PDT_TEST_TOKEN is not set' in (
        checked.stderr
    )


def test_operator_commands_need_no_pipedrive_token(tmp_path: Path) -> None:
    """dead-letters, retry-now, subscriptions and schema only read or write the database: they
    work where the accounts' tokens (and the signing secrets) are not in the environment."""
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    assert cli("--config", str(config), "migrate").returncode == 0
    for args in (
        ["dead-letters", "list"],
        ["dead-letters", "list", "--json"],
        ["dead-letters", "replay", "--all"],
        ["dead-letters", "purge", "--older-than", "30d"],
        ["retry-now"],
        ["subscriptions", "disable", "s"],
        ["subscriptions", "enable", "s"],
        ["schema", "deal.added"],
    ):
        result = cli("--config", str(config), *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "PDT_TEST" not in result.stderr, (args, result.stderr)
    missing = cli("--config", str(config), "dead-letters", "show", "9999")
    assert missing.returncode == 2 and "9999" in missing.stderr, missing.stderr
    assert "PDT_TEST" not in missing.stderr


def test_a_downgrade_is_refused_with_the_right_advice(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    assert cli("--config", str(config), "migrate").returncode == 0
    with sqlite3.connect(tmp_path / "d.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    for command in ("run", "status", "migrate"):
        result = cli("--config", str(config), command, env=SECRETS)
        assert result.returncode == 4, (command, result.stderr)
        line = _one_line(result.stderr, "text")
        assert "0099_from_the_future, written by a newer release" in line
        assert "install that newer release again, or restore the backup" in line
        assert "run `pipedrive-triggers migrate`" not in line


def test_a_second_run_on_the_same_sqlite_database_refuses(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = write_daemon_config(
        tmp_path, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}], {}
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        deadline = time.monotonic() + 20
        while "started:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = cli("--config", str(config), "run", timeout=20)
        assert second.returncode == 4, second.stderr
        line = _one_line(second.stderr, "text")
        assert f"database {tmp_path / 'd.db'} is in use by another" in line
        assert f"pid {daemon.pid}" in line
        reader = cli("--config", str(config), "status")
        assert reader.returncode in (0, 1), "readers are not locked"
        assert "daemon: running" in reader.stdout
        renamed = cli("--config", str(config), "subscriptions", "rename", "deals", "other")
        assert renamed.returncode == 4 and "stop it first" in renamed.stderr
        # The rename after the stop needs something to move: the first poll's feed position.
        deadline = time.monotonic() + 20
        while not _has_state(tmp_path / "d.db", "deals") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    assert cli("--config", str(config), "subscriptions", "rename", "deals", "x").returncode == 0


def _has_state(database: Path, subscription: str) -> bool:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        query = "SELECT count(*) FROM subscription_state WHERE subscription = ?"
        return bool(connection.execute(query, (subscription,)).fetchone()[0])
