"""systemd's notify protocol: one datagram of `KEY=value` lines to `$NOTIFY_SOCKET`.

Readiness, status, stopping, reloading and watchdog pings, as `sd_notify(3)` sends them. Without
`$NOTIFY_SOCKET` (not under systemd, or `Type=` is not `notify`) every call does nothing.
A failed send is logged and never raised: the daemon's work matters more than its reports.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from daemon import clock as clock_module

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
# sd_watchdog_enabled(3): ping at half the timeout, so one late ping is not yet fatal.
WATCHDOG_PING_FRACTION = 0.5

Fields = Mapping[str, str | int]


def format_message(fields: Fields) -> bytes:
    """`{"READY": 1, "STATUS": "ok"}` -> `b"READY=1\\nSTATUS=ok"`. A newline in a value would
    smuggle in another field, so it is refused, as is an empty message."""
    if not fields:
        raise ValueError("a notify message needs at least one field")
    lines = []
    for key, value in fields.items():
        text = str(value)
        if not key or "=" in key or "\n" in key:
            raise ValueError(f"not a notify field name: {key!r}")
        if "\n" in text:
            raise ValueError(f"notify field {key} has a newline in its value")
        lines.append(f"{key}={text}")
    return "\n".join(lines).encode()


def socket_address(value: str) -> str | bytes:
    """The address `$NOTIFY_SOCKET` names: a path, or an abstract socket written with `@`."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"unsupported {NOTIFY_SOCKET_ENV} (not a path or @abstract): {value!r}")


def notify(fields: Fields) -> bool:
    """Send one message; True if it was sent, False without a socket or when sending failed."""
    target = os.environ.get(NOTIFY_SOCKET_ENV, "")
    if not target:
        return False
    message = format_message(fields)
    try:
        address = socket_address(target)
        # Non-blocking: called from the event loop, which must never wait on systemd.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message, address)
    except (OSError, ValueError) as error:
        logger.warning(
            "could not notify systemd (%s): %s",
            ", ".join(fields),
            error,
            extra={"action": "sd_notify.failed"},
        )
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Start-up is complete: `Type=notify` services count as started from here."""
    return notify({"READY": 1} | ({"STATUS": status} if status is not None else {}))


def status(text: str) -> bool:
    """A one-line state for `systemctl status`."""
    return notify({"STATUS": text})


def stopping(status: str | None = None) -> bool:
    """Shutdown has begun."""
    return notify({"STOPPING": 1} | ({"STATUS": status} if status is not None else {}))


def reloading() -> bool:
    """A reload has begun; send `ready()` when it is done. `MONOTONIC_USEC` lets systemd pair
    this message with the reload it asked for (`Type=notify-reload`, systemd 253+)."""
    return notify(
        {"RELOADING": 1, "MONOTONIC_USEC": time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}
    )


def watchdog_ping() -> bool:
    """Still alive: resets systemd's `WatchdogSec=` timer."""
    return notify({"WATCHDOG": 1})


def watchdog_interval() -> float | None:
    """Seconds between pings (half of `$WATCHDOG_USEC`), or None when no watchdog is asked of
    this process: unset, unparsable, or `$WATCHDOG_PID` names another process."""
    usec = os.environ.get(WATCHDOG_USEC_ENV, "")
    pid = os.environ.get(WATCHDOG_PID_ENV, "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        timeout_us = int(usec)
    except ValueError:
        return None
    if timeout_us <= 0:
        return None
    return timeout_us / 1_000_000 * WATCHDOG_PING_FRACTION


async def keep_alive(interval_s: float, clock: clock_module.Clock = clock_module.SYSTEM) -> None:
    """Ping the watchdog every `interval_s` until cancelled. It runs as a task on the event
    loop, not in a thread, so a loop that stops turning stops the pings and systemd restarts
    the daemon."""
    while True:
        watchdog_ping()
        await clock.sleep(interval_s)
