"""Per-token rate accounting: a rolling burst window and a daily token budget, as Pipedrive's
token-based limits work (burst counted in requests, budget in `x-token-cost` units)."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

GROWTH_BURST_PER_WINDOW = 40  # API-token burst of the "Growth" plan
BURST_WINDOW_S = 2.0
DEFAULT_DAILY_TOKENS = 10_000_000  # large: tests opt in to a small budget


@dataclass(frozen=True)
class Limits:
    burst: int = GROWTH_BURST_PER_WINDOW
    window_s: float = BURST_WINDOW_S
    daily_tokens: int = DEFAULT_DAILY_TOKENS


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    daily_limit: int
    daily_remaining: int
    retry_after_s: int | None = None

    def headers(self) -> dict[str, str]:
        shown = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_s),
            "x-daily-ratelimit-token-limit": str(self.daily_limit),
            "x-daily-ratelimit-token-remaining": str(self.daily_remaining),
        }
        if self.retry_after_s is not None:
            shown["retry-after"] = str(self.retry_after_s)
        return shown


def seconds_to_midnight(wall: datetime) -> int:
    """The daily budget resets at midnight server time; the sandbox's server time is UTC."""
    wall = wall.astimezone(UTC)
    midnight = datetime.combine(wall.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - wall).total_seconds()))


@dataclass
class _Bucket:
    stamps: deque[float] = field(default_factory=deque)
    day: date | None = None
    spent: int = 0


class RateLimiter:
    """`admit` decides and records one request; `peek` reports without spending."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def reset(self, limits: Limits | None = None) -> None:
        with self._lock:
            if limits is not None:
                self.limits = limits
            self._buckets.clear()

    def _bucket(self, token: str, mono: float, wall: datetime) -> _Bucket:
        bucket = self._buckets.setdefault(token, _Bucket())
        while bucket.stamps and bucket.stamps[0] <= mono - self.limits.window_s:
            bucket.stamps.popleft()
        today = wall.astimezone(UTC).date()
        if bucket.day != today:
            bucket.day, bucket.spent = today, 0
        return bucket

    def _reset_s(self, bucket: _Bucket, mono: float) -> int:
        if not bucket.stamps:
            return 0
        return max(1, math.ceil(bucket.stamps[0] + self.limits.window_s - mono))

    def _decision(self, bucket: _Bucket, mono: float, allowed: bool, retry: int | None) -> Decision:
        limits = self.limits
        return Decision(
            allowed=allowed,
            limit=limits.burst,
            remaining=max(0, limits.burst - len(bucket.stamps)),
            reset_s=self._reset_s(bucket, mono),
            daily_limit=limits.daily_tokens,
            daily_remaining=max(0, limits.daily_tokens - bucket.spent),
            retry_after_s=retry,
        )

    def admit(self, token: str, cost: int, mono: float, wall: datetime) -> Decision:
        with self._lock:
            bucket = self._bucket(token, mono, wall)
            if len(bucket.stamps) >= self.limits.burst:
                return self._decision(bucket, mono, False, self._reset_s(bucket, mono))
            if bucket.spent + cost > self.limits.daily_tokens:
                return self._decision(bucket, mono, False, seconds_to_midnight(wall))
            bucket.stamps.append(mono)
            bucket.spent += cost
            return self._decision(bucket, mono, True, None)

    def peek(self, token: str, mono: float, wall: datetime) -> Decision:
        with self._lock:
            return self._decision(self._bucket(token, mono, wall), mono, True, None)
