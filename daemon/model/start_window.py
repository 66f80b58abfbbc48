"""`max_per_second` across replicas: the recent starts of a subscription as one short text in
its database row, reserved inside each claim's transaction.

A claim reserves starts at its own time and its rows must start within `START_GRACE_S` of it
(or go back to the outbox). A reservation is forgotten only `1 + START_GRACE_S` after it was
made, so no `max_per_second + 1` starts ever fall within one second, whichever replicas made
them: the last of them would have seen the others still counted. The price: a backlog goes
out at `max_per_second` per `1 + START_GRACE_S` seconds, in bursts. Pure: `db.delivery_limits`
reads and writes the text.
"""

from __future__ import annotations

import math
from datetime import datetime

START_GRACE_S = 0.25  # a reserved start happens within this long of its claim, or not at all
WINDOW_S = 1.0


def _decode(text: str | None) -> list[tuple[float, int]]:
    """`"<unix seconds>:<count> ..."`, oldest first."""
    entries = []
    for part in (text or "").split():
        at, _, count = part.partition(":")
        entries.append((float(at), int(count)))
    return entries


def _recent(text: str | None, now: datetime) -> list[tuple[float, int]]:
    horizon = now.timestamp() - (WINDOW_S + START_GRACE_S)
    return [(at, count) for at, count in _decode(text) if at > horizon]


def permits(text: str | None, now: datetime, max_per_second: int) -> int:
    """How many starts a claim at `now` may reserve."""
    return max(0, max_per_second - sum(count for _, count in _recent(text, now)))


def reserve(text: str | None, now: datetime, count: int) -> str | None:
    """The text after a claim at `now` reserved `count` starts (forgotten ones pruned)."""
    entries = _recent(text, now)
    if count > 0:
        # Rounded up to the millisecond: never forgotten early.
        entries.append((math.ceil(now.timestamp() * 1000) / 1000, count))
    return " ".join(f"{at:.3f}:{n}" for at, n in entries) or None
