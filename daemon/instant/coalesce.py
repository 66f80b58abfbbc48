"""Nudges for one feed (account, object type) coalesced on the leading edge: the first nudge
is read at once, so a lone change is not delayed; the ones that follow within `coalesce` are
read together once, at the window's end, so a burst costs at most one read per window.

`Coalescer` decides (pure: times in, times out, table-tested); `Coalescing` acts on its
answers on the event loop, calling the integrator's `read(account, object_type, item_ids)`
with the items the nudges since the last read named (None: the whole feed, because one of
them named none, or too many did).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from daemon import clock as clock_module

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
EXPIRE_EVERY_S = 60.0  # how often ended windows are forgotten, so keys do not pile up
LISTING_SLACK_S = 0.1
# Item ids remembered per feed until its read: past this many the read lists the feed (far
# cheaper than one call per item), and a flood's memory stays bounded.
MAX_ITEMS = 100


@dataclass
class _Window:
    ends: float
    pending: bool  # a read is scheduled for `ends`


class Coalescer(Generic[K]):
    """Per key, the window opened by the last read and whether a read waits for its end."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._windows: dict[K, _Window] = {}

    def nudge(self, key: K, now: float) -> float | None:
        """When to read for this nudge: `now` (at once: no window is open), the window's end
        (a read to schedule), or None (one is scheduled already and will see this change)."""
        window = self._windows.get(key)
        if window is None or (now >= window.ends and not window.pending):
            self._windows[key] = _Window(now + self.window_s, pending=False)
            return now
        if window.pending:
            return None
        window.pending = True
        return window.ends

    def reading(self, key: K, now: float) -> None:
        """The scheduled read starts now: it opens the next window, so nudges that keep
        coming are read once per window, not at once after each read."""
        self._windows[key] = _Window(now + self.window_s, pending=False)

    def expire(self, now: float) -> None:
        """Forget the windows that ended with no read waiting."""
        ended = [k for k, w in self._windows.items() if now >= w.ends and not w.pending]
        for key in ended:
            del self._windows[key]

    def __len__(self) -> int:
        return len(self._windows)


Read = Callable[[str, str, frozenset[str] | None], Awaitable[object]]
Feed = tuple[str, str]  # (account, object type)


class _Named:
    """The items nudged since a feed's last read began; `whole` once any nudge named none."""

    def __init__(self) -> None:
        self.items: set[str] = set()
        self.whole = False

    def add(self, item: str | None) -> None:
        if item is None or len(self.items) >= MAX_ITEMS:
            self.whole = True
            self.items.clear()
        elif not self.whole:
            self.items.add(item)

    def read(self) -> frozenset[str] | None:
        return None if self.whole else frozenset(self.items)


class Coalescing:
    """Calls `read(account, object_type, item_ids)` as the coalescer says: at once on a
    window's leading edge, and at its end when more nudges came. Reads of one feed never
    overlap: a read that comes due while the previous one runs starts when it ends, and
    takes the items nudged until then (none left: it has nothing to do)."""

    def __init__(
        self, read: Read, window_s: float, clock: clock_module.Clock = clock_module.SYSTEM
    ) -> None:
        self._read = read
        self._clock = clock
        self._coalescer: Coalescer[Feed] = Coalescer(window_s)
        self._timers: dict[Feed, asyncio.Task[None]] = {}
        self._reads: dict[Feed, asyncio.Task[None]] = {}
        self._named: dict[Feed, _Named] = {}
        self._next_expiry = clock.monotonic() + EXPIRE_EVERY_S
        self.reads = 0  # reads started, for tests and metrics

    def nudge(self, account: str, object_type: str, item: str | None = None) -> None:
        """A change in this feed (of `item`, None: of something in it): read it now, later
        or with a read already due. Never blocks, so the ingress can call it from its
        request handler."""
        now = self._clock.monotonic()
        if now >= self._next_expiry:
            self._coalescer.expire(now)
            self._next_expiry = now + EXPIRE_EVERY_S
        key = (account, object_type)
        self._named.setdefault(key, _Named()).add(item)
        at = self._coalescer.nudge(key, now)
        if at is None:
            return
        if at <= now:
            self._start(key)
        else:
            self._timers[key] = asyncio.create_task(self._read_at(key, at), name="coalesce")

    async def _read_at(self, key: Feed, at: float) -> None:
        # A little after the window's end: the read that opened it sent its listing some
        # milliseconds after it started (its database work comes first), and two listings of
        # a feed must not fall in one window.
        await self._clock.sleep(at - self._clock.monotonic() + LISTING_SLACK_S)
        self._timers.pop(key, None)
        self._start(key, scheduled=True)

    def _start(self, key: Feed, *, scheduled: bool = False) -> None:
        previous = self._reads.get(key)
        task = asyncio.create_task(self._run(key, previous, scheduled), name="instant-read")
        self._reads[key] = task
        task.add_done_callback(lambda done: self._done(key, done))

    def _done(self, key: Feed, task: asyncio.Task[None]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]

    async def _run(self, key: Feed, previous: asyncio.Task[None] | None, scheduled: bool) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        if scheduled:
            # Its window opens when it really starts: nudges until then are read by it.
            self._coalescer.reading(key, self._clock.monotonic())
        named = self._named.pop(key, None)
        if named is None:
            return  # a read that began after these nudges read their items
        self.reads += 1
        try:
            await self._read(*key, named.read())
        except Exception:
            # The integrator's read logs its own failures; this is a bug in it. The next
            # nudge or the reconciliation poll reads the change anyway.
            logger.exception(
                "instant mode: reading %s/%s after a nudge failed", *key,
                extra={"action": "instant.read_failed", "account": key[0]},
            )  # fmt: skip

    async def aclose(self) -> None:
        """Cancel the waiting reads and the running ones (at shutdown: polling reads on)."""
        with contextlib.suppress(asyncio.CancelledError):
            await clock_module.cancel([*self._timers.values(), *self._reads.values()])
        self._timers.clear()
        self._reads.clear()
        self._named.clear()
