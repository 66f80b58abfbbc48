"""The notify protocol's pure parts: message format, socket addresses, the watchdog's rate."""

from __future__ import annotations

import os

import pytest

from daemon.service import sd_notify


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"READY": 1}, b"READY=1"),
        (
            {"READY": 1, "STATUS": "2 subscriptions, 0 pending"},
            b"READY=1\nSTATUS=2 subscriptions, 0 pending",
        ),
        ({"RELOADING": 1, "MONOTONIC_USEC": 123456789}, b"RELOADING=1\nMONOTONIC_USEC=123456789"),
        ({"STATUS": "a = b"}, b"STATUS=a = b"),
        ({"STATUS": "caf\u00e9"}, "STATUS=caf\u00e9".encode()),
    ],
)
def test_format_message(fields: sd_notify.Fields, expected: bytes) -> None:
    assert sd_notify.format_message(fields) == expected


@pytest.mark.parametrize(
    "fields",
    [{}, {"STATUS": "one\nREADY=1"}, {"A=B": 1}, {"": 1}, {"A\nB": 1}],
)
def test_format_message_refuses_what_would_smuggle_a_field(fields: sd_notify.Fields) -> None:
    with pytest.raises(ValueError):
        sd_notify.format_message(fields)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/123", b"\0/org/freedesktop/systemd1/notify/123"),
        ("@x", b"\0x"),
    ],
)
def test_socket_address(value: str, expected: str | bytes) -> None:
    assert sd_notify.socket_address(value) == expected


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "x"])
def test_socket_address_refuses_others(value: str) -> None:
    with pytest.raises(ValueError, match="unsupported NOTIFY_SOCKET"):
        sd_notify.socket_address(value)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 1.0),
        ("30000000", "self", 15.0),
        ("500000", None, 0.25),
        ("2000000", "1", None),  # systemd's watchdog is for another process
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert sd_notify.watchdog_interval() == expected


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.ready("1 subscription") is False
    assert sd_notify.watchdog_ping() is False
    assert sd_notify.stopping() is False
    assert sd_notify.reloading() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sd_notify.status("x") is False
