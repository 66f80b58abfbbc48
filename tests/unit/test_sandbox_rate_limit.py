"""Rate-limit accounting and fault bookkeeping, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.dev.sandbox import faults, rate_limit
from daemon.dev.sandbox.rate_limit import Limits, RateLimiter

NOON = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # (monotonic time of each request) -> (allowed, remaining, reset) of each
        ([0.0, 0.1, 0.2], [(True, 2, 2), (True, 1, 2), (True, 0, 2)]),
        ([0.0, 0.1, 0.2, 0.3], [(True, 2, 2), (True, 1, 2), (True, 0, 2), (False, 0, 2)]),
        ([0.0, 0.1, 0.2, 1.5], [(True, 2, 2), (True, 1, 2), (True, 0, 2), (False, 0, 1)]),
        ([0.0, 0.1, 0.2, 2.0], [(True, 2, 2), (True, 1, 2), (True, 0, 2), (True, 0, 1)]),
        ([0.0, 5.0], [(True, 2, 2), (True, 2, 2)]),
    ],
)
def test_burst_window(stamps: list[float], expected: list[tuple[bool, int, int]]) -> None:
    limiter = RateLimiter(Limits(burst=3, window_s=2.0))
    got = []
    for mono in stamps:
        decision = limiter.admit("t", 1, mono, NOON)
        got.append((decision.allowed, decision.remaining, decision.reset_s))
    assert got == expected


def test_refusal_carries_retry_after_and_spends_nothing() -> None:
    limiter = RateLimiter(Limits(burst=1, window_s=2.0, daily_tokens=100))
    assert limiter.admit("t", 10, 0.0, NOON).retry_after_s is None
    refused = limiter.admit("t", 10, 0.5, NOON)
    assert (refused.allowed, refused.retry_after_s, refused.daily_remaining) == (False, 2, 90)
    assert refused.headers()["retry-after"] == "2"


def test_tokens_are_counted_separately() -> None:
    limiter = RateLimiter(Limits(burst=1))
    assert limiter.admit("a", 1, 0.0, NOON).allowed
    assert limiter.admit("b", 1, 0.0, NOON).allowed
    assert not limiter.admit("a", 1, 0.1, NOON).allowed


@pytest.mark.parametrize(
    ("costs", "budget", "allowed"),
    [
        ([10, 5], 15, [True, True]),
        ([10, 10], 15, [True, False]),
        ([20], 15, [False]),
    ],
)
def test_daily_budget(costs: list[int], budget: int, allowed: list[bool]) -> None:
    limiter = RateLimiter(Limits(burst=100, daily_tokens=budget))
    decisions = [limiter.admit("t", cost, float(n), NOON) for n, cost in enumerate(costs)]
    assert [d.allowed for d in decisions] == allowed
    if not allowed[-1]:
        assert decisions[-1].retry_after_s == 12 * 3600


def test_daily_budget_resets_at_utc_midnight() -> None:
    limiter = RateLimiter(Limits(daily_tokens=10))
    assert limiter.admit("t", 10, 0.0, NOON).allowed
    assert not limiter.admit("t", 1, 10.0, NOON).allowed
    assert limiter.admit("t", 1, 20.0, datetime(2026, 5, 6, 0, 0, 1, tzinfo=UTC)).allowed


@pytest.mark.parametrize(
    ("wall", "seconds"),
    [
        (datetime(2026, 5, 5, 23, 59, 59, tzinfo=UTC), 1),
        (datetime(2026, 5, 5, 0, 0, tzinfo=UTC), 86_400),
        (datetime(2026, 5, 5, 23, 59, 59, 500_000, tzinfo=UTC), 1),
    ],
)
def test_seconds_to_midnight(wall: datetime, seconds: int) -> None:
    assert rate_limit.seconds_to_midnight(wall) == seconds


def test_faults_are_spent_in_order_and_scoped() -> None:
    armed = faults.Faults()
    armed.add(status=500, count=2, path_prefix="/api/v2/deals")
    armed.add(malformed=True, method="POST")
    assert armed.take("GET", "/api/v2/stages") is None
    assert [armed.take("GET", "/api/v2/deals/1") is not None for _ in range(3)] == [
        True,
        True,
        False,
    ]
    post = armed.take("POST", "/api/v2/activities")
    assert post is not None and post.malformed
    assert armed.pending == 0
    with pytest.raises(ValueError):
        armed.add(count=1)
