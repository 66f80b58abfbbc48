"""SIGHUP on a running daemon subprocess: a valid config applies, an invalid one is refused."""

from __future__ import annotations

import base64
import json
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.dev.local_server import serve
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.payloads import envelope
from tests.acceptance.test_cli import cli, start_daemon
from tests.conftest import API_TOKEN, SIGNING_SECRET, config_text
from tests.notify_listener import NotifyListener
from tests.waiting import HANG_S

NEW_SECRET = "whsec_" + base64.b64encode(b"the-rotated-signing-secret-of-32b").decode()


def _refused_url() -> str:
    """A loopback port nothing listens on: deliveries there fail and stay queued."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody"


@pytest.fixture
def rotated_receiver() -> Iterator[WebhookReceiver]:
    """A consumer that already knows the rotated secret."""
    consumer = WebhookReceiver(secret=NEW_SECRET)
    with serve(consumer) as server:
        consumer.base_url = server.base_url  # type: ignore[attr-defined]
        yield consumer


def _write(
    path: Path, sandbox: Sandbox, receiver: WebhookReceiver, subs: list[dict[str, str]]
) -> None:
    text = config_text(
        database_url=f"sqlite:///{path.parent / 'd.db'}",
        api_url=sandbox.base_url,
        callback_url=receiver.base_url,  # type: ignore[attr-defined]
        subscriptions=subs,
        delivery={"retry_schedule": ["0.3s"], "max_attempts": 1000},
    )
    path.write_text(text, encoding="utf-8")


def _wait(condition: object, timeout_s: float = HANG_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def _pending(db: Path, subscription: str) -> int:
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM deliveries WHERE subscription = ? AND delivered_at IS NULL",
            (subscription,),
        ).fetchone()
    return int(count)


def test_valid_reload_adds_removes_and_rotates_without_losing_the_queue(
    tmp_path: Path,
    sandbox: Sandbox,
    rotated_receiver: WebhookReceiver,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    receiver = rotated_receiver
    deals = [sandbox.add_deal(title=f"before {n}")["id"] for n in range(2)]
    sandbox.add_activity(subject="call back")
    past = "2000-01-01T00:00:00Z"
    config = tmp_path / "config.toml"
    deals_sub = {"name": "deals", "trigger": "deal.added", "start": past}
    acts_sub = {
        "name": "acts",
        "trigger": "activity.added",
        "start": past,
        "callback_url": _refused_url(),
    }
    _write(config, sandbox, receiver, [deals_sub, acts_sub])
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        assert receiver.wait_for(2, timeout_s=20), log.read_text()
        assert all(r.verified is False for r in receiver.received), "signed with the old secret"
        assert _wait(lambda: _pending(tmp_path / "d.db", "acts") == 1), log.read_text()

        added = {"name": "deals-copy", "trigger": "deal.added", "start": past}
        _write(config, sandbox, receiver, [{**deals_sub, "secret": NEW_SECRET}, added])
        before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.send_signal(signal.SIGHUP)
        ready = notify_listener.wait_for("READY", count=2)
        assert len(ready) == 2, log.read_text()
        reloading = notify_listener.with_field("RELOADING")
        assert len(reloading) == 1 and reloading[0].fields["RELOADING"] == "1"
        assert before_us <= int(reloading[0].fields["MONOTONIC_USEC"]) <= before_us + 20_000_000
        assert reloading[0].at <= ready[1].at, "RELOADING=1, then READY=1"
        # The removed subscription's queued event leaves it orphaned.
        assert ready[1].fields["STATUS"].startswith("2 subscriptions (")
        assert ", 1 orphaned, " in ready[1].fields["STATUS"]
        activity_polls = sandbox.calls_to("GET", "/api/v2/activities")

        # The added subscription backfills and delivers; the changed secret signs what follows.
        origin = envelope.Origin(
            sandbox.store.company_id, installation=""
        )  # additions: company only
        copies = {origin.addition("deals-copy", "deal.added", d) for d in deals}
        assert _wait(lambda: copies <= receiver.event_ids()), log.read_text()
        later = sandbox.add_deal(title="after the reload")["id"]
        after = origin.addition("deals", "deal.added", later)
        assert _wait(lambda: after in receiver.event_ids()), log.read_text()
        assert [r.verified for r in receiver.received if r.event_id == after] == [True]

        # The removed subscription: no more polls (one may have been under way), queue kept.
        assert sandbox.calls_to("GET", "/api/v2/activities") <= activity_polls + 1
        assert _pending(tmp_path / "d.db", "acts") == 1, "its queued event is not lost"
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert "reload: subscription 'acts' removed" in text
    assert "reload: subscription 'deals-copy' added" in text
    assert API_TOKEN not in text and NEW_SECRET not in text and SIGNING_SECRET not in text


def _polled(config: Path, name: str) -> bool:
    """`status --json` shows the subscription's first poll recorded."""
    rows = json.loads(cli("--config", str(config), "status", "--json").stdout or "[]")
    return any(row["subscription"] == name and row["status"] == "ok" for row in rows)


def test_invalid_reload_is_rejected_once_and_the_old_config_keeps_running(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    config = tmp_path / "config.toml"
    _write(config, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}])
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        assert notify_listener.wait_for("READY"), log.read_text()
        # The first poll has been recorded (its feed is spread a few ms into the interval).
        assert _wait(lambda: _polled(config, "deals")), log.read_text()
        good = config.read_text(encoding="utf-8")
        config.write_text(
            good.replace("poll_interval = 1", 'poll_interval = 0\ncolour = "blue"'),
            encoding="utf-8",
        )
        expected = cli("--config", str(config), "check-config")
        assert expected.returncode == 3
        problems = expected.stderr.splitlines()
        assert len(problems) == 2, problems

        daemon.send_signal(signal.SIGHUP)
        ready = notify_listener.wait_for("READY", count=2)
        assert len(ready) == 2, log.read_text()
        assert "reload rejected" in ready[1].fields["STATUS"]
        assert ready[1].fields["STATUS"].endswith("1 subscription (1 ok), 0 pending, 0 dead")
        assert len(notify_listener.with_field("RELOADING")) == 1

        deal = sandbox.add_deal(title="still delivered")["id"]
        assert receiver.wait_for(1, timeout_s=20), log.read_text()
        origin = envelope.Origin(
            sandbox.store.company_id, installation=""
        )  # additions: company only
        assert receiver.event_ids() == {origin.addition("deals", "deal.added", deal)}
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert text.count("reload rejected") == 1, "logged once"
    for problem in problems:
        assert text.count(problem) == 1, problem


def test_sighup_reads_a_new_included_file(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    config = tmp_path / "config.toml"
    _write(config, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}])
    config.write_text(
        'include = ["accounts.d/*.toml"]\n' + config.read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "accounts.d").mkdir()  # empty: a glob that matches nothing is fine
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        assert notify_listener.wait_for("READY"), log.read_text()
        deal = sandbox.add_deal(title="seen by both")["id"]
        (tmp_path / "accounts.d" / "acme.toml").write_text(
            f'[[accounts]]\nname = "acme"\napi_token = "{API_TOKEN}"\n'
            f'base_url = "{sandbox.base_url}"\n\n[[subscriptions]]\nname = "acme-deals"\n'
            'account = "acme"\ntrigger = "deal.added"\nstart = "2000-01-01T00:00:00Z"\n'
            f'callback_url = "{receiver.base_url}/hooks/acme"\n'  # type: ignore[attr-defined]
            "poll_interval = 1\nallow_private_targets = true\n",
            encoding="utf-8",
        )
        daemon.send_signal(signal.SIGHUP)
        ready = notify_listener.wait_for("READY", count=2)
        assert len(ready) == 2, log.read_text()
        origin = envelope.Origin(sandbox.store.company_id, installation="")
        added = origin.addition("acme-deals", "deal.added", deal)
        assert _wait(lambda: added in receiver.event_ids()), log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert "reload: subscription 'acme-deals' added" in text
    assert "reload: account 'acme' added" in text
