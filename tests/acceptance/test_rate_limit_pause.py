"""A 429 against the running daemon: a Retry-After is believed for long only when Pipedrive's
daily budget is known to be spent, a call never waits longer than a poll cycle for it, and
`status` shows the pause on every feed of the account."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import times
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.acceptance.test_cli import cli, start_daemon, write_daemon_config

CEILING_S = 90  # generous: the machine is shared; the tests wait for what they need

SUBSCRIPTIONS = [
    {"name": "deals", "trigger": "deal.added"},
    {"name": "acts", "trigger": "activity.added"},
]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CEILING_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def daemon_config(tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver) -> Iterator[Path]:
    config = write_daemon_config(tmp_path, sandbox, receiver, SUBSCRIPTIONS, {})
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        yield config
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def calls_after(sandbox: Sandbox, index: int, path: str) -> int:
    return sum(1 for c in sandbox.calls[index + 1 :] if c.path == path)


def test_a_huge_retry_after_with_budget_left_does_not_freeze_the_account(
    sandbox: Sandbox, daemon_config: Path
) -> None:
    wait_until(lambda: sandbox.calls_to("GET", "/api/v2/activities") >= 2, "the first polls")
    sandbox.faults.add(status=429, retry_after=999999, count=1, path="/api/v2/deals")
    wait_until(lambda: any(c.status == 429 for c in sandbox.calls), "the 429")
    limited = next(n for n, c in enumerate(sandbox.calls) if c.status == 429)
    # Pipedrive said nothing of its daily budget being spent (x-daily-ratelimit-token-remaining
    # is far from 0): the burst window's reset is believed, not 11 days.
    wait_until(
        lambda: (
            calls_after(sandbox, limited, "/api/v2/deals") >= 2
            and calls_after(sandbox, limited, "/api/v2/activities") >= 2
        ),
        "polls of both feeds after the 429",
    )


def test_a_spent_daily_budget_pauses_the_account_and_status_says_until_when(
    sandbox: Sandbox, daemon_config: Path
) -> None:
    wait_until(lambda: sandbox.calls_to("GET", "/api/v2/activities") >= 2, "the first polls")
    sandbox.set_limits(daily_tokens=1)  # the next call is over the company's daily budget

    def paused_everywhere() -> bool:
        result = cli("--config", str(daemon_config), "status", "--json")
        rows = json.loads(result.stdout)
        return all(row["paused_until"] and row["status"] == "failing" for row in rows)

    wait_until(paused_everywhere, "status to show the pause on every feed")
    rows = json.loads(cli("--config", str(daemon_config), "status", "--json").stdout)
    for row in rows:
        assert "daily token budget" in row["pause_reason"], row
        until = times.parse_rfc3339(row["paused_until"])
        assert (until.hour, until.minute, until.second) == (0, 0, 0), row  # UTC midnight
        assert "paused until" in row["last_error"], row
    refused = len(sandbox.calls)
    time.sleep(3)  # three poll intervals: not a call is made into a spent budget
    assert len(sandbox.calls) == refused
    table = cli("--config", str(daemon_config), "status")
    assert "paused until" in table.stdout and "daily token budget" in table.stdout
