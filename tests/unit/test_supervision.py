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
