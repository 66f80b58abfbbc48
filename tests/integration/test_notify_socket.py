"""The notify protocol over real unix datagram sockets, and the watchdog on a real event loop."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.service import sd_notify
from tests.notify_listener import NotifyListener


@pytest.fixture
def listening(notify_listener: NotifyListener, monkeypatch: pytest.MonkeyPatch) -> NotifyListener:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_listener.address)
    return notify_listener


@pytest.fixture
def abstract_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener(f"@pipedrive-triggers-test/{uuid.uuid4().hex}")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    try:
        yield listener
    finally:
        listener.close()


def test_each_message_is_one_datagram(listening: NotifyListener) -> None:
    assert sd_notify.ready("2 subscriptions, 0 pending, 0 dead")
    assert sd_notify.status("2 subscriptions, 1 pending, 0 dead")
    assert sd_notify.watchdog_ping()
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sd_notify.reloading()
    assert sd_notify.ready()
    assert sd_notify.stopping()
    listening.wait_for("STOPPING")
    got = [n.fields for n in listening.received]
    assert got[:3] == [
        {"READY": "1", "STATUS": "2 subscriptions, 0 pending, 0 dead"},
        {"STATUS": "2 subscriptions, 1 pending, 0 dead"},
        {"WATCHDOG": "1"},
    ]
    assert got[3].keys() == {"RELOADING", "MONOTONIC_USEC"} and got[3]["RELOADING"] == "1"
    assert 0 <= int(got[3]["MONOTONIC_USEC"]) - before_us < 1_000_000, "systemd's clock"
    assert got[4:] == [{"READY": "1"}, {"STOPPING": "1"}]


def test_abstract_socket(abstract_listener: NotifyListener) -> None:
    assert sd_notify.ready("from @")
    assert [n.fields for n in abstract_listener.wait_for("READY")] == [
        {"READY": "1", "STATUS": "from @"}
    ]


def test_a_missing_socket_is_logged_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="daemon.service.sd_notify"):
        assert sd_notify.ready() is False
    assert [r.action for r in caplog.records] == ["sd_notify.failed"]  # type: ignore[attr-defined]
    assert "could not notify systemd (READY)" in caplog.text
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1")
    assert sd_notify.watchdog_ping() is False


async def test_watchdog_pings_come_from_the_event_loop(listening: NotifyListener) -> None:
    """A task, not a thread: while the loop is blocked no ping goes out."""
    pinging = asyncio.create_task(sd_notify.keep_alive(0.1))
    try:
        await asyncio.sleep(0.55)
        turning = len(listening.with_field("WATCHDOG"))
        blocked_at = time.monotonic()
        time.sleep(0.6)  # a hung loop  # noqa: ASYNC251
        unblocked_at = time.monotonic()
        await asyncio.sleep(0.25)
    finally:
        pinging.cancel()
    pings = listening.with_field("WATCHDOG")
    assert 5 <= turning <= 7, turning
    assert not [n for n in pings if blocked_at + 0.05 < n.at < unblocked_at], "pinged while hung"
    assert any(n.at > unblocked_at for n in pings), "pings resume with the loop"
