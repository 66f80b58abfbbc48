"""What Pipedrive does after a delivery attempt (guide for webhooks v1/v2): retry a failure after
3, 30 and 150 s, ban a webhook for 30 min after 10 failed first attempts in a row, delete it after
3 days without a success. Pure: the sender passes its monotonic now and acts on the verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace

RETRY_DELAYS_S = (3.0, 30.0, 150.0)  # attempts 2, 3 and 4; then the event is dropped
TIMEOUT_S = 10.0  # "a response taking more than 10 seconds" is a failure
BAN_AFTER_FIRST_FAILURES = 10
BAN_S = 30 * 60.0
DELETE_AFTER_S = 3 * 24 * 3600.0


@dataclass(frozen=True)
class Timings:
    """Pipedrive's delays; `scaled(0.001)` makes them test-sized, `replace` tunes one."""

    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    timeout_s: float = TIMEOUT_S
    ban_after: int = BAN_AFTER_FIRST_FAILURES
    ban_s: float = BAN_S
    delete_after_s: float = DELETE_AFTER_S

    def scaled(self, factor: float) -> Timings:
        if factor <= 0:
            raise ValueError(f"a time scale must be > 0 (got {factor})")
        return replace(
            self,
            retry_delays_s=tuple(delay * factor for delay in self.retry_delays_s),
            timeout_s=self.timeout_s * factor,
            ban_s=self.ban_s * factor,
            delete_after_s=self.delete_after_s * factor,
        )

    @property
    def attempts(self) -> int:
        return 1 + len(self.retry_delays_s)


@dataclass(frozen=True)
class Health:
    """One webhook's delivery record, in the sender's monotonic seconds."""

    first_failures: int = 0  # failed first attempts in a row
    banned_until: float | None = None
    failing_since: float | None = None  # the first failure after the last success

    def banned(self, now: float) -> bool:
        return self.banned_until is not None and now < self.banned_until


@dataclass(frozen=True)
class Verdict:
    retry_in: float | None  # seconds until the next attempt, None: no more attempts
    banned: bool  # this failure started a ban
    delete: bool  # no success for delete_after_s: Pipedrive deletes the webhook


def after_attempt(
    health: Health, attempt: int, ok: bool, now: float, timings: Timings
) -> tuple[Health, Verdict]:
    """The webhook's health after attempt number `attempt` (1-based) succeeded or failed."""
    if ok:
        first_failures = 0 if attempt == 1 else health.first_failures
        return replace(health, first_failures=first_failures, failing_since=None), Verdict(
            None, False, False
        )
    failing_since = health.failing_since if health.failing_since is not None else now
    first_failures = health.first_failures + (attempt == 1)
    banned = attempt == 1 and first_failures >= timings.ban_after
    delete = now - failing_since >= timings.delete_after_s
    after = Health(
        first_failures=0 if banned else first_failures,
        banned_until=now + timings.ban_s if banned else health.banned_until,
        failing_since=failing_since,
    )
    retry_in = None
    if not (banned or delete) and attempt < timings.attempts:
        retry_in = timings.retry_delays_s[attempt - 1]
    return after, Verdict(retry_in, banned, delete)
