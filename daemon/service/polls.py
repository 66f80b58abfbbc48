"""The polls this process runs: one at a time per feed, awaited at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from daemon import clock as clock_module
from daemon.pipedrive import lookups
from daemon.polling import plan, poller

logger = logging.getLogger(__name__)


class Polls:
    """The polls in progress, so shutdown can await them, and which feeds are behind (a poll
    that outlasts its interval), said once instead of APScheduler's line per skipped tick.

    One poll of a feed at a time, whoever asks (its schedule, or a nudge in instant mode): a
    nudge that comes while the feed is being listed makes one more listing right after, so a
    change made during a listing is never left for the next interval."""

    def __init__(self, clock: clock_module.Clock) -> None:
        self.clock = clock
        self.running: set[asyncio.Task[object]] = set()
        self._behind: set[str] = set()
        self._listing: set[str] = set()  # feeds being polled now
        # ... and nudged meanwhile: the items to read after it (None: list the feed again)
        self._again: dict[str, frozenset[str] | None] = {}
        # Whether this replica holds an account's lease now (a tick may come between losing
        # a lease and its feeds leaving the schedule).
        self.holds: Callable[[str], bool] = lambda account: True

    async def poll(
        self,
        poll: poller.Poller,
        feed: plan.Feed,
        *,
        nudged: bool = False,
        item_ids: frozenset[str] | None = None,
    ) -> None:
        """A tick of the feed's schedule, or (`nudged`) a nudge's read of `item_ids` (see
        `Poller.read`)."""
        if not self.holds(feed.account):
            return
        if feed.key in self._listing:  # a tick adds nothing to a listing in progress; a nudge
            if nudged:  # asks for one more read after it
                self._read_again(feed.key, item_ids)
            return
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        self._listing.add(feed.key)
        started = self.clock.monotonic()
        try:
            await (poll.read(feed, item_ids) if nudged else poll.poll(feed))
            while feed.key in self._again and self.holds(feed.account):
                await poll.read(feed, self._again.pop(feed.key))
        except asyncio.CancelledError:
            # Shutdown's grace ran out: what earlier pages committed stays; the rest is
            # polled again at the next start. One line, not a traceback.
            logger.info(
                "poll of %s stopped by shutdown; the next start reads on from its last page",
                feed.key,
                extra={"action": "poll.interrupted"},
            )
            return
        except Exception:
            # A bug outside the cycle (the poller logs and records its own failures, and a
            # database outage once): next tick tries again.
            logger.exception(
                "poll of %s failed unexpectedly; retrying next cycle",
                feed.key,
                extra={"action": "poll.crashed"},
            )
        finally:
            self._again.pop(feed.key, None)
            self._listing.discard(feed.key)
            self.running.discard(task)
        self._note_duration(feed, self.clock.monotonic() - started)

    def _read_again(self, key: str, item_ids: frozenset[str] | None) -> None:
        if key in self._again:
            before = self._again[key]
            item_ids = None if before is None or item_ids is None else before | item_ids
        if item_ids is not None and len(item_ids) > lookups.BY_ID_AT_MOST:
            item_ids = None  # a listing reads them for less
        self._again[key] = item_ids

    def _note_duration(self, feed: plan.Feed, took_s: float) -> None:
        if took_s > feed.interval_s and feed.key not in self._behind:
            self._behind.add(feed.key)
            logger.warning(
                "account %r is behind: a poll of %s took %.0fs, longer than its %gs interval "
                "(Pipedrive is slow or the budget waits); polls run back to back until it "
                "catches up",
                feed.account,
                feed.object.name,
                took_s,
                feed.interval_s,
                extra={"action": "poll.behind"},
            )
        elif took_s <= feed.interval_s and feed.key in self._behind:
            self._behind.discard(feed.key)
            logger.info(
                "account %r has caught up on %s",
                feed.account,
                feed.object.name,
                extra={"action": "poll.caught_up"},
            )

    async def finish(self, grace_s: float) -> None:
        """Let polls in progress end within `grace_s`, then cancel what is left."""
        if not self.running:
            return
        late = await clock_module.wait(self.clock, set(self.running), grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
