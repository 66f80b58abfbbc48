"""An event on its way to a consumer: queued (`NewEvent`), claimed for an attempt (`Claimed`),
and what the attempt decided (`Outcome`). Plain values: the poller makes the first, the outbox
stores them, the verdicts decide the last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from daemon.model.endpoint_health import Effect


@dataclass(frozen=True)
class NewEvent:
    subscription: str
    event_id: str
    event_type: str
    item_id: str
    body: str
    error: str | None = None  # set when the item could not be mapped: dead-lettered at once


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    subscription: str
    event_type: str
    item_id: str
    body: str
    attempts: int
    created_at: datetime  # when it was detected (delivery latency is counted from it)
    # When it was due: a failed probe keeps it, so the same event is probed next time.
    next_attempt_at: datetime | None = None
    # Claimed as its paused subscription's one probe (no other replica probes meanwhile).
    probe: bool = False


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    attempted_at: datetime
    status: int | None
    error: str | None
    duration_ms: int
    verdict: Literal["delivered", "retry", "dead"]
    next_attempt_at: datetime | None = None
    reply: str | None = None  # the start of the consumer's reply body, when it answered
    # False while a subscription is paused or disabled: the attempt is recorded, but the
    # event's own attempt count (and so its retry schedule) does not advance.
    advance: bool = True
    # What the attempt says about the endpoint (None: nothing, e.g. a body never sent).
    effect: Effect | None = None
