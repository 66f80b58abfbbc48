"""The call log: one record per request the sandbox answered, for tests to assert on."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # as requested, before the /api/v1 -> /v1 alias is applied
    query: dict[str, str]
    status: int
    token_valid: bool
    time: datetime


class CallLog:
    """Append-only from the server thread; readers get snapshots."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def append(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def count(self, method: str, path: str) -> int:
        method = method.upper()
        with self._lock:
            return sum(1 for c in self._calls if c.method == method and c.path == path)
