"""What the ingress counts: every call by outcome (for `/metrics`, in memory, since the start)
and per account the calls Pipedrive made (`last_nudge_at`, `nudges_today` in
`instant_webhooks`, added in batches every few seconds, never per request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import instant_webhooks, transient
from daemon.db.instant_webhooks import NudgeTally

logger = logging.getLogger(__name__)

# Outcomes of a call to the ingress.
ACCEPTED = "accepted"  # a new nudge for a watched feed
DUPLICATE = "duplicate"  # an event id seen already: Pipedrive's retry
IGNORED = "ignored"  # an object neither watched nor named in payloads (products, notes...)
REFRESHED = "refreshed"  # an object no subscription watches but payloads name (a user)
MALFORMED = "malformed"  # not a webhooks v2 body: 400
UNAUTHORIZED = "unauthorized"  # wrong or missing credentials, unknown account: 401
OVERSIZE = "oversize"  # over the body limit: every feed of the account is nudged
OUTCOMES = (ACCEPTED, DUPLICATE, IGNORED, REFRESHED, MALFORMED, UNAUTHORIZED, OVERSIZE)

FLUSH_EVERY_S = 5.0


class NudgeCounts:
    """Calls answered by outcome since the start: counters that only grow, for a Prometheus
    counter `pipedrive_triggers_instant_nudges_total{outcome}`."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(OUTCOMES, 0)

    def add(self, outcome: str) -> None:
        self._counts[outcome] += 1

    def __getitem__(self, outcome: str) -> int:
        return self._counts[outcome]

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)


class Tallies:
    """Per account, the authenticated calls since the last flush: bounded by the accounts."""

    def __init__(self) -> None:
        self._pending: dict[str, NudgeTally] = {}
        self._outage = transient.Outage()

    def add(self, account: str, at: datetime) -> None:
        known = self._pending.get(account)
        count = 1 if known is None else known.count + 1
        last_at = at if known is None else max(known.last_at, at)
        self._pending[account] = NudgeTally(count, last_at)

    def _put_back(self, taken: Mapping[str, NudgeTally]) -> None:
        for account, tally in taken.items():
            known = self._pending.get(account)
            if known is not None:
                tally = NudgeTally(tally.count + known.count, max(tally.last_at, known.last_at))
            self._pending[account] = tally

    async def flush(self, engine: AsyncEngine, now: datetime) -> None:
        """Add what was counted to the database; on a failure it is kept for the next try."""
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        try:
            await instant_webhooks.add_nudges(engine, taken, now)
        except Exception as error:
            self._put_back(taken)
            self._outage.failed("counting instant nudges", error)
            return
        self._outage.recovered()

    async def run(self, engine: AsyncEngine, clock: clock_module.Clock) -> None:
        """Flush every `FLUSH_EVERY_S` until cancelled."""
        while True:
            await clock.sleep(FLUSH_EVERY_S)
            await self.flush(engine, clock.now())
