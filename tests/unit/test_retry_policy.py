"""next_attempt: when a failed delivery is tried again, or dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.config import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_SCHEDULE_S
from daemon.delivery.retry_policy import RetryPolicy, attempt_limit, classify, next_attempt

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy((5, 60, 300), max_attempts=5, jitter=0.2)


@pytest.mark.parametrize(
    ("attempts", "random_unit", "retry_after", "delay_s"),
    [
        (1, 0.5, None, 5),  # no jitter at the midpoint
        (2, 0.5, None, 60),
        (3, 0.0, None, 240),  # -20 %
        (3, 1.0, None, 360),  # +20 %
        (4, 0.5, None, 300),  # past the schedule, the last delay repeats
        (1, 0.5, 120.0, 120),  # Retry-After longer than the schedule wins
        (2, 0.5, 1.0, 60),  # shorter does not hurry us
        (2, 0.5, 10**9, 86_400),  # capped at a day
    ],
)
def test_delays(
    attempts: int, random_unit: float, retry_after: float | None, delay_s: float
) -> None:
    when = next_attempt(POLICY, attempts, NOW, retry_after_s=retry_after, random_unit=random_unit)
    assert when == NOW + timedelta(seconds=delay_s)


def test_dead_letter_after_max_attempts() -> None:
    assert next_attempt(POLICY, 5, NOW) is None
    assert next_attempt(POLICY, 4, NOW) is not None


def test_default_schedule_spans_about_three_days() -> None:
    policy = RetryPolicy(DEFAULT_RETRY_SCHEDULE_S, DEFAULT_MAX_ATTEMPTS, 0)
    total = sum(
        ((next_attempt(policy, n, NOW) or NOW) - NOW).total_seconds()
        for n in range(1, DEFAULT_MAX_ATTEMPTS)
    )
    assert 2.5 * 86_400 < total < 3.5 * 86_400
    assert next_attempt(policy, DEFAULT_MAX_ATTEMPTS, NOW) is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, "transient"),  # timeout, refused, DNS, TLS
        (200, "success"),
        (204, "success"),
        (301, "transient"),  # redirects are not followed; the schedule tries again
        (400, "rejected"),
        (401, "rejected"),
        (404, "rejected"),
        (422, "rejected"),
        (408, "transient"),
        (425, "transient"),
        (429, "transient"),
        (410, "gone"),
        (500, "transient"),
        (503, "transient"),
    ],
)
def test_classify(status: int | None, verdict: str) -> None:
    assert classify(status) == verdict


def test_a_rejected_payload_gets_three_attempts_in_all() -> None:
    policy = RetryPolicy((5,), max_attempts=12, jitter=0)
    assert next_attempt(policy, 2, NOW, rejected=True) is not None
    assert next_attempt(policy, 3, NOW, rejected=True) is None
    assert next_attempt(policy, 3, NOW) is not None
    assert next_attempt(RetryPolicy((5,), 2, 0), 2, NOW, rejected=True) is None


def test_attempt_limit_is_what_the_outcome_allows() -> None:
    assert attempt_limit(POLICY) == 5
    assert attempt_limit(POLICY, rejected=True) == 3
    assert attempt_limit(RetryPolicy((5,), max_attempts=2, jitter=0), rejected=True) == 2
