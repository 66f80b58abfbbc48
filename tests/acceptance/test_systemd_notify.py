"""The daemon under systemd's eyes: notify messages from a real `run` subprocess."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.acceptance.test_cli import REPO, start_daemon, write_daemon_config
from tests.notify_listener import NotifyListener

WATCHDOG_USEC = 2_000_000  # so a ping every 1 s
WATCH_S = 3.5

# Sets PR_SET_MDWE (Linux 6.3+: no memory both writable and executable, kept across exec), as
# MemoryDenyWriteExecute=yes does in the unit, then execs the daemon.
UNDER_MDWE = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(99)
os.execv(sys.executable, [sys.executable, "-m", "daemon", *sys.argv[1:]])
"""
NO_MDWE = 99


def test_ready_status_watchdog_and_stopping(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    config = write_daemon_config(
        tmp_path, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}], {}
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        ready = notify_listener.wait_for("READY")
        assert ready, log.read_text()
        assert "started: 1 subscriptions" in log.read_text(), "READY once the daemon is up"
        assert (tmp_path / "d.db").exists(), "after the migrations"
        assert ready[0].fields["READY"] == "1"
        # Its first poll may or may not have ended by then.
        assert ready[0].fields["STATUS"] in {
            "1 subscription (1 not started), 0 pending, 0 dead",
            "1 subscription (1 ok), 0 pending, 0 dead",
        }
        time.sleep(WATCH_S)
        pings = [n.at for n in notify_listener.with_field("WATCHDOG") if n.at > ready[0].at]
        # One right away, then one every WATCHDOG_USEC / 2 = 1 s: 4 in 3.5 s, evenly spaced.
        assert 3 <= len(pings) <= 5, pings
        gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
        assert all(0.7 < gap < 1.6 for gap in gaps), gaps
        assert not notify_listener.with_field("STOPPING")
        daemon.send_signal(signal.SIGHUP)  # systemctl reload
        assert len(notify_listener.wait_for("READY", count=2)) == 2, log.read_text()
        assert daemon.poll() is None, "SIGHUP does not end the daemon"
        assert "reloaded" in log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    stopping = notify_listener.wait_for("STOPPING", timeout_s=2)
    assert [n.fields["STOPPING"] for n in stopping] == ["1"]
    assert len(notify_listener.with_field("READY")) == 2, "at start and after the reload"
    assert log.read_text().rstrip().endswith("stopped")


def test_runs_and_delivers_under_memory_deny_write_execute(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: WebhookReceiver,
    notify_listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The unit's MemoryDenyWriteExecute=yes: Python and its C extensions need no W+X pages."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    sandbox.add_deal(title="under MDWE")
    subscription = {"name": "deals", "trigger": "deal.added", "start": "2000-01-01T00:00:00Z"}
    config = write_daemon_config(tmp_path, sandbox, receiver, [subscription], {})
    log = tmp_path / "daemon.log"
    with log.open("ab") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-c", UNDER_MDWE, "--config", str(config), "run"],
            stdout=sink,
            stderr=sink,
            cwd=REPO,
        )
    try:
        if not notify_listener.wait_for("READY") and daemon.poll() == NO_MDWE:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
        assert receiver.wait_for(1, timeout_s=20), log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert "Traceback" not in log.read_text()
