"""The status line systemd shows for the daemon."""

from __future__ import annotations

import pytest

from daemon.db import outbox
from daemon.service import supervision


@pytest.mark.parametrize(
    ("subscriptions", "pending", "dead", "expected"),
    [
        (12, 3, 0, "12 subscriptions, 3 pending, 0 dead"),
        (1, 0, 0, "1 subscription, 0 pending, 0 dead"),
        (0, 0, 7, "0 subscriptions, 0 pending, 7 dead"),
    ],
)
def test_status_line(subscriptions: int, pending: int, dead: int, expected: str) -> None:
    assert supervision.status_line(subscriptions, outbox.OutboxTotals(pending, dead)) == expected
