"""What the database remembers that the config no longer says: orphaned queues, a changed
`start` or `trigger`. Decided by a pure function, logged once at start and at each reload,
before the first poll acts on it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.config import Config
from daemon.db import feed_store, outbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orphan:
    """A subscription no longer in the config whose events are still in the outbox."""

    subscription: str
    trigger: str | None  # from its feed state, if it ever polled
    pending: int
    dead: int


@dataclass(frozen=True)
class Finding:
    subscription: str
    action: str
    message: str


def orphans(
    configured: set[str],
    counts: Mapping[str, outbox.SubscriptionCounts],
    states: Mapping[str, feed_store.SubscriptionState],
) -> list[Orphan]:
    """Subscriptions with pending events or dead letters that the config does not name."""
    return [
        Orphan(name, states[name].trigger if name in states else None, c.pending, c.dead)
        for name, c in sorted(counts.items())
        if name not in configured and (c.pending or c.dead)
    ]


def findings(
    config: Config,
    counts: Mapping[str, outbox.SubscriptionCounts],
    states: Mapping[str, feed_store.SubscriptionState],
) -> list[Finding]:
    result = [
        Finding(
            o.subscription,
            "config.orphaned",
            f"subscription {o.subscription!r} is no longer in the config but has {o.pending} "
            f"pending events and {o.dead} dead letters: they are kept, not delivered; put it "
            f"back, or carry them over with `pipedrive-triggers subscriptions rename "
            f"{o.subscription} NEW`",
        )
        for o in orphans({s.name for s in config.subscriptions}, counts, states)
    ]
    for sub in config.subscriptions:
        state = states.get(sub.name)
        if state is None:
            continue
        if state.trigger != sub.trigger or state.account != sub.account:
            was = f"{state.trigger} on {state.account!r}"
            now_is = f"{sub.trigger} on {sub.account!r}"
            if isinstance(sub.start, datetime):
                plan = (
                    f"fires {sub.trigger} for what changed since {times.format_iso(sub.start)} "
                    '(a backfill; set start = "now" to fire only what happens from now on)'
                )
            else:
                plan = 'fires only what happens from now on (start = "now")'
            result.append(
                Finding(
                    sub.name,
                    "config.trigger_changed",
                    f"subscription {sub.name!r}: changed from {was} to {now_is}: its next poll "
                    f"starts it afresh and {plan}",
                )
            )
        elif isinstance(sub.start, datetime) and sub.start != state.start_at:
            result.append(
                Finding(
                    sub.name,
                    "config.start_ignored",
                    f"subscription {sub.name!r}: start changed to "
                    f"{times.format_iso(sub.start)}, but it started at "
                    f"{times.format_iso(state.start_at)} and reads on from there; "
                    "`start` only applies to a new subscription (give it a new name to "
                    "start again)",
                )
            )
    return result


async def warn(engine: AsyncEngine, config: Config) -> list[Finding]:
    """Log each finding once, as a warning naming its subscription."""
    found = findings(config, await outbox.counts(engine), await feed_store.load_states(engine))
    for finding in found:
        logger.warning(
            "%s",
            finding.message,
            extra={"action": finding.action, "subscription": finding.subscription},
        )
    return found
