"""Endpoint health: the operator's switch, and pausing a consumer that keeps failing.

A subscription is `disabled` by `subscriptions disable` or by a 410 Gone (its events keep
queueing, nothing is sent until `subscriptions enable`), and `paused` after `pause_after`
consecutive failed attempts: then only one probe (the oldest due event) is sent per
`probe_interval`, doubling up to `MAX_PROBE_INTERVAL_S`, and the first success resumes it.
While paused, events' own retry schedules do not advance, so a consumer that is down for a
week dead-letters nothing. These rules are pure; `db.health_store` keeps the result.

Health is the endpoint's: it is recorded with a fingerprint of the `callback_url` it was
judged on, and a subscription given a new URL starts healthy (`for_endpoint`). A pause, and a
410 Gone, were said by the old endpoint; an operator's disable stays, whatever the URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from daemon import times

MAX_PROBE_INTERVAL_S = 3600.0  # the probe interval doubles up to an hour
GONE_REASON_PREFIX = "410 Gone"  # a disable with this reason is the consumer's, not an operator's


def fingerprint(callback_url: str) -> str:
    """What identifies an endpoint in the database: a digest, never the URL (it may hold a
    token)."""
    return hashlib.sha256(callback_url.encode()).hexdigest()


@dataclass(frozen=True)
class Health:
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    paused_at: datetime | None = None
    pause_reason: str | None = None
    probe_at: datetime | None = None  # when a paused subscription may send its next probe
    probe_interval_s: float | None = None
    endpoint: str | None = None  # the `fingerprint` it was judged on; None: not recorded
    failures: int = 0  # consecutive failed attempts, counted by every replica together
    probe_until: datetime | None = None  # a probe is in flight (claimed) until then

    def may_claim_probe(self, now: datetime) -> bool:
        """Paused: whether a claim at `now` may take the one probe (due, none in flight)."""
        in_flight = self.probe_until is not None and self.probe_until > now
        return self.state == "paused" and self.may_probe(now) and not in_flight

    @property
    def state(self) -> str:
        if self.disabled_at is not None:
            return "disabled"
        if self.paused_at is not None:
            return "paused"
        return "ok"

    def may_probe(self, now: datetime) -> bool:
        return self.probe_at is None or self.probe_at <= now

    @property
    def gone(self) -> bool:
        """Disabled by the consumer's 410 Gone (not by an operator)."""
        return self.disabled_at is not None and (self.disabled_reason or "").startswith(
            GONE_REASON_PREFIX
        )


HEALTHY = Health()


def disabled(reason: str, now: datetime, health: Health = HEALTHY) -> Health:
    return replace(health, disabled_at=now, disabled_reason=reason)


def gone(now: datetime, health: Health = HEALTHY) -> Health:
    """The consumer answered 410 Gone: disabled until an operator enables it, or a new URL."""
    return disabled(f"{GONE_REASON_PREFIX} at {times.format_iso_seconds(now)}", now, health)


def for_endpoint(health: Health, endpoint: str | None) -> Health:
    """`health` as it applies to the endpoint `endpoint` (a `fingerprint`; None: unknown, as
    for a subscription no longer configured), stamped with it. Health recorded for another
    endpoint keeps only an operator's disable; health recorded before endpoints were (no
    fingerprint) is taken to be this endpoint's."""
    if endpoint is None or health.endpoint == endpoint:
        return health
    if health.endpoint is None:
        return replace(health, endpoint=endpoint)
    if health.disabled_at is not None and not health.gone:
        return Health(health.disabled_at, health.disabled_reason, endpoint=endpoint)
    return Health(endpoint=endpoint)


# What an attempt says about its endpoint: answered 2xx, failed, refused by the target guard
# (not the consumer's failure: it counts for a probe only), or answered 410 Gone.
Effect = Literal["success", "failure", "refused", "gone"]
Transition = Literal["paused", "resumed", "disabled"]


def after_attempt(
    health: Health,
    effect: Effect,
    at: datetime,
    error: str | None,
    *,
    pause_after: int,
    probe_interval_s: float,
    probe: bool = False,
) -> tuple[Health, Transition | None]:
    """The endpoint's health after one attempt (a `probe` when it was claimed as the paused
    subscription's one probe), and the transition it made, if any. Applied in the order the
    attempts are recorded, by whichever replica made them, so the failures are counted
    together."""
    if effect == "success" and not probe and health.failures == 0 and health.paused_at is None:
        return health, None  # the common case, unchanged: no copy
    if probe:
        health = replace(health, probe_until=None)
    if effect == "success":
        if health.state == "paused":
            return replace(HEALTHY, endpoint=health.endpoint), "resumed"
        return replace(health, failures=0), None
    if effect == "gone":
        if health.state == "disabled":
            return health, None
        return gone(at, health), "disabled"
    health = replace(health, failures=health.failures + (effect == "failure"))
    if health.state == "paused":
        # A failed probe (not an attempt that was in flight when the pause began): wait longer.
        if health.probe_at is None or at >= health.probe_at:
            return probe_failed(health, at), None
        return health, None
    if health.state == "ok" and health.failures >= pause_after:
        reason = f"{health.failures} consecutive failures; last: {error}"
        pause = paused(reason, at, probe_interval_s)
        return replace(pause, endpoint=health.endpoint, failures=health.failures), "paused"
    return health, None


def paused(reason: str, now: datetime, probe_interval_s: float) -> Health:
    return Health(
        paused_at=now,
        pause_reason=reason,
        probe_at=now + timedelta(seconds=probe_interval_s),
        probe_interval_s=probe_interval_s,
    )


def probe_failed(health: Health, now: datetime) -> Health:
    """The probe failed: wait twice as long for the next one, up to an hour."""
    interval = min((health.probe_interval_s or 0) * 2, MAX_PROBE_INTERVAL_S) or 60.0
    return replace(health, probe_at=now + timedelta(seconds=interval), probe_interval_s=interval)


def next_attempt(health: Health | None, earliest_due: datetime | None) -> datetime | None:
    """When a subscription's next POST may go out, given its earliest due pending event: for a
    paused one, not before its next probe."""
    if earliest_due is None or health is None or health.state != "paused":
        return earliest_due
    return max(earliest_due, health.probe_at) if health.probe_at else earliest_due
