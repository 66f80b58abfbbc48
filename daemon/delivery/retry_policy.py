"""When a failed delivery is tried again, or given up and dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Literal

# A consumer's Retry-After is honoured, but not past a day: a typo must not park an event.
MAX_RETRY_AFTER_S = 86_400.0
# A consumer that rejects a payload (400, 422, ...) will not accept it on the 12th try.
MAX_REJECTED_ATTEMPTS = 3
# Worth retrying on the schedule: the consumer is busy, overloaded or briefly broken.
TRANSIENT_STATUSES = frozenset({408, 425, 429})

Verdict = Literal["success", "transient", "gone", "rejected"]


def classify(status: int | None) -> Verdict:
    """What an attempt's answer means. None is no answer at all (timeout, refused, DNS, TLS):
    transient. 410 Gone: the consumer asks us to stop. Other 4xx: it rejects the payload.
    Anything else that is not 2xx (5xx, 408, 425, 429, a 3xx we do not follow) is transient."""
    if status is None:
        return "transient"
    if 200 <= status < 300:
        return "success"
    if status == HTTPStatus.GONE:
        return "gone"
    if 400 <= status < 500 and status not in TRANSIENT_STATUSES:
        return "rejected"
    return "transient"


@dataclass(frozen=True)
class RetryPolicy:
    schedule_s: Sequence[float]  # delay after attempt 1, 2, ...; the last one repeats
    max_attempts: int
    jitter: float  # 0.2: each delay is scaled by a factor in [0.8, 1.2]


def attempt_limit(policy: RetryPolicy, *, rejected: bool = False) -> int:
    """How many attempts an event gets: `max_attempts`, or fewer for a rejected payload."""
    return min(policy.max_attempts, MAX_REJECTED_ATTEMPTS) if rejected else policy.max_attempts


def next_attempt(
    policy: RetryPolicy,
    attempts_made: int,
    now: datetime,
    *,
    retry_after_s: float | None = None,
    random_unit: float = 0.5,
    rejected: bool = False,
) -> datetime | None:
    """The time of the next attempt after `attempts_made` failed ones, or None to dead-letter.

    `random_unit` in [0, 1) spreads retries so a recovering consumer is not hit all at once.
    A `rejected` payload (4xx other than 408, 410, 425, 429) gets `MAX_REJECTED_ATTEMPTS`.
    """
    if attempts_made >= attempt_limit(policy, rejected=rejected):
        return None
    base = policy.schedule_s[min(attempts_made, len(policy.schedule_s)) - 1]
    delay = base * (1 + policy.jitter * (2 * random_unit - 1))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=delay)
