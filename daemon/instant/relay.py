"""Nudges for accounts another replica holds, passed on through the database: the ingress
queues them in memory (the 200 never waits for the database) and a background task upserts
them into `instant_nudges`; every replica drains the rows of the accounts it holds about
once a second and acts on them as on its own nudges.
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
MAX_DELETES = 10_000  # relayed deletes not written yet

OnNudge = Callable[[Nudge], None]


class Outbound:
    """Relayed nudges not written yet: one entry per feed, so a flood is bounded by the
    accounts and object types, and written as one upsert."""

    def __init__(self, engine: AsyncEngine, clock: clock_module.Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._pending: dict[instant_nudges.Feed, datetime] = {}
        self._deletes: dict[instant_nudges.Item, datetime] = {}  # at most MAX_DELETES
        self._wake = asyncio.Event()
        self._outage = transient.Outage()

    def add(self, nudge: Nudge) -> None:
        self._pending[(nudge.account, nudge.object_type)] = self._clock.now()
        if nudge.action == "delete" and nudge.entity_id is not None:
            if len(self._deletes) < MAX_DELETES:  # a flood of forged deletes stays bounded
                self._deletes[(nudge.account, nudge.object_type, nudge.entity_id)] = (
                    self._clock.now()
                )
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def write(self) -> bool:
        """Write what is pending; False (kept for the next try) when the database failed."""
        if not self._pending and not self._deletes:
            return True
        taken, self._pending = self._pending, {}
        deletes, self._deletes = self._deletes, {}
        try:
            await instant_nudges.relay(self._engine, taken, deletes)
        except Exception as error:
            for feed, at in taken.items():
                self._pending[feed] = max(at, self._pending.get(feed, at))
            self._deletes = {**deletes, **self._deletes}
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
            feeds = await instant_nudges.drain(engine, held)
        except Exception as error:  # the reconciliation poll reads what a lost nudge said
            outage.failed("draining relayed instant nudges", error)
            continue
        try:  # its own transaction: the feeds drained above are handed on whatever happens
            deletes = await instant_nudges.drain_deletes(engine, held)
        except Exception as error:
            deletes = []
            outage.failed("draining relayed instant deletes", error)
        else:
            outage.recovered()
        now = clock.now()
        relayed = [Nudge(account, object_type, timestamp=now) for account, object_type in feeds]
        relayed += [
            Nudge(account, object_type, action="delete", entity_id=item, timestamp=now)
            for account, object_type, item in deletes
        ]
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
