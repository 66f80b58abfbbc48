"""Instant mode on a low daily budget, end to end: a real daemon process whose Pipedrive says,
in its daily budget headers, that less is left than `daily_token_budget x (1 - budget_share)`
reconciles half as often, says so once, and `status --accounts` shows the budget it saw."""

from __future__ import annotations

import itertools
import json
import signal
from dataclasses import replace
from pathlib import Path

from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox, rate_limit
from daemon.dev.sandbox.webhooks.policy import Timings
from tests.acceptance.test_cli import cli, start_daemon
from tests.acceptance.test_instant import _free_port, until
from tests.conftest import API_TOKEN, SIGNING_SECRET
from tests.waiting import HANG_S

DEALS = "/api/v2/deals"


def test_a_low_daily_budget_stretches_reconciliation_and_status_shows_it(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    timings = replace(Timings().scaled(0.001), timeout_s=10.0)
    # 4,000 tokens left of the company's day, under the 5,000 this account leaves to others.
    limits = rate_limit.Limits(daily_tokens=4_000)
    with (
        Sandbox(token=API_TOKEN, webhook_timings=timings, limits=limits) as sandbox,
        serve(sandbox.app) as api,
    ):
        port = _free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n\n'
            f'[instant]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}/pipedrive"\n'
            'reconcile_interval = "2s"\n\n'
            f'[[accounts]]\nname = "main"\napi_token = "{API_TOKEN}"\n'
            f'base_url = "{api.base_url}"\ndaily_token_budget = 10000\nbudget_share = 0.5\n\n'
            f'[[subscriptions]]\nname = "deals"\naccount = "main"\ntrigger = "deal.added"\n'
            f'callback_url = "{receiver.base_url}/hooks/deals"\n'  # type: ignore[attr-defined]
            f'secret = "{SIGNING_SECRET}"\npoll_interval = "2m"\n'
            "allow_private_targets = true\n"
        )
        log = tmp_path / "daemon.log"
        daemon = start_daemon(config, log)
        try:
            until(lambda: any(w["is_active"] for w in sandbox.webhooks), HANG_S, "no webhook")
            until(
                lambda: "reconciling every 4s instead of 2s" in log.read_text(),
                HANG_S,
                "the stretch was not logged",
            )
            seen = len([c for c in sandbox.calls if c.path == DEALS])
            until(
                lambda: len([c for c in sandbox.calls if c.path == DEALS]) >= seen + 3,
                HANG_S,
                "reconciliation stopped",
            )
            listed = [c.time for c in sandbox.calls if c.path == DEALS][seen:]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(listed)]
            assert min(gaps) > 3.0, gaps  # every 4 s, not every 2 s
            assert log.read_text().count("reconciling every 4s") == 1  # said once today
            # Flushed with the usage (every 5 s): status reads it from the database.
            until(
                lambda: '"daily_tokens_limit": 4000' in _accounts(config, "--json"),
                HANG_S,
                "status --accounts does not show the daily budget",
            )
            [row] = json.loads(_accounts(config, "--json"))
            assert row["daily_tokens_remaining"] < 4_000 and row["daily_seen_at"]
            table = _accounts(config)
            assert "daily_tokens_left" in table and "/4000" in table
            assert "Traceback" not in log.read_text()
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=HANG_S)


def _accounts(config: Path, *extra: str) -> str:
    return cli("--config", str(config), "status", "--accounts", *extra).stdout
