"""The admin listener in the real daemon process: it answers, the daemon's own signals still
work (uvicorn must not take SIGTERM, SIGINT or SIGHUP from it), and a reload applies a rotated
token and says that a new address needs a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

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


OLD_TOKEN = "the-old-admin-token-0123456789"
NEW_TOKEN = "the-new-admin-token-9876543210"


def test_a_reload_applies_a_rotated_token_and_says_a_new_address_needs_a_restart(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    config = write_daemon_config(
        tmp_path, sandbox, receiver, [{"name": "deals", "trigger": "deal.added"}], {}
    )
    token_file = tmp_path / "admin-token"
    token_file.write_text(OLD_TOKEN + "\n")
    port, other_port = free_port(), free_port()
    text = config.read_text(encoding="utf-8")
    admin = f'\n[admin]\nlisten = "127.0.0.1:{{}}"\ntoken_file = "{token_file}"\n'
    config.write_text(text + admin.format(port), encoding="utf-8")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    base = f"http://127.0.0.1:{port}"
    old = {"authorization": f"Bearer {OLD_TOKEN}"}
    new = {"authorization": f"Bearer {NEW_TOKEN}"}
    try:
        assert wait_until_listening(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/metrics", headers=old, timeout=5).status_code == 200
        token_file.write_text(NEW_TOKEN + "\n")
        config.write_text(text + admin.format(other_port), encoding="utf-8")
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/metrics", headers=new, timeout=5).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert httpx.get(f"{base}/metrics", headers=old, timeout=5).status_code == 401
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{other_port}/healthz", timeout=2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log.read_text()
    assert "reload: admin token changed" in text
    assert (
        "reload: admin.listen changed; it is read once at start, so restart the daemon to "
        "apply it" in text
    )
    assert OLD_TOKEN not in text and NEW_TOKEN not in text
