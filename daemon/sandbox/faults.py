"""Fault injection for tests: the next N matching requests fail, stall or return broken JSON."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Fault:
    status: int | None = None  # None: answer normally (after any delay)
    count: int = 1
    path_prefix: str = ""
    method: str | None = None
    delay_s: float = 0.0
    malformed: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return path.startswith(self.path_prefix)


class Faults:
    """Armed faults, consumed in the order they were added; safe to use from any thread."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        status: int | None = None,
        count: int = 1,
        path_prefix: str = "",
        method: str | None = None,
        delay_s: float = 0.0,
        malformed: bool = False,
    ) -> Fault:
        if status is None and not delay_s and not malformed:
            raise ValueError("a fault needs a status, a delay_s or malformed=True")
        fault = Fault(status, count, path_prefix, method, delay_s, malformed)
        with self._lock:
            self._armed.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, spending one of its uses."""
        with self._lock:
            for fault in self._armed:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._armed.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(fault.count for fault in self._armed)
