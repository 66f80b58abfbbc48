"""The command line as users run it: a subprocess, its exit code and what it prints."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.payloads import envelope
from tests import processes
from tests.conftest import API_TOKEN, config_text

REPO = Path(__file__).resolve().parents[2]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` as a process of its own (forked from a zygote that imported the
    package once: see tests/processes.py; the demo and sandbox tests start a new interpreter)."""
    return processes.run(list(args), env={**os.environ, **(env or {})}, timeout=timeout)


def start_daemon(config: Path, log: Path) -> processes.Child:
    with log.open("ab") as sink:
        return processes.start(
            ["--config", str(config), "run"], stdout=sink.fileno(), stderr=sink.fileno()
        )


def write_daemon_config(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    subscriptions: list[dict[str, Any]],
    delivery: dict[str, Any],
    database_url: str | None = None,
) -> Path:
    config = tmp_path / "config.toml"
    text = config_text(
        database_url=database_url or f"sqlite:///{tmp_path / 'd.db'}",
        api_url=sandbox.base_url,
        callback_url=receiver.base_url,
        subscriptions=subscriptions,
        delivery=delivery,
    )
    config.write_text(text, encoding="utf-8")
    return config


def wait_for_first_poll(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + 20
    while sandbox.calls_to("GET", "/api/v2/deals") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the first poll has committed its marks


def test_example_config_is_valid() -> None:
    result = cli(
        "--config", "config.example.toml", "check-config", env={"PIPEDRIVE_API_TOKEN": "x"}
    )
    assert result.returncode == 0, result.stderr
    assert "subscription 'new-deals': deal.added" in result.stdout


def test_check_config_masks_urls_and_warns_of_private_targets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        config_text(
            database_url="postgresql+psycopg://app:DBPASS@127.0.0.1/x",
            api_url="https://api.pipedrive.com",
            callback_url="https://hooks.example.com",
            subscriptions=[
                {
                    "name": "masked",
                    "trigger": "deal.added",
                    "callback_url": "https://user:PASSWORD@hooks.example.com/h?token=QUERYTOK",
                },
                {
                    "name": "local",
                    "trigger": "deal.added",
                    "callback_url": "http://127.0.0.1:8080/h",
                    "allow_private_targets": False,
                },
                {"name": "local-ok", "trigger": "deal.added", "callback_url": "http://10.0.0.5/h"},
            ],
        ),
        encoding="utf-8",
    )
    result = cli("--config", str(path), "check-config")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in ("PASSWORD", "QUERYTOK", "DBPASS"):
        assert secret not in output
    assert "-> https://***@hooks.example.com/h?token=*** (signed)" in result.stdout
    assert "database: postgresql+psycopg://***@127.0.0.1/x" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "allow_private_targets" in line]
    assert warnings == [
        "warning: subscription 'local': callback address 127.0.0.1 is a loopback address; "
        "deliveries will be refused unless it sets allow_private_targets = true"
    ]


def test_bad_config_names_file_key_value_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token = "t0k3n-secret"\n\n'
        '[[subscriptions]]\nname = "s"\naccount = "main"\ntrigger = "deal.exploded"\n'
        'callback_url = "http://x"\npoll_interval = 0\ncolour = "blue"\n',
        encoding="utf-8",
    )
    for command in ("check-config", "run"):
        result = cli("--config", str(path), command)
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert f'{path}: subscriptions[0] ("s").poll_interval: must be >= 1 (got 0)' in lines
        assert f'{path}: subscriptions[0] ("s").colour: unknown key' in lines
        assert any(
            line.startswith(f'{path}: subscriptions[0] ("s").trigger: ')
            and "'deal.exploded'" in line
            for line in lines
        )
        assert "t0k3n-secret" not in result.stderr


def test_config_problems_across_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token = "${NOT_SET_ANYWHERE}"\n', encoding="utf-8"
    )
    result = cli("--config", str(path), "check-config")
    assert result.returncode == 3
    assert (
        'accounts[0] ("main").api_token: environment variable NOT_SET_ANYWHERE is not set'
        in result.stderr
    )
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token = "t"\n[[subscriptions]]\nname = "s"\n'
        'account = "other"\ntrigger = "deal.added"\ncallback_url = "http://x"\n',
        encoding="utf-8",
    )
    result = cli("--config", str(path), "check-config")
    assert result.returncode == 3
    assert (
        "subscriptions[0] (\"s\").account: no [[accounts]] entry has this name (got 'other'"
        in result.stderr
    )
    missing = cli("--config", str(tmp_path / "nope.toml"), "check-config")
    assert missing.returncode == 3 and "cannot read the file" in missing.stderr
    assert cli("check-config").returncode == 3


def test_config_from_environment_variable_and_status(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token = "t"\n[[subscriptions]]\nname = "s"\n'
        'account = "main"\ntrigger = "activity.added"\ncallback_url = "http://x"\n',
        encoding="utf-8",
    )
    env = {"PIPEDRIVE_TRIGGERS_CONFIG": str(path)}
    before = cli("status", env=env)
    assert before.returncode == 4
    assert "run `pipedrive-triggers migrate`" in before.stderr
    assert cli("migrate", env=env).returncode == 0
    assert (tmp_path / "pipedrive-triggers.db").exists(), "default database sits next to the config"
    status = cli("status", "--json", env=env)
    assert status.returncode == 1, status.stderr  # no daemon has ever run on it
    row = json.loads(status.stdout)[0]
    assert (row["status"], row["daemon_running"]) == ("not started", False)


def test_sigkill_at_any_moment_loses_no_event(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    """Kill the daemon with SIGKILL while it delivers, restart it: every deal arrives."""
    config = write_daemon_config(
        tmp_path,
        sandbox,
        receiver,
        [
            {"name": "deals", "trigger": "deal.added"},
            {"name": "legacy", "trigger": "deal.added.legacy"},
        ],
        {
            "timeout": 2,
            "retry_schedule": ["0.5s"],
            "max_attempts": 50,
            "per_subscription_concurrency": 2,
        },
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    wait_for_first_poll(sandbox)
    deals = [sandbox.add_deal(title=f"crash test {n}")["id"] for n in range(30)]
    # A slow consumer (4 POSTs in flight, 0.3 s each) so that kills land mid-delivery.
    receiver.reply(200, times=500, delay_s=0.3)
    kills = 0
    arrived_at_kill = []
    for pause in (1.5, 1.2, 0.9):
        time.sleep(pause)
        arrived_at_kill.append(len(receiver.event_ids()))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        kills += 1
        more = [sandbox.add_deal(title=f"while down {kills}.{n}")["id"] for n in range(3)]
        deals += more
        daemon = start_daemon(config, log)
    try:
        origin = envelope.Origin(sandbox.store.company_id, installation="")  # additions: company
        expected = {
            origin.addition(name, trigger, deal)
            for deal in deals
            for name, trigger in (("deals", "deal.added"), ("legacy", "deal.added.legacy"))
        }
        assert receiver.wait_for(len(expected), timeout_s=60), log.read_text()[-3000:]
        assert receiver.event_ids() == expected
        assert any(0 < n < len(expected) for n in arrived_at_kill), arrived_at_kill
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert log.read_text().rstrip().endswith("stopped"), log.read_text()[-2000:]
    assert API_TOKEN not in log.read_text()


@pytest.mark.slow
def test_demo_shows_events_flowing() -> None:
    result = cli("demo", "--deals", "3", "--activities", "2", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # 3 deals x 2 subscriptions + 2 activities, then one stage change and one win.
    assert "summary: 10 of 10 events delivered" in result.stdout
    assert result.stdout.count("[signature ok]") >= 10
    assert "deal.stage_changed" in result.stdout and "deal.won" in result.stdout
    # What the daemon warns about on stderr is the demo's doing, and the demo says so.
    assert "poll more often than the connector's" in result.stderr
    assert "callback returned 503" in result.stderr
    assert "polling every 2s on purpose" in result.stdout, result.stdout
    assert "refuses 1 delivery with 503 on purpose" in result.stdout, result.stdout


def test_demo_instant_delivers_each_change_within_seconds_and_counts_tokens() -> None:
    """`demo --instant`: the daemon registers its webhook at the sandbox, whose calls make
    each change arrive within seconds although the feeds poll every 120 s."""
    result = cli("demo", "--instant", "--deals", "2", "--activities", "1", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # 2 deals x 2 subscriptions + 1 activity, then one stage change and one win.
    assert "summary: 7 of 7 events delivered" in result.stdout, result.stdout
    assert "webhook registered at the sandbox" in result.stdout, result.stdout
    assert "poll more often than the connector's" not in result.stderr
    delays = [float(d) for d in re.findall(r"\((\d+\.\d)s after the change\)", result.stdout)]
    assert len(delays) >= 7, result.stdout
    # Every event but the one refused once (retried after 1 s) in about a second; a loaded
    # machine gets some slack. Polling at 120 s would have taken a minute on average.
    assert sorted(delays)[-2] < 10.0, result.stdout
    assert re.search(
        r"tokens: \d+ spent in \d+s \(instant mode: .*\); polling every 120s would have spent "
        r"about \d+ over the same",
        result.stdout,
    ), result.stdout


def test_sigterm_lets_in_flight_deliveries_finish(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    """SIGTERM mid-POST: the POST completes, its outcome is recorded, nothing is sent twice."""
    config = write_daemon_config(
        tmp_path, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}], {"timeout": 5}
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    wait_for_first_poll(sandbox)
    receiver.reply(200, delay_s=2.0)  # the consumer takes 2 s to answer
    sandbox.add_deal(title="in flight at shutdown")
    deadline = time.monotonic() + 10
    while sandbox.calls_to("GET", "/api/v2/deals") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the next poll has found it and the POST is on its way
    time.sleep(0.5)
    terminated_at = time.time()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    assert len(receiver.attempts) == 1, "the in-flight POST finished before the exit"
    arrived = receiver.attempts[0].received_at  # before the consumer's 2 s of thinking
    assert arrived < terminated_at < arrived + 2.0, "SIGTERM came while the POST was open"
    assert log.read_text().rstrip().endswith("stopped")
    status = cli("--config", str(config), "status", "--json")
    row = json.loads(status.stdout)[0]
    assert (row["pending"], row["delivered"]) == (0, 1), "its outcome was recorded"


def test_standalone_sandbox_prints_url_and_token_and_serves_seeded_data() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "daemon", "sandbox", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    ) as sandbox:
        try:
            assert sandbox.stdout is not None
            url = sandbox.stdout.readline().split()[2]
            token = sandbox.stdout.readline().split()[2]
            assert url.startswith("http://127.0.0.1:")
            deals = httpx.get(f"{url}/api/v2/deals", headers={"x-api-token": token}, timeout=10)
            assert deals.status_code == 200
            assert len(deals.json()["data"]) > 5, "seeded deals"
            refused = httpx.get(f"{url}/api/v2/deals", headers={"x-api-token": "no"}, timeout=10)
            assert refused.status_code == 401
        finally:
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(timeout=10)


def test_status_in_a_pipe_prints_the_whole_table(tmp_path: Path) -> None:
    """Piped (not a terminal), `status` prints every column, each row on one line, however
    wide: nothing wrapped, nothing cut."""
    names = ["deals", "emea-enterprise-deals-moved-by-the-field-sales-team-to-negotiation-stage"]
    path = tmp_path / "c.toml"
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token = "t"\n'
        + "".join(
            f'[[subscriptions]]\nname = "{name}"\naccount = "main"\n'
            'trigger = "deal.stage_changed"\ncallback_url = "http://x"\n'
            for name in names
        ),
        encoding="utf-8",
    )
    assert cli("--config", str(path), "migrate").returncode == 0
    status = cli("--config", str(path), "status", env={"COLUMNS": "80"})
    assert status.returncode == 1, status.stderr  # never started
    assert "…" not in status.stdout and "left out" not in status.stdout, status.stdout
    header = next(line for line in status.stdout.splitlines() if "┃ subscription" in line)
    cells = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert cells == [
        "subscription", "trigger", "state", "last poll", "next poll", "lag", "pending",
        "retrying", "oldest", "next attempt", "dead",
    ], status.stdout  # fmt: skip
    rows = [line for line in status.stdout.splitlines() if "deal.stage_changed" in line]
    for name, row in zip(names, rows, strict=True):
        assert [cell.strip() for cell in row.split("│")[1:4]] == [
            name, "deal.stage_changed", "not started",
        ], status.stdout  # fmt: skip


def test_check_config_reports_every_kind_of_problem_in_one_run(tmp_path: Path) -> None:
    """A field's error, a token's, a duplicate name, an unknown filter key and an unknown
    account: one run of check-config names them all (no second round after a fix)."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[[accounts]]\nname = "main"\napi_token_file = "missing-token"\n'
        '[[accounts]]\nname = "other"\napi_token = ""\n'
        '[[subscriptions]]\nname = "deals"\naccount = "main"\ntrigger = "deal.added"\n'
        'callback_url = "http://x/h"\npoll_interval = 0\n'
        '[[subscriptions]]\nname = "deals"\naccount = "main"\ntrigger = "deal.won"\n'
        'callback_url = "http://x/h"\nfilter = { colour = "red" }\n'
        '[[subscriptions]]\nname = "late"\naccount = "nobody"\ntrigger = "deal.lost"\n'
        'callback_url = "http://x/h"\n',
        encoding="utf-8",
    )
    result = cli("--config", str(path), "check-config")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    expected = [
        'accounts[1] ("other").api_token: is empty',
        'subscriptions[0] ("deals").poll_interval: must be >= 1 (got 0)',
        'subscriptions[1] ("deals").name: duplicate subscription name',
        'subscriptions[1] ("deals").filter.colour: unknown filter key for deals',
        'subscriptions[2] ("late").account: no [[accounts]] entry has this name',
        f"accounts[0] (\"main\").api_token_file: file not found (got '{tmp_path}/missing-token')",
    ]
    for problem in expected:
        assert any(line.startswith(f"{path}: {problem}") for line in lines), result.stderr
    assert len(lines) == len(expected) and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            '[database]\nurl = "::::"\n',
            "database url: not a database URL such as sqlite:///path/to/file.db or "
            "postgresql+psycopg://user@host/dbname (got '::::')",
        ),
        (
            "",
            'subscriptions[0] ("s").callback_url: Input should be a valid URL, relative URL '
            "without a base (got '::::')",
        ),
    ],
)
def test_check_config_names_a_url_that_is_no_url(
    tmp_path: Path, section: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    callback = "::::" if not section else "http://x/h"
    path.write_text(
        f'{section}[[accounts]]\nname = "main"\napi_token = "t"\n[[subscriptions]]\nname = "s"\n'
        f'account = "main"\ntrigger = "deal.added"\ncallback_url = "{callback}"\n',
        encoding="utf-8",
    )
    result = cli("--config", str(path), "check-config")
    assert (result.returncode, result.stderr) == (3, f"{path}: {expected}\n")
    if section:  # the commands that open the database say the same, as a database error
        status = cli("--config", str(path), "status")
        assert (status.returncode, status.stderr) == (4, f"pipedrive-triggers: {expected}\n")


def test_a_taken_admin_port_is_one_line_and_exit_3(tmp_path: Path) -> None:
    """`run` with `[admin] listen` on a port another process holds: the clear line, the
    config's exit code, no traceback and no "crashed" (nothing crashed)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n'
            f'[admin]\nlisten = "127.0.0.1:{port}"\n'
            '[[accounts]]\nname = "main"\napi_token = "t"\nbase_url = "http://127.0.0.1:9"\n'
            '[[subscriptions]]\nname = "s"\naccount = "main"\ntrigger = "deal.added"\n'
            'callback_url = "http://x/h"\n',
            encoding="utf-8",
        )
        result = cli("--config", str(path), "run")
    assert result.returncode == 3, result.stderr
    assert (
        f"pipedrive-triggers: admin.listen: cannot listen on 127.0.0.1:{port} "
        "(Address already in use)\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr and "crashed" not in result.stderr, result.stderr
