"""A subscription's state (ok, failing, paused, disabled, not started, orphaned), decided once
from its feed, its endpoint's health and the config, and spelled once for each reader: `status`
and `status --json`, the admin page, `/metrics` and systemd's status line.

Spellings: `State.value` (`not_started`) is the machine form: metric labels, CSS classes and
`status --json`'s `state`. `State.label` (`not started`) is what people read: the `status`
table, the admin page, systemd. `status --json`'s older `status` key is the feed's own state
(`Verdict.feed`) in the spelling it has always had, which is the label (`"not started"`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

POLL_FAILING = "failing"  # the feed's stored status after a failed poll (the other is "ok")
ORPHAN_REASON = "not in the config file; its rows stay in the outbox"


class State(enum.StrEnum):
    """In the order `/metrics` lists them."""

    OK = "ok"
    FAILING = "failing"  # its polls fail, or a pending event's delivery attempts did
    PAUSED = "paused"  # its consumer kept failing: one probe at a time until one succeeds
    DISABLED = "disabled"  # by an operator or a 410 Gone: events queue, nothing is sent
    NOT_STARTED = "not_started"  # configured, never polled yet
    ORPHANED = "orphaned"  # in the database, no longer in the config

    @property
    def label(self) -> str:
        """The spelling people read: `not started`."""
        return self.value.replace("_", " ")

    @property
    def needs_attention(self) -> bool:
        """Whether `status` exits 1 for it. Not started is not: the daemon is about to poll."""
        return self in NEEDS_ATTENTION


NEEDS_ATTENTION = frozenset({State.FAILING, State.PAUSED, State.DISABLED, State.ORPHANED})


class EndpointHealth(Protocol):
    """What the state reads of `db.endpoint_health.Health`."""

    @property
    def disabled_at(self) -> datetime | None: ...
    @property
    def disabled_reason(self) -> str | None: ...
    @property
    def paused_at(self) -> datetime | None: ...
    @property
    def pause_reason(self) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    """The state, why (None when ok or not started) and since when (None when unknown); and
    `feed`, the state its feed alone gives (ok, failing, not started or orphaned), which a
    paused or disabled subscription keeps while it polls."""

    state: State
    reason: str | None = None
    since: datetime | None = None
    feed: State = State.OK

    @property
    def json_state(self) -> str:
        """`status --json`'s `state`, whose values scripts already read: a subscription not
        started yet is `ok` there, as it always was (its `status` says `not started`)."""
        return State.OK.value if self.state is State.NOT_STARTED else self.state.value


def derive(
    *,
    configured: bool,
    poll_status: str | None,
    poll_error: str | None = None,
    polled_at: datetime | None = None,
    health: EndpointHealth | None = None,
    delivery_error: str | None = None,
) -> Verdict:
    """The first that holds: orphaned (not `configured`), disabled, paused (`health`), failing
    (the last poll failed, or a pending event failed an attempt: `delivery_error`), not started
    (`poll_status` None: no poll yet), ok."""
    if not configured:
        return Verdict(State.ORPHANED, ORPHAN_REASON, None, State.ORPHANED)
    if poll_status is None:
        feed = State.NOT_STARTED
    else:
        feed = State.FAILING if poll_status == POLL_FAILING else State.OK
    if health is not None and health.disabled_at is not None:
        return Verdict(State.DISABLED, health.disabled_reason, health.disabled_at, feed)
    if health is not None and health.paused_at is not None:
        return Verdict(State.PAUSED, health.pause_reason, health.paused_at, feed)
    if feed is State.FAILING:
        return Verdict(State.FAILING, poll_error, polled_at, feed)
    if delivery_error is not None:
        return Verdict(State.FAILING, delivery_error, None, feed)
    return Verdict(feed, None, None, feed)
