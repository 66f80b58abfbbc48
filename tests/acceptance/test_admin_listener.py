"""The admin listener in the real daemon process: it answers, and the daemon's own signals
still work (uvicorn must not take SIGTERM, SIGINT or SIGHUP from it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.acceptance.test_cli import start_daemon, wait_for_first_poll, write_daemon_config
from tests.integration.test_admin import free_port


def wait_until_listening(url: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_admin_listener_serves_and_signals_stay_the_daemons(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = write_daemon_config(
        tmp_path, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}], {}
    )
    port = free_port()
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[admin]\nlisten = "127.0.0.1:{port}"\n')
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_listening(f"{base}/healthz").text == "ok\n"
        wait_for_first_poll(sandbox)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        assert "pipedrive_triggers_polls_total" in httpx.get(f"{base}/metrics", timeout=5).text
        daemon.send_signal(signal.SIGHUP)  # the daemon's handler, not uvicorn's: it goes on
        time.sleep(0.3)
        assert daemon.poll() is None
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log.read_text()
    assert f"admin: listening on http://127.0.0.1:{port}" in text
    assert text.rstrip().endswith("stopped")
