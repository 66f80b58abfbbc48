"""Fault injection for tests: the next N matching requests fail, stall, return broken JSON,
carry a chosen Retry-After, or page forever on one repeated cursor (or on a fresh cursor that
serves the same page)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

# `count` for a fault that never wears off (a cursor that repeats "forever").
FOREVER = 1_000_000_000


@dataclass
class Fault:
    status: int | None = None  # None: answer normally (after any delay, with any rewrite)
    count: int = 1
    path_prefix: str = ""
    method: str | None = None
    delay_s: float = 0.0
    malformed: bool = False
    retry_after: int | None = None  # sent as `Retry-After` with `status`
    repeat_cursor: bool = False  # the listing's next cursor is the same on every page
    skip: int = 0  # matching requests let through untouched before the fault fires
    path: str | None = None  # exact path, where `path_prefix` would match too much
    fresh_cursor: bool = False  # a next cursor never seen before, that serves the same page

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is not None and path != self.path:
            return False
        return path.startswith(self.path_prefix)


class _Spendable(Protocol):
    count: int
    skip: int


F = TypeVar("F", bound=_Spendable)


class Armed(Generic[F]):
    """Armed faults, consumed in the order they were added; safe to use from any thread."""

    def __init__(self) -> None:
        self._armed: list[F] = []
        self._lock = threading.Lock()

    def _arm(self, fault: F) -> F:
        with self._lock:
            self._armed.append(fault)
        return fault

    def _take(self, matches: Callable[[F], bool]) -> F | None:
        """The first armed fault that `matches`, spending one of its uses."""
        with self._lock:
            for fault in self._armed:
                if matches(fault):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
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


class Faults(Armed[Fault]):
    """Armed request faults (see `add`)."""

    def add(
        self,
        status: int | None = None,
        count: int = 1,
        path_prefix: str = "",
        method: str | None = None,
        delay_s: float = 0.0,
        malformed: bool = False,
        *,
        retry_after: int | None = None,
        repeat_cursor: bool = False,
        skip: int = 0,
        path: str | None = None,
        fresh_cursor: bool = False,
    ) -> Fault:
        """Arm a fault for the next `count` requests matching method/path (after `skip`).

        `status=429, retry_after=999999` answers 429 with that `Retry-After`;
        `repeat_cursor=True` serves the real page but pins its next cursor (v2: `next_cursor`,
        v1: `next_start`) to the same value on every page; `skip=N` makes the fault hit the
        (N+1)th matching call, e.g. a 5xx in the middle of paging; `fresh_cursor=True` serves
        the real first page with a next cursor that is new on every page (v2 only), so a
        client that only remembers cursors pages forever.
        """
        if not (status or delay_s or malformed or repeat_cursor or fresh_cursor):
            raise ValueError(
                "a fault needs a status, a delay_s, malformed=True, repeat_cursor or fresh_cursor"
            )
        if retry_after is not None and status is None:
            raise ValueError("retry_after goes with a status (e.g. 429)")
        if count < 1 or skip < 0:
            raise ValueError("count must be >= 1 and skip >= 0")
        return self._arm(
            Fault(
                status,
                count,
                path_prefix,
                method,
                delay_s,
                malformed,
                retry_after,
                repeat_cursor,
                skip,
                path,
                fresh_cursor,
            )
        )

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, spending one of its uses."""
        return self._take(lambda fault: fault.matches(method, path))
