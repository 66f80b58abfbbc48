"""`endpoint_health.for_endpoint`: health judged on one callback_url does not hold a new one
back, except an operator's disable; health recorded before endpoints were is the current one's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from daemon.model import endpoint_health
from daemon.model.endpoint_health import Health

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OLD = endpoint_health.fingerprint("https://old.example/hook?token=s3cret")
NEW = endpoint_health.fingerprint("https://new.example/hook")

PAUSED = endpoint_health.paused("3 consecutive failures", AT, 60)
GONE = endpoint_health.gone(AT)
OPERATOR = endpoint_health.disabled("disabled by an operator", AT)
OPERATOR_WHILE_PAUSED = endpoint_health.disabled("disabled by an operator", AT, PAUSED)


@pytest.mark.parametrize(
    ("recorded", "recorded_for", "now_for", "state"),
    [
        (PAUSED, OLD, OLD, "paused"),
        (PAUSED, OLD, NEW, "ok"),
        (PAUSED, None, NEW, "paused"),  # before revision 0009: taken to be this URL's
        (PAUSED, OLD, None, "paused"),  # not configured: no URL to judge it against
        (GONE, OLD, OLD, "disabled"),
        (GONE, OLD, NEW, "ok"),  # the 410 was the old endpoint's word
        (OPERATOR, OLD, NEW, "disabled"),
        (OPERATOR, None, NEW, "disabled"),
        (OPERATOR_WHILE_PAUSED, OLD, NEW, "disabled"),
        (endpoint_health.HEALTHY, OLD, NEW, "ok"),
    ],
)
def test_health_applies_to_the_endpoint_it_was_judged_on(
    recorded: Health, recorded_for: str | None, now_for: str | None, state: str
) -> None:
    health = replace(recorded, endpoint=recorded_for)
    result = endpoint_health.for_endpoint(health, now_for)
    assert result.state == state
    assert result.endpoint == (now_for or recorded_for)


def test_an_operators_disable_keeps_its_reason_and_drops_the_old_pause() -> None:
    health = replace(OPERATOR_WHILE_PAUSED, endpoint=OLD)
    result = endpoint_health.for_endpoint(health, NEW)
    assert (result.disabled_at, result.disabled_reason) == (AT, "disabled by an operator")
    assert (result.paused_at, result.probe_at, result.probe_interval_s) == (None, None, None)


def test_a_fingerprint_is_a_digest_never_the_url() -> None:
    assert len(OLD) == 64 and "s3cret" not in OLD and OLD != NEW
    assert GONE.gone and not OPERATOR.gone and not PAUSED.gone


def test_a_success_of_a_healthy_endpoint_changes_nothing_and_copies_nothing() -> None:
    health = Health(endpoint="e")
    after, transition = endpoint_health.after_attempt(
        health, "success", datetime(2026, 1, 1, tzinfo=UTC), None, pause_after=3,
        probe_interval_s=60,
    )  # fmt: skip
    assert after is health and transition is None
    assert endpoint_health.for_endpoint(health, "e") is health


def test_the_judge_applies_each_outcome_once_as_a_full_recount_would() -> None:
    """`anticipate` applies the new outcome to the view alone; `written` and `observe` count
    again from the recorded health: both give what applying every outcome in order gives."""
    from daemon.config import DeliveryConfig
    from daemon.delivery import verdicts
    from daemon.model import deliveries
    from tests.delivery_harness import subscription

    settings = DeliveryConfig(pause_after=4)
    sub = subscription("s", "http://127.0.0.1:1/s")
    judge = verdicts.Judge({"s": sub}, settings, lambda: 0.5)
    judge.refresh({})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    effects: list[endpoint_health.Effect] = ["failure", "success", "failure", "failure"]
    effects += ["failure", "failure", "success", "failure"]
    outcomes = [
        deliveries.Outcome(
            deliveries.Claimed(i, f"e{i}", "s", "t", "1", "{}", 0, at),
            at,
            500,
            "boom",
            1,
            "retry",
            effect=effect,
        )
        for i, effect in enumerate(effects)
    ]
    expected, states = judge.health["s"], []
    for outcome in outcomes:
        judge.anticipate(outcome)
        assert outcome.effect is not None
        expected, _ = endpoint_health.after_attempt(
            expected, outcome.effect, at, "boom", pause_after=4,
            probe_interval_s=settings.probe_interval,
        )  # fmt: skip
        assert judge.health["s"] == expected
        states.append(judge.state("s"))
    assert states[5:] == ["paused", "ok", "ok"]  # four failures in a row; a success resumes
    judge.written(outcomes[:5])  # the rest is still applied on top of the recorded health
    recorded = endpoint_health.for_endpoint(endpoint_health.HEALTHY, sub.endpoint)
    rest = recorded
    for outcome in outcomes[5:]:
        assert outcome.effect is not None
        rest, _ = endpoint_health.after_attempt(
            rest, outcome.effect, at, "boom", pause_after=4,
            probe_interval_s=settings.probe_interval,
        )  # fmt: skip
    assert judge.health["s"] == rest
