"""The status line systemd shows for the daemon."""

from __future__ import annotations

import pytest

from daemon.db import outbox
from daemon.model.subscription_state import State
from daemon.service import supervision

OK, FAILING, PAUSED = State.OK, State.FAILING, State.PAUSED


@pytest.mark.parametrize(
    ("states", "pending", "dead", "expected"),
    [
        (
            [OK] * 10 + [PAUSED, FAILING],
            3,
            0,
            "12 subscriptions (10 ok, 1 failing, 1 paused), 3 pending, 0 dead",
        ),
        ([OK], 0, 0, "1 subscription (1 ok), 0 pending, 0 dead"),
        (
            [State.NOT_STARTED, State.ORPHANED],
            2,
            1,
            "1 subscription (1 not started), 1 orphaned, 2 pending, 1 dead",
        ),
        ([], 0, 7, "0 subscriptions, 0 pending, 7 dead"),
        ([State.ORPHANED], 0, 7, "0 subscriptions, 1 orphaned, 0 pending, 7 dead"),
    ],
)
def test_status_line(states: list[State], pending: int, dead: int, expected: str) -> None:
    assert supervision.status_line(states, outbox.OutboxTotals(pending, dead)) == expected


@pytest.mark.parametrize(
    ("read_took_s", "expected"),
    [
        (0.0, 10.0),  # a few subscriptions: every interval
        (0.1, 10.0),  # 1 % of the interval: still every interval
        (0.2, 20.0),  # 10,000 subscriptions: read no more than 1 % of the time
        (3.0, 300.0),  # a slow database: the line waits, the daemon does not
    ],
)
def test_reading_the_states_takes_at_most_a_share_of_the_time(
    read_took_s: float, expected: float
) -> None:
    assert supervision.next_status_wait(10.0, read_took_s) == pytest.approx(expected)
