"""What an attempt's answer means: for the event (delivered, retried when, dead-lettered) and
for its subscription's health (paused, resumed, disabled by a 410). No I/O: the Deliverer
records the outcome and saves the health this decides."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from daemon import times
from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.delivery import retry_policy
from daemon.delivery.retry_policy import RetryPolicy, next_attempt
from daemon.model import deliveries, endpoint_health

logger = logging.getLogger("daemon.delivery.deliverer")  # the delivery loop's lines, as before


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None
    reply: str | None
    refused: bool  # the target guard refused it: not the consumer's failure


def _took(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Judge:
    """Decides outcomes and keeps each subscription's health as this process knows it."""

    def __init__(
        self,
        subscriptions: Mapping[str, SubscriptionConfig],
        settings: DeliveryConfig,
        random_unit: Callable[[], float],
    ) -> None:
        self._subscriptions = dict(subscriptions)
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_schedule, settings.max_attempts, settings.jitter)
        self._random_unit = random_unit
        self.health: dict[str, endpoint_health.Health] = {}
        self.unsaved: set[str] = set()  # changed here, not yet in the database
        self.failures: Counter[str] = Counter()  # consecutive failed attempts

    def reconfigure(
        self, subscriptions: Mapping[str, SubscriptionConfig], settings: DeliveryConfig
    ) -> None:
        """A reload: new settings for the next outcome; health and failure counts stay, but
        for a new `callback_url`: a new endpoint starts healthy (`endpoint_health.for_endpoint`)."""
        for name, sub in subscriptions.items():
            if name not in self._subscriptions or sub.endpoint == self._endpoint(name):
                continue
            self.failures[name] = 0
            if name in self.health:  # saved when `refresh` reads the row (or ours, if newer)
                self.health[name] = endpoint_health.for_endpoint(self.health[name], sub.endpoint)
        self._subscriptions = dict(subscriptions)
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_schedule, settings.max_attempts, settings.jitter)

    def _endpoint(self, name: str) -> str | None:
        configured = self._subscriptions.get(name)
        return configured.endpoint if configured else None

    def state(self, name: str) -> str:
        return self.health.get(name, endpoint_health.HEALTHY).state

    def refresh(self, stored: Mapping[str, endpoint_health.Health]) -> None:
        """What the database says (the operator's switches, another process's decisions),
        except where this process changed it since."""
        for name in self._subscriptions:
            if name in self.unsaved:
                continue  # ours is newer
            before = self.health.get(name, endpoint_health.HEALTHY)
            recorded = stored.get(name)
            after = endpoint_health.for_endpoint(
                recorded or endpoint_health.HEALTHY, self._endpoint(name)
            )
            if before.state != "ok" and after.state == "ok":
                self.failures[name] = 0  # an operator switched it back on, or a new URL
            self.health[name] = after
            if recorded is not None and after != recorded:
                # Recorded for another URL (or before URLs were): saved as this URL's, so
                # every reader sees it, and going back to the old URL starts healthy too.
                self.unsaved.add(name)

    def outcome(self, row: deliveries.Claimed, attempt: Attempt) -> deliveries.Outcome:
        """Decide what the attempt means for the event, and for the subscription's health."""
        name = row.subscription
        log_extra = {"subscription": name, "event_id": row.event_id}
        at, status, error = attempt.at, attempt.status, attempt.error
        verdict = retry_policy.classify(status) if error is None or status else "transient"
        state = self.health.get(name, endpoint_health.HEALTHY)
        if verdict == "success":
            self.failures[name] = 0
            if state.state == "paused":
                self.transition(name, endpoint_health.HEALTHY, at, "resumed")
            if row.attempts > 0:
                logger.info(
                    "subscription %r: event %s delivered on attempt %d, %s after detection",
                    name,
                    row.event_id,
                    row.attempts + 1,
                    _took(at - row.created_at),
                    extra={
                        "action": "delivery.recovered",
                        **log_extra,
                        "attempt": row.attempts + 1,
                        "status": status,
                        "took_seconds": round((at - row.created_at).total_seconds(), 1),
                    },
                )
            else:
                logger.debug(
                    "subscription %r: delivered %s",
                    name,
                    row.event_id,
                    extra={"action": "delivery.delivered", **log_extra},
                )
            return deliveries.Outcome(
                row, at, status, None, attempt.duration_ms, "delivered", reply=attempt.reply
            )
        if verdict == "gone":
            # The consumer asks us to stop: disable, and keep the event for after `enable`.
            if state.state != "disabled":
                self.transition(name, endpoint_health.gone(at, state), at, "disabled")
            return deliveries.Outcome(
                row, at, status, error, attempt.duration_ms, "retry", at,
                reply=attempt.reply, advance=False,
            )  # fmt: skip
        if not attempt.refused:
            self.failures[name] += 1
        if state.state == "paused":
            # A failed probe: the pause goes on, and the event keeps its due time, so the next
            # probe is the same event (rotating would show a consumer each event once per
            # thousands of probes). Its own schedule advances only when the consumer answers
            # and rejects it: a poison event dies after its rejections, and the next is probed.
            if state.probe_at is None or at >= state.probe_at:
                self.transition(name, endpoint_health.probe_failed(state, at), at, None)
            rejected = verdict == "rejected"
            limit = retry_policy.attempt_limit(self._policy, rejected=True)
            if rejected and row.attempts + 1 >= limit:
                return self._dead(row, attempt, verdict)
            return deliveries.Outcome(
                row, at, status, error, attempt.duration_ms, "retry", row.next_attempt_at or at,
                reply=attempt.reply, advance=rejected,
            )  # fmt: skip
        # A reload may have removed the subscription while its POST was in flight.
        configured = self._subscriptions.get(name)
        pause_after = (configured.pause_after if configured else None) or self._settings.pause_after
        if state.state == "ok" and self.failures[name] >= pause_after:
            reason = f"{self.failures[name]} consecutive failures; last: {error}"
            paused = endpoint_health.paused(reason, at, self._settings.probe_interval)
            self.transition(name, paused, at, "paused")
        attempts_made = row.attempts + 1
        retry_at = next_attempt(
            self._policy,
            attempts_made,
            at,
            retry_after_s=attempt.retry_after,
            random_unit=self._random_unit(),
            rejected=verdict == "rejected",
        )
        if retry_at is None:
            return self._dead(row, attempt, verdict)
        logger.warning(
            "subscription %r: %s; event %s attempt %d of %d, next at %s",
            name,
            error,
            row.event_id,
            attempts_made,
            retry_policy.attempt_limit(self._policy, rejected=verdict == "rejected"),
            times.format_iso_seconds(retry_at),
            extra={
                "action": "delivery.failed",
                **log_extra,
                "attempt": attempts_made,
                "status": status,
                "next_attempt_at": times.format_iso_seconds(retry_at),
            },
        )
        return deliveries.Outcome(
            row, at, status, error, attempt.duration_ms, "retry", retry_at, reply=attempt.reply
        )

    def _dead(self, row: deliveries.Claimed, attempt: Attempt, verdict: str) -> deliveries.Outcome:
        attempts_made = row.attempts + 1
        logger.error(
            "subscription %r: %s; event %s dead-lettered after %d attempts",
            row.subscription,
            attempt.error,
            row.event_id,
            attempts_made,
            extra={
                "action": "delivery.dead_lettered",
                "subscription": row.subscription,
                "event_id": row.event_id,
                "attempt": attempts_made,
                "status": attempt.status,
            },
        )
        return deliveries.Outcome(
            row, attempt.at, attempt.status, attempt.error, attempt.duration_ms, "dead",
            reply=attempt.reply,
        )  # fmt: skip

    def transition(
        self, name: str, new: endpoint_health.Health, at: datetime, action: str | None
    ) -> None:
        """Change a subscription's health now (the next claim obeys it) and log it once; the
        database copy is written by `_apply_health` right after."""
        endpoint = self._endpoint(name)
        self.health[name] = new if endpoint is None else replace(new, endpoint=endpoint)
        self.unsaved.add(name)
        if action == "paused":
            logger.error(
                "subscription %r: deliveries paused after %s; probing every %ss",
                name,
                new.pause_reason,
                f"{new.probe_interval_s:g}",
                extra={"action": "delivery.paused", "subscription": name},
            )
        elif action == "resumed":
            logger.warning(
                "subscription %r: deliveries resumed: a probe was delivered",
                name,
                extra={"action": "delivery.resumed", "subscription": name},
            )
        elif action == "disabled":
            logger.error(
                "subscription %r: callback returned 410 Gone; subscription disabled (%s); "
                "`pipedrive-triggers subscriptions enable %s` resumes it",
                name,
                new.disabled_reason,
                name,
                extra={"action": "delivery.disabled", "subscription": name},
            )
