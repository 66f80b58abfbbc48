"""Logs a person can read while Pipedrive is slow and when SIGTERM lands mid-poll."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.acceptance.test_cli import start_daemon, write_daemon_config


def test_slow_pipedrive_is_said_once_and_sigterm_mid_poll_is_one_line(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    # Every deals call takes 1.2 s: a poll (two calls at first) outlasts its 1 s interval.
    sandbox.faults.add(delay_s=1.2, count=1000, path_prefix="/api/v2/deals")
    subs = [{"name": "a", "trigger": "deal.added"}, {"name": "b", "trigger": "deal.updated"}]
    config = write_daemon_config(tmp_path, sandbox, receiver, subs, {"timeout": 0.3})
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        deadline = time.monotonic() + 20
        while "is behind" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The next poll starts at the next tick (within 1 s) and its call takes 1.2 s: at 1 s
        # it is mid-call, and the shutdown's 0.3 s of grace runs out before it ends.
        time.sleep(1.0)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert "maximum number of running instances" not in text, text
    assert text.count("is behind: a poll of deals took") == 1, text
    assert text.count("poll more often than the connector's") == 1, "once per run, not per sub"
    assert "'a' (1s), 'b' (1s)" in text
    assert "Traceback" not in text and "CancelledError" not in text, text
    assert "poll of main/deals stopped by shutdown" in text
    assert text.rstrip().endswith("stopped")
