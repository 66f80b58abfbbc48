"""`status --json --accounts`: what the daemon spent per account, counted and persisted."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox, costs, rate_limit
from tests.acceptance.test_cli import cli, start_daemon, write_daemon_config


def test_status_accounts_shows_calls_tokens_and_waits_of_today(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    sandbox.faults.add(status=429, retry_after=1, count=1, path_prefix="/api/v2/deals", skip=1)
    subs = [
        {"name": "deals", "trigger": "deal.added"},
        {"name": "acts", "trigger": "activity.added"},
    ]
    config = write_daemon_config(tmp_path, sandbox, receiver, subs, {})
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        deadline = time.monotonic() + 20
        while sandbox.calls_to("GET", "/api/v2/deals") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    calls = sandbox.calls
    # A 429 is a call refused at Pipedrive's gateway: counted, but no tokens spent.
    assert any(c.status == 429 for c in calls)
    expected_tokens = sum(
        costs.TOKEN_COSTS[(c.method, re.sub(r"/\d+$", "/{id}", c.path))]
        for c in calls
        if c.status != 429
    )
    result = cli("--config", str(config), "status", "--json", "--accounts")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    # The daily budget as the sandbox's headers last said it (the gateway stamps every answer).
    daily = {
        k: row.pop(k) for k in ("daily_tokens_remaining", "daily_tokens_limit", "daily_seen_at")
    }
    assert daily["daily_tokens_limit"] == rate_limit.DEFAULT_DAILY_TOKENS
    assert 0 < daily["daily_tokens_remaining"] < rate_limit.DEFAULT_DAILY_TOKENS
    assert daily["daily_seen_at"]  # when it was seen, RFC 3339
    assert [row] == [
        {
            "account": "main",
            "calls_today": len(calls),
            "tokens_today": expected_tokens,
            "rate_limit_waits": 1,  # the 429: its Retry-After was waited out
            "polled_by": None,  # the daemon stopped: it gave its lease up
            "instant": False,  # no [instant]: no webhook, no nudges
            "webhook_id": None,
            "webhook_state": None,
            "webhook_error": None,
            "last_nudge_at": None,
            "nudges_today": 0,
            "unannounced_changes": 0,
            "last_unannounced_at": None,
        }
    ]
    plain = cli("--config", str(config), "status")
    assert plain.returncode == 1, "the daemon has stopped: status says so"
    assert "daemon: not running (stopped at" in plain.stdout
    assert "accounts, today (UTC)" in plain.stdout and str(len(calls)) in plain.stdout
