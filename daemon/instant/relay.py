"""Nudges for accounts another replica holds, passed on through the database: the ingress
queues them in memory (the 200 never waits for the database) and a background task writes
them (`db.instant_nudges`: the items they name, or their feed); every replica drains the rows
of the accounts it holds about once a second and acts on them as on its own nudges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import instant_nudges, transient
from daemon.instant.nudges import Nudge

logger = logging.getLogger(__name__)

DRAIN_EVERY_S = 1.0
RETRY_AFTER_S = 1.0  # a failed write waits this long before the next one
PRUNE_EVERY_S = 600.0
PRUNE_AFTER = timedelta(hours=1)  # a row nobody drained: the reconciliation read it long ago
MAX_ITEMS = 10_000  # relayed deletes (changes) not written yet: past it, the feed is listed

OnNudge = Callable[[Nudge], None]


class Outbound:
    """Relayed nudges not written yet: one entry per feed, so a flood is bounded by the
    accounts and object types, and written as one upsert."""

    def __init__(self, engine: AsyncEngine, clock: clock_module.Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._pending: dict[instant_nudges.Feed, datetime] = {}
        self._deletes: dict[instant_nudges.Item, datetime] = {}  # at most MAX_ITEMS
        self._changes: dict[instant_nudges.Item, datetime] = {}  # at most MAX_ITEMS
        self._wake = asyncio.Event()
        self._outage = transient.Outage()

    def add(self, nudge: Nudge) -> None:
        now, item = self._clock.now(), nudge.entity_id
        if nudge.action == "delete" and item is not None:
            self._pending[(nudge.account, nudge.object_type)] = now
            if len(self._deletes) < MAX_ITEMS:  # a flood of forged deletes stays bounded
                self._deletes[(nudge.account, nudge.object_type, item)] = now
        elif item is not None and len(self._changes) < MAX_ITEMS:
            self._changes[(nudge.account, nudge.object_type, item)] = now
        else:  # names no item, or a flood: the holder lists the feed
            self._pending[(nudge.account, nudge.object_type)] = now
        self._wake.set()

    def __len__(self) -> int:
        """Entries not written yet (a feed, a delete, an item changed): bounded."""
        return len(self._pending) + len(self._deletes) + len(self._changes)

    async def write(self) -> bool:
        """Write what is pending; False (kept for the next try) when the database failed."""
        if not self._pending and not self._deletes and not self._changes:
            return True
        taken, self._pending = self._pending, {}
        deletes, self._deletes = self._deletes, {}
        changes, self._changes = self._changes, {}
        try:
            await instant_nudges.relay(self._engine, taken, deletes, changes)
        except Exception as error:
            for feed, at in taken.items():
                self._pending[feed] = max(at, self._pending.get(feed, at))
            self._deletes = {**deletes, **self._deletes}
            self._changes = {**changes, **self._changes}
            self._outage.failed("relaying instant nudges", error)
            return False
        self._outage.recovered()
        return True

    async def run(self) -> None:
        """Write as nudges come, until cancelled (what came meanwhile goes in one upsert)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.write():
                await self._clock.sleep(RETRY_AFTER_S)
                self._wake.set()


async def drain_loop(
    engine: AsyncEngine,
    accounts: Callable[[], Iterable[str]],
    holds: Callable[[str], bool],
    on_nudge: OnNudge,
    clock: clock_module.Clock,
) -> None:
    """Every `DRAIN_EVERY_S`, take the relayed nudges of the accounts this replica holds and
    hand them to `on_nudge`; now and then delete rows nobody drained. Until cancelled."""
    outage = transient.Outage()
    next_prune = clock.monotonic()
    while True:
        await clock.sleep(DRAIN_EVERY_S)
        held = [account for account in accounts() if holds(account)]
        try:
            drained = await instant_nudges.drain_all(engine, held)
        except Exception as error:  # the rows stay for the next drain
            outage.failed("draining relayed instant nudges", error)
            continue
        outage.recovered()
        now = clock.now()
        relayed = [Nudge(a, o, timestamp=now) for a, o in drained.feeds]
        relayed += [Nudge(a, o, "delete", item, timestamp=now) for a, o, item in drained.deletes]
        relayed += [Nudge(a, o, "change", item, timestamp=now) for a, o, item in drained.changes]
        for nudge in relayed:
            account, object_type = nudge.account, nudge.object_type
            try:
                on_nudge(nudge)
            except Exception:  # a bug downstream must not stop the drain
                logger.exception(
                    "instant mode: handing on a relayed nudge for %s/%s failed", account,
                    object_type, extra={"action": "instant.nudge_failed", "account": account},
                )  # fmt: skip
        if clock.monotonic() >= next_prune:
            with contextlib.suppress(Exception):  # tried again at the next prune
                await instant_nudges.prune(engine, clock.now() - PRUNE_AFTER)
            next_prune = clock.monotonic() + PRUNE_EVERY_S
