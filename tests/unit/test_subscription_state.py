"""A subscription's state, decided once for `status`, the admin page, `/metrics` and systemd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon import metrics
from daemon.model import endpoint_health
from daemon.model.subscription_state import ORPHAN_REASON, State, Verdict, derive

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLLED = NOW - timedelta(minutes=1)
OFF = endpoint_health.disabled("disabled by an operator", NOW)
PAUSED = endpoint_health.paused("10 failed attempts", NOW, 60)
OFF_AND_PAUSED = endpoint_health.disabled("410 Gone", NOW, PAUSED)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # configured, never polled
        ({"poll_status": None}, Verdict(State.NOT_STARTED, feed=State.NOT_STARTED)),
        ({"poll_status": "ok", "polled_at": POLLED}, Verdict(State.OK, feed=State.OK)),
        (
            {"poll_status": "ok", "poll_error": "an old error", "polled_at": POLLED},
            Verdict(State.OK, feed=State.OK),
        ),
        (
            {"poll_status": "failing", "poll_error": "Pipedrive 500", "polled_at": POLLED},
            Verdict(State.FAILING, "Pipedrive 500", POLLED, State.FAILING),
        ),
        # polls fine, but a pending event failed an attempt
        (
            {"poll_status": "ok", "delivery_error": "callback returned 503"},
            Verdict(State.FAILING, "callback returned 503", None, State.OK),
        ),
        # a failing poll is named before a failing delivery
        (
            {"poll_status": "failing", "poll_error": "timeout", "delivery_error": "503"},
            Verdict(State.FAILING, "timeout", None, State.FAILING),
        ),
        (
            {"poll_status": None, "delivery_error": "503"},
            Verdict(State.FAILING, "503", None, State.NOT_STARTED),
        ),
        # the endpoint's health comes before the feed's; the feed's own state is kept
        (
            {"poll_status": "ok", "health": PAUSED},
            Verdict(State.PAUSED, "10 failed attempts", NOW, State.OK),
        ),
        (
            {"poll_status": "failing", "health": PAUSED, "delivery_error": "503"},
            Verdict(State.PAUSED, "10 failed attempts", NOW, State.FAILING),
        ),
        (
            {"poll_status": "ok", "health": OFF},
            Verdict(State.DISABLED, "disabled by an operator", NOW, State.OK),
        ),
        ({"poll_status": "ok", "health": OFF_AND_PAUSED}, Verdict(State.DISABLED, "410 Gone", NOW)),
        (
            {"poll_status": None, "health": OFF},
            Verdict(State.DISABLED, "disabled by an operator", NOW, State.NOT_STARTED),
        ),
        ({"poll_status": "ok", "health": endpoint_health.HEALTHY}, Verdict(State.OK)),
        # not in the config: orphaned, whatever else holds
        (
            {"configured": False, "poll_status": None},
            Verdict(State.ORPHANED, ORPHAN_REASON, None, State.ORPHANED),
        ),
        (
            {"configured": False, "poll_status": "failing", "health": OFF, "delivery_error": "x"},
            Verdict(State.ORPHANED, ORPHAN_REASON, None, State.ORPHANED),
        ),
    ],
)
def test_derive(inputs: dict[str, object], expected: Verdict) -> None:
    assert derive(**{"configured": True, **inputs}) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "value", "label", "json_state", "needs_attention"),
    [
        (State.OK, "ok", "ok", "ok", False),
        (State.FAILING, "failing", "failing", "failing", True),
        (State.PAUSED, "paused", "paused", "paused", True),
        (State.DISABLED, "disabled", "disabled", "disabled", True),
        # `status --json`'s `state` never said not started (its `status` does, with a space)
        (State.NOT_STARTED, "not_started", "not started", "ok", False),
        (State.ORPHANED, "orphaned", "orphaned", "orphaned", True),
    ],
)
def test_spellings(
    state: State, value: str, label: str, json_state: str, needs_attention: bool
) -> None:
    assert (state.value, state.label, Verdict(state).json_state) == (value, label, json_state)
    assert state.needs_attention is needs_attention


def test_the_metric_labels_are_the_states_values() -> None:
    assert metrics.STATES == ("ok", "failing", "paused", "disabled", "not_started", "orphaned")
