"""What the daemon tells systemd while it runs: ready, a status line of subscriptions' states and
the outbox's counts, watchdog pings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import outbox
from daemon.model.subscription_state import State
from daemon.service import sd_notify
from daemon.status import dashboard

logger = logging.getLogger(__name__)

STATUS_INTERVAL_S = 10.0  # the states are read, and a changed status sent, at most this often
# ...and reading them takes at most this share of the time: with 10,000 subscriptions a read
# takes about 0.2 s, which every 10 s would be 2 % of a core for a line people read rarely.
STATUS_SHARE = 0.01
DATABASE_DOWN_STATUS = "database unavailable; retrying (deliveries wait in the outbox)"


def status_line(states: Sequence[State], totals: outbox.OutboxTotals) -> str:
    """The line `systemctl status` shows, e.g. `12 subscriptions (10 ok, 1 failing, 1 paused),
    3 pending, 0 dead`: the configured subscriptions by state as `status` names them, then those
    orphaned (`, 1 orphaned`) if any, then the outbox."""
    tally = Counter(states)
    configured = len(states) - tally[State.ORPHANED]
    noun = "subscription" if configured == 1 else "subscriptions"
    by_state = ", ".join(
        f"{tally[state]} {state.label}"
        for state in State
        if tally[state] and state is not State.ORPHANED
    )
    parts = [f"{configured} {noun} ({by_state})" if by_state else f"0 {noun}"]
    if tally[State.ORPHANED]:
        parts.append(f"{tally[State.ORPHANED]} {State.ORPHANED.label}")
    return ", ".join([*parts, f"{totals.pending} pending", f"{totals.dead} dead"])


def next_status_wait(interval_s: float, read_took_s: float) -> float:
    """Seconds until the next read of the states: `interval_s`, or longer after a read that
    took more than `STATUS_SHARE` of it."""
    return max(interval_s, read_took_s / STATUS_SHARE)


class Supervisor:
    """Reports to systemd (see `supervised`); `stopping()` when shutdown begins."""

    def __init__(
        self,
        engine: AsyncEngine,
        subscriptions: Collection[str],
        status_interval_s: float,
        clock: clock_module.Clock = clock_module.SYSTEM,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._subscriptions = frozenset(subscriptions)
        self._endpoints = dict(endpoints or {})  # see `dashboard.subscriptions`
        self._status_interval_s = status_interval_s
        self._last_status: str | None = None
        self._database_down = False
        self._watchdog: asyncio.Task[None] | None = None
        self._status: asyncio.Task[None] | None = None

    async def _read_status(self) -> str | None:
        try:
            rows = await dashboard.subscriptions(
                self._engine, self._subscriptions, endpoints=self._endpoints
            )
        except Exception:
            # A database outage must not stop the daemon; the counts return with the database.
            # Said once per outage, in the log and in systemd's status line.
            if not self._database_down:
                logger.warning(
                    "could not read the subscriptions' states for systemd's status line",
                    exc_info=True,
                    extra={"action": "supervision.status_failed"},
                )
            self._database_down = True
            return DATABASE_DOWN_STATUS
        self._database_down = False
        totals = outbox.OutboxTotals(
            pending=sum(row.gauges.pending for row in rows),
            dead=sum(row.gauges.dead for row in rows),
        )
        return status_line([row.gauges.state for row in rows], totals)

    async def _report_status(self) -> None:
        wait = self._status_interval_s
        while True:
            await self._clock.sleep(wait)
            started = self._clock.monotonic()
            line = await self._read_status()
            wait = next_status_wait(self._status_interval_s, self._clock.monotonic() - started)
            if line is not None and line != self._last_status:
                sd_notify.status(line)
                self._last_status = line

    async def start(self) -> None:
        self._last_status = await self._read_status()
        sd_notify.ready(self._last_status)
        interval = sd_notify.watchdog_interval()
        if interval is not None:
            self._watchdog = asyncio.create_task(
                sd_notify.keep_alive(interval, self._clock), name="watchdog"
            )
        self._status = asyncio.create_task(self._report_status(), name="status")

    async def reloaded(
        self,
        subscriptions: Collection[str],
        rejected: bool = False,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        """A reload has ended (`sd_notify.reloading()` began it): READY=1 again, with the new
        status line, or one saying the new config was rejected and the old one runs on."""
        self._subscriptions = frozenset(subscriptions)
        self._endpoints = dict(endpoints or {})
        line = await self._read_status()
        if rejected:
            prefix = "reload rejected (invalid config); running the previous config"
            line = f"{prefix}: {line}" if line else prefix
        else:
            self._last_status = line
        sd_notify.ready(line)

    def stopping(self) -> None:
        """Shutdown has begun: tell systemd; the watchdog keeps pinging until the end."""
        if self._status is not None:
            self._status.cancel()
        sd_notify.stopping("stopping: finishing in-flight deliveries")

    async def close(self) -> None:
        await clock_module.cancel([t for t in (self._watchdog, self._status) if t is not None])


@contextlib.asynccontextmanager
async def supervised(
    engine: AsyncEngine,
    subscriptions: Collection[str],
    status_interval_s: float = STATUS_INTERVAL_S,
    clock: clock_module.Clock = clock_module.SYSTEM,
    endpoints: Mapping[str, str] | None = None,
) -> AsyncIterator[Supervisor]:
    """Send READY=1 with the first status line, then ping the watchdog at half `WATCHDOG_USEC`
    and send the status again when it changes. Enter it once everything is running;
    `subscriptions` are the names the config gives, `endpoints` their callback_urls'
    fingerprints (`SubscriptionConfig.endpoint`)."""
    supervisor = Supervisor(engine, subscriptions, status_interval_s, clock, endpoints)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.close()
