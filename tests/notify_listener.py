"""A stand-in for systemd's notify socket: a real unix datagram socket that records messages."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.waiting import HANG_S


@dataclass(frozen=True)
class Notification:
    at: float  # time.monotonic() when it arrived
    fields: dict[str, str]


class NotifyListener:
    """Binds `address` (a path, or "@name" for an abstract socket) and collects every datagram
    in a thread, so the sender never finds the (small) receive queue full."""

    def __init__(self, address: str | Path) -> None:
        self.address = str(address)
        bind_to = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(bind_to)
        self._socket.settimeout(0.1)
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._collect, name="notify-listener", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self._lock:
                self._received.append(Notification(time.monotonic(), fields))

    @property
    def received(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def with_field(self, key: str) -> list[Notification]:
        return [n for n in self.received if key in n.fields]

    def wait_for(self, key: str, timeout_s: float = HANG_S, count: int = 1) -> list[Notification]:
        """The messages carrying `key`, once there are `count` of them (or the timeout ends)."""
        deadline = time.monotonic() + timeout_s
        while len(self.with_field(key)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.with_field(key)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._socket.close()
