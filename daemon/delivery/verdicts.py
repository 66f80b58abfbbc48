"""What an attempt's answer means: for the event (delivered, retried when, dead-lettered) and
for its subscription's health (paused, resumed, disabled by a 410). No I/O: the Deliverer
records the outcome and saves the health this decides."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def _endpoints(subscriptions: Mapping[str, SubscriptionConfig]) -> dict[str, str]:
    # A fingerprint is a SHA-256 of the URL: computed once per configuration, not per claim.
    return {name: sub.endpoint for name, sub in subscriptions.items()}


class Judge:
    """Decides outcomes, and keeps each subscription's health as this process last read it.
    The health itself changes in the database, where every replica's attempts are counted
    (`health_store.record_attempts`): each outcome carries its `effect` there."""

    def __init__(
        self,
        subscriptions: Mapping[str, SubscriptionConfig],
        settings: DeliveryConfig,
        random_unit: Callable[[], float],
    ) -> None:
        self._subscriptions = dict(subscriptions)
        self._endpoints = _endpoints(subscriptions)
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_schedule, settings.max_attempts, settings.jitter)
        self._random_unit = random_unit
        # Health as this process sees it: the database's last word (`_recorded`), with this
        # process's attempts not yet written applied on top (`_unwritten`).
        self.health: dict[str, endpoint_health.Health] = {}
        self._recorded: dict[str, endpoint_health.Health] = {}
        self._unwritten: dict[str, list[deliveries.Outcome]] = {}
        self.unsaved: set[str] = set()  # changed here, not yet in the database

    def reconfigure(
        self, subscriptions: Mapping[str, SubscriptionConfig], settings: DeliveryConfig
    ) -> None:
        """A reload: new settings for the next outcome; health and failure counts stay, but
        for a new `callback_url`: a new endpoint starts healthy (`endpoint_health.for_endpoint`)."""
        for name, sub in subscriptions.items():
            if name not in self._subscriptions or sub.endpoint == self._endpoint(name):
                continue
            if name in self._recorded:  # saved when `refresh` reads the row
                self._recorded[name] = endpoint_health.for_endpoint(
                    self._recorded[name], sub.endpoint
                )
            self._unwritten.pop(name, None)  # the old endpoint's
        self._subscriptions = dict(subscriptions)
        self._endpoints = _endpoints(subscriptions)
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_schedule, settings.max_attempts, settings.jitter)
        for name in {*self._recorded, *self.health}:
            self._recompute(name)

    def _endpoint(self, name: str) -> str | None:
        return self._endpoints.get(name)

    def endpoint(self, name: str) -> str | None:
        """The configured callback_url's fingerprint (None: no longer configured)."""
        return self._endpoints.get(name)

    def state(self, name: str) -> str:
        return self.health.get(name, endpoint_health.HEALTHY).state

    def refresh(self, stored: Mapping[str, endpoint_health.Health]) -> None:
        """What the database says (the operator's switches, another process's decisions),
        except where this process changed it since."""
        for name in self._subscriptions:
            if name in self.unsaved:
                continue  # ours is newer
            recorded = stored.get(name)
            after = endpoint_health.for_endpoint(
                recorded or endpoint_health.HEALTHY, self._endpoint(name)
            )
            self._recorded[name] = after
            self._recompute(name)
            if recorded is not None and after != recorded:
                # Recorded for another URL (or before URLs were): saved as this URL's, so
                # every reader sees it, and going back to the old URL starts healthy too.
                self.unsaved.add(name)

    def observe(self, name: str, recorded: endpoint_health.Health) -> None:
        """What a claim or a recorded batch just read or wrote (newer than `refresh`'s)."""
        if name in self._subscriptions and name not in self.unsaved:
            self._recorded[name] = endpoint_health.for_endpoint(recorded, self._endpoint(name))
            self._recompute(name)

    def anticipate(self, outcome: deliveries.Outcome) -> None:
        """Apply an attempt to this process's view at once, so a failing consumer stops
        getting POSTs from here before the batch is written; the database's count, to which
        every replica adds, replaces it once written (`written`, `observe`)."""
        if outcome.effect is None:
            return
        name = outcome.claimed.subscription
        unwritten = self._unwritten.setdefault(name, [])
        unwritten.append(outcome)
        if len(unwritten) == 1 or name not in self.health:
            self._recompute(name)
            return
        # `health` is the recorded health with the earlier unwritten outcomes applied: apply
        # this one alone (recomputing all of them made a batch's outcomes quadratic).
        self.health[name] = self._after(name, self.health[name], outcome)

    def written(self, outcomes: list[deliveries.Outcome]) -> None:
        """These outcomes are in the database (or lost): the next `observe` counts them."""
        done = {id(outcome) for outcome in outcomes}
        for name in {outcome.claimed.subscription for outcome in outcomes}:
            left = [o for o in self._unwritten.get(name, ()) if id(o) not in done]
            if left:
                self._unwritten[name] = left
            else:
                self._unwritten.pop(name, None)
            self._recompute(name)

    def _after(
        self, name: str, health: endpoint_health.Health, outcome: deliveries.Outcome
    ) -> endpoint_health.Health:
        assert outcome.effect is not None
        health, _ = endpoint_health.after_attempt(
            health,
            outcome.effect,
            outcome.attempted_at,
            outcome.error,
            pause_after=self.pause_after(name),
            probe_interval_s=self._settings.probe_interval,
            probe=outcome.claimed.probe,
        )
        return health

    def _recompute(self, name: str) -> None:
        health = self._recorded.get(name, endpoint_health.HEALTHY)
        for outcome in self._unwritten.get(name, ()):
            health = self._after(name, health, outcome)
        self.health[name] = health

    def pause_after(self, name: str) -> int:
        # A reload may have removed the subscription while its POST was in flight.
        configured = self._subscriptions.get(name)
        return (configured.pause_after if configured else None) or self._settings.pause_after

    def outcome(self, row: deliveries.Claimed, attempt: Attempt) -> deliveries.Outcome:
        """Decide what the attempt means for the event, and for the subscription's health."""
        name = row.subscription
        log_extra = {"subscription": name, "event_id": row.event_id}
        at, status, error = attempt.at, attempt.status, attempt.error
        verdict = retry_policy.classify(status) if error is None or status else "transient"
        if verdict == "success":
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
                row, at, status, None, attempt.duration_ms, "delivered", reply=attempt.reply,
                effect="success",
            )  # fmt: skip
        if verdict == "gone":
            # The consumer asks us to stop: disable, and keep the event for after `enable`.
            return deliveries.Outcome(
                row, at, status, error, attempt.duration_ms, "retry", at,
                reply=attempt.reply, advance=False, effect="gone",
            )  # fmt: skip
        effect: endpoint_health.Effect = "refused" if attempt.refused else "failure"
        if row.probe:
            # A failed probe: the pause goes on, and the event keeps its due time, so the next
            # probe is the same event (rotating would show a consumer each event once per
            # thousands of probes). Its own schedule advances only when the consumer answers
            # and rejects it: a poison event dies after its rejections, and the next is probed.
            rejected = verdict == "rejected"
            limit = retry_policy.attempt_limit(self._policy, rejected=True)
            if rejected and row.attempts + 1 >= limit:
                return self._dead(row, attempt, verdict, effect)
            return deliveries.Outcome(
                row, at, status, error, attempt.duration_ms, "retry", row.next_attempt_at or at,
                reply=attempt.reply, advance=rejected, effect=effect,
            )  # fmt: skip
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
            return self._dead(row, attempt, verdict, effect)
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
            row, at, status, error, attempt.duration_ms, "retry", retry_at, reply=attempt.reply,
            effect=effect,
        )  # fmt: skip

    def _dead(
        self,
        row: deliveries.Claimed,
        attempt: Attempt,
        verdict: str,
        effect: endpoint_health.Effect,
    ) -> deliveries.Outcome:
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
            reply=attempt.reply, effect=effect,
        )  # fmt: skip


def log_transition(name: str, new: endpoint_health.Health, action: str) -> None:
    """One line per transition, by the replica whose recorded attempt made it."""
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
