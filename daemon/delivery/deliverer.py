"""The delivery loop: claim due outbox rows, POST them, record every attempt's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import random
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import metrics as metrics_module
from daemon import times
from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.db import delivery_limits, health_store, outbox, transient
from daemon.delivery import callback_transport, callbacks, slots, verdicts
from daemon.delivery.signing import Signer
from daemon.model import deliveries, start_window

logger = logging.getLogger(__name__)

# How often an idle loop looks for rows that became due, also rows another replica queued
# (a cheap read of the pending index: see docs/webhooks.md, "Several replicas").
IDLE_POLL_S = 0.5
LEASE_MARGIN_S = 5.0  # a claim outlives the POST's timeout by this much
MAX_OUTCOMES_PER_WRITE = 500  # one transaction records at most this many attempts
OUTCOME_GATHER_S = 0.05  # the writer waits this long for more outcomes when POSTs are busy
HEALTH_REFRESH_S = 1.0  # how soon `subscriptions enable/disable` reaches a running daemon
FLUSH_MIN_S = 2.0  # stopping: at least this long to record the last outcomes


# Claims are few and large: a subscription keeps about this long of its consumer's recent
# rate claimed ahead (at least its concurrency, at most MAX_CLAIM_AHEAD rows), and claims
# again only when half of that is left. A claim of 16 rows costs nearly what one of 150 does.
# Being time-based, it also bounds memory: large bodies go out slower, so fewer wait.
CLAIM_AHEAD_S = 0.25
MAX_CLAIM_AHEAD = 256
MAX_READY = 1024  # rows claimed ahead over all subscriptions

UNDECIDED_RETRY_S = 60.0  # when deciding an outcome failed (a bug), the event is retried then


def default_holder() -> str:
    """Who holds a delivery loop's slots in the database: unique, and readable in a pinch."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _limits(
    subscriptions: Mapping[str, SubscriptionConfig], settings: DeliveryConfig
) -> dict[str, slots.Limits]:
    return {
        name: slots.Limits(
            concurrency=settings.per_subscription_concurrency,
            ordered=sub.ordered,
            max_per_second=sub.max_per_second,
        )
        for name, sub in subscriptions.items()
    }


def _usable(held: delivery_limits.Held) -> int:
    return held.slots if held.share is None else min(held.slots, held.share)


class Deliverer:
    """POSTs outbox rows to their subscription's callback and records every attempt. Slots are
    shared as `slots` decides (caps, order, rate, health, a reserve), outcomes are judged by
    `verdicts`, and database errors are waited out (`db_retry`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        http: callbacks.Callbacks,
        subscriptions: Mapping[str, SubscriptionConfig],
        settings: DeliveryConfig,
        *,
        clock: clock_module.Clock = clock_module.SYSTEM,
        random_unit: Callable[[], float] = random.random,
        metrics: metrics_module.Metrics = metrics_module.NONE,
        holder: str | None = None,
    ) -> None:
        self._engine = engine
        self._holder = holder or default_holder()
        # Per subscription, the slots this loop holds of its cap (every replica's add up to
        # at most the cap), and the subscriptions known to have a health row to lock.
        self._held: dict[str, delivery_limits.Held] = {}
        self._rows_made: set[str] = set()
        self._holding = asyncio.Lock()  # a claim and a handing back of slots take turns
        # Rows of rate-capped subscriptions: the moment their start was reserved.
        self._reserved: dict[int, float] = {}
        self._metrics = metrics
        self._callbacks = http
        self._subscriptions = dict(subscriptions)
        self._signers = {name: Signer(sub.secrets) for name, sub in subscriptions.items()}
        self._settings = settings
        self._clock = clock
        self._random_unit = random_unit
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy_ids: set[int] = set()  # in flight or awaiting their outcome's write
        self._slots = slots.Slots(_limits(subscriptions, settings), settings.concurrency)
        self._ordered = {name for name, sub in subscriptions.items() if sub.ordered}
        # Claimed, not started: per subscription, oldest claim first, with its moment.
        self._ready: dict[str, deque[tuple[deliveries.Claimed, float]]] = {}
        self._stop = asyncio.Event()  # run()'s
        self._outage = transient.Outage()
        self._flush_deadline: float | None = None  # stopping: give up recording after this
        self._outcomes: asyncio.Queue[deliveries.Outcome] = asyncio.Queue()
        self._judge = verdicts.Judge(subscriptions, settings, random_unit)
        self._health_read_at: float | None = None
        # The last claim found nothing: the next one first asks whether anything is due at
        # all, rather than plan and send a claim over every subscription (see `_claim`).
        self._quiet = False

    def reconfigure(
        self, subscriptions: Mapping[str, SubscriptionConfig], settings: DeliveryConfig
    ) -> None:
        """A reload: the next claim and the next attempt use these (a changed `secret` signs
        the next attempt). Rows of a subscription no longer here are no longer claimed; one
        already in flight finishes normally."""
        self._subscriptions = dict(subscriptions)
        self._signers = {name: Signer(sub.secrets) for name, sub in subscriptions.items()}
        self._settings = settings
        self._slots.reconfigure(_limits(subscriptions, settings))
        self._ordered = {name for name, sub in subscriptions.items() if sub.ordered}
        self._judge.reconfigure(subscriptions, settings)
        self._health_read_at = None  # a new callback_url's health is read at the next claim
        self._quiet = False

    def wake(self) -> None:
        """New rows are in the outbox: look now rather than at the next idle poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, grace_s: float | None = None) -> None:
        """Deliver until `stop` is set, then let in-flight POSTs finish within `grace_s`."""
        self._stop = stop
        writer = asyncio.create_task(self._write_outcomes(), name="delivery-writer")
        try:
            while not stop.is_set():
                # Cleared before the claim, not after: a wake-up that comes while the claim
                # runs (new rows, a freed slot) must cut the next idle wait short.
                self._wake.clear()
                claimed = await self._claim()
                if claimed == 0 or len(self._tasks) >= self._settings.concurrency:
                    await self._idle(stop)
            await self._release_ready()
        finally:
            await self._finish(writer, self._settings.timeout if grace_s is None else grace_s)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until a POST finishes, the poller finds rows, `stop`, or the idle poll."""
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            opening = self._slots.next_window_opening(self._clock.monotonic())
            timeout = IDLE_POLL_S if opening is None else min(IDLE_POLL_S, opening)
            await clock_module.wait(self._clock, waiters, timeout, first=True)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _release(self, rows: list[deliveries.Claimed]) -> None:
        ids = [row.id for row in rows]
        for row_id in ids:
            self._reserved.pop(row_id, None)
        try:
            await outbox.release(self._engine, ids, {row.subscription for row in rows if row.probe})
        except Exception:
            logger.warning(
                "cannot hand %d claimed rows back; their lease ends by itself",
                len(ids),
                exc_info=True,
                extra={"action": "delivery.release_failed"},
            )
        finally:
            self._busy_ids.difference_update(ids)

    async def _release_ready(self) -> None:
        """Stopping: rows claimed ahead but never started go back at once, not at lease end."""
        rows = [row for queue in self._ready.values() for row, _ in queue]
        self._ready.clear()
        if not rows:
            return
        probes = {row.subscription for row in rows if row.probe}
        with contextlib.suppress(Exception):
            await outbox.release(self._engine, [row.id for row in rows], probes)

    async def _finish(self, writer: asyncio.Task[None], grace_s: float) -> None:
        """In-flight POSTs get `grace_s`; recording their outcomes gets what is left of it (at
        least `FLUSH_MIN_S`), so the stop is bounded even when the database is not writable."""
        deadline = self._clock.monotonic() + grace_s
        if self._tasks:
            pending = await clock_module.wait(self._clock, set(self._tasks), grace_s)
            for task in pending:
                task.cancel()  # its row stays claimed until the lease ends, then is retried
            await asyncio.gather(*pending, return_exceptions=True)
        self._flush_deadline = max(deadline, self._clock.monotonic() + FLUSH_MIN_S)
        recorded = asyncio.ensure_future(self._outcomes.join())
        try:
            await clock_module.wait(
                self._clock, {recorded}, self._flush_deadline - self._clock.monotonic() + 1
            )
        finally:
            recorded.cancel()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _claim(self) -> int:
        """Claim ahead: lease due rows into `_ready`, so a freed slot starts its next POST
        without waiting on the database (see `CLAIM_AHEAD_S`). Returns how many POSTs
        started."""
        ready = sum(len(queue) for queue in self._ready.values())
        room = self._settings.concurrency - len(self._tasks) + max(0, MAX_READY - ready)
        if room <= 0:
            return self._start_ready()
        if self._quiet and not self._ready and not await self._anything_due():
            return 0  # idle: one indexed read, whatever the number of subscriptions
        await self._refresh_health()
        now, moment = self._clock.now(), self._clock.monotonic()
        plan = self._slots.plan(self._judge.health, now, moment)
        capacity: dict[str, int] = {}
        for name, free in plan.capacity.items():
            waiting = len(self._ready.get(name, ()))
            configured = self._subscriptions.get(name)
            if name in self._ordered:
                capacity[name] = max(0, min(1, free) - waiting)
            elif configured is not None and configured.max_per_second is not None:
                # Reserved starts must happen at once (`start_window`): no claiming ahead.
                capacity[name] = max(0, free - waiting)
            elif self._judge.state(name) == "ok" and (free > 0 or self._slots.in_flight[name] > 0):
                # Rows waiting for a subscription at its share take no other's room.
                ahead = self._ahead_of(name, moment)
                capacity[name] = free + ahead - waiting if waiting - free <= ahead // 2 else 0
            else:
                capacity[name] = max(0, free - waiting)
        lease_s = 2 * self._settings.timeout + LEASE_MARGIN_S  # may wait in `_ready` first
        wanted = self._wanted(capacity)

        async def claim() -> outbox.Claim:
            missing = {n for n, free in capacity.items() if free > 0} - self._rows_made
            await health_store.ensure_rows(self._engine, missing, now)
            self._rows_made |= missing
            async with self._holding:
                request = delivery_limits.Request(self._holder, wanted, dict(self._held), lease_s)
                claim = await outbox.claim_within_limits(
                    self._engine,
                    now=now,
                    lease_until=now + timedelta(seconds=lease_s),
                    capacity=capacity,
                    limit=room,
                    ordered=self._ordered,
                    limits=request,
                )
                for name, given in claim.grants.items():
                    if given.held is not None:
                        self._held[name] = given.held
                return claim

        try:
            claim_result = await transient.retrying(
                claim,
                what="claiming due events",
                outage=self._outage,
                give_up=self._stop.is_set,
                clock=self._clock,
            )
        except Exception:
            if self._stop.is_set():
                return 0  # stopping while the database is down: nothing more to start
            raise
        for name, given in claim_result.grants.items():
            self._judge.observe(name, given.health)
            if given.health.state != "ok":
                self._release_claimed(name)  # paused or disabled by another replica
        rows = claim_result.rows
        self._quiet = not rows
        reserved_at, moment = moment, self._clock.monotonic()
        for row in rows:
            if row.id in self._busy_ids:
                continue  # our own earlier claim whose outcome is still being written
            self._busy_ids.add(row.id)
            if row.subscription in wanted and wanted[row.subscription].max_per_second:
                self._reserved[row.id] = reserved_at
            self._ready.setdefault(row.subscription, deque()).append((row, moment))
        return self._start_ready()

    async def _anything_due(self) -> bool:
        """Whether a claim may find anything (a read error says yes: the claim waits it out).
        Health is read again only then: it matters to claims alone."""
        try:
            return await outbox.any_due(self._engine, self._clock.now())
        except Exception:
            return True

    def _wanted(self, capacity: Mapping[str, int]) -> dict[str, delivery_limits.Wanted]:
        """What this claim asks of the limits all replicas share, per subscription."""
        cap = self._settings.per_subscription_concurrency
        wanted = {}
        for name, free in capacity.items():
            configured = self._subscriptions.get(name)
            if free <= 0 or configured is None:
                continue
            using = self._slots.in_flight[name] + len(self._ready.get(name, ())) + free
            wanted[name] = delivery_limits.Wanted(
                cap=cap,
                slots=min(cap, using),
                max_per_second=configured.max_per_second,
                endpoint=self._judge.endpoint(name),
                ordered=configured.ordered,
                in_flight=self._slots.in_flight[name],
            )
        return wanted

    def _held_slots(self, names: Iterable[str]) -> dict[str, int]:
        """The slots that bound starts: held ones, for those of `names` that need them."""
        return {
            name: _usable(self._held[name]) if name in self._held else 0
            for name in names
            if name in self._subscriptions
            and name not in self._ordered
            and self._judge.state(name) == "ok"
        }

    def _ahead_of(self, name: str, moment: float) -> int:
        configured = self._subscriptions.get(name)
        rate = self._slots.start_rate(name, moment)
        ahead = max(
            self._settings.per_subscription_concurrency,
            min(MAX_CLAIM_AHEAD, int(rate * CLAIM_AHEAD_S)),
        )
        cap = configured.max_per_second if configured else None
        return ahead if cap is None else min(ahead, cap)

    def _start_ready(self) -> int:
        """Start what the slots allow from the claimed rows, fairly (see `slots`)."""
        free = self._settings.concurrency - len(self._tasks)
        if free <= 0 or not self._ready:
            return 0
        moment = self._clock.monotonic()
        self._release_stale(moment)
        for name in list(self._ready):
            if self._judge.state(name) != "ok":
                # Learnt of a pause by a health read: only the probe's claim may start.
                self._release_claimed(name)
        scope = set(self._ready)
        now = self._clock.now()
        plan = self._slots.plan(self._judge.health, now, moment, self._held_slots(scope), scope)
        candidates = [
            (row.id, name)
            for name, queue in self._ready.items()
            for row, _ in itertools.islice(queue, min(free, plan.capacity.get(name, 0)))
        ]
        chosen = set(
            outbox.pick_claims(
                candidates,
                plan.capacity,
                free,
                shared=plan.shared,
                newcomers=plan.newcomers,
                answering=plan.answering,
            )
        )
        for name, queue in list(self._ready.items()):
            # `pick_claims` takes each subscription's rows from the front of its queue.
            while queue and queue[0][0].id in chosen:
                row, _ = queue.popleft()
                self._reserved.pop(row.id, None)
                self._slots.started(name, moment)
                task = asyncio.create_task(self._attempt(row), name=f"deliver-{row.event_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not queue:
                del self._ready[name]
        return len(chosen)

    def _release_stale(self, moment: float) -> None:
        """Rows that waited too long (a rate cap, a pause) go back to the outbox: past half
        their lease, another claimer may follow."""
        stale = moment - self._settings.timeout
        late = moment - start_window.START_GRACE_S  # a reserved start not made in time
        expired: list[deliveries.Claimed] = []
        for queue in self._ready.values():
            while queue and (
                queue[0][1] < stale or self._reserved.get(queue[0][0].id, moment) < late
            ):
                expired.append(queue.popleft()[0])
        if expired:
            task = asyncio.create_task(self._release(expired), name="delivery-release")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refresh_health(self) -> None:
        """Read the operator's switches (and what another process decided) now and then."""
        moment = self._clock.monotonic()
        if self._health_read_at is not None and moment - self._health_read_at < HEALTH_REFRESH_S:
            return
        self._health_read_at = moment
        try:
            stored = await health_store.load(self._engine)
        except Exception as error:
            # Keep what was last read; the outage is logged once, with the claims'.
            self._outage.failed("reading subscription health", error)
            return
        self._judge.refresh(stored)
        await self._apply_health(self._clock.now())  # e.g. a pause of a URL no longer configured

    async def _attempt(self, row: deliveries.Claimed) -> None:
        attempted_at = self._clock.now()
        started = self._clock.monotonic()
        size = len(row.body.encode())
        if size > self._settings.max_body_bytes:
            self._slots.finished(row.subscription, self._clock.monotonic(), answered=False)
            oversize = (
                f"body is {size} bytes, above [delivery] max_body_bytes "
                f"({self._settings.max_body_bytes}); not sent"
            )
            logger.error(
                "subscription %r: %s; event %s dead-lettered",
                row.subscription,
                oversize,
                row.event_id,
                extra={
                    "action": "delivery.dead_lettered",
                    "subscription": row.subscription,
                    "event_id": row.event_id,
                },
            )
            dead = deliveries.Outcome(row, attempted_at, None, oversize, 0, "dead")
            self._metrics.delivery(dead)
            self._outcomes.put_nowait(dead)
            return
        refused = False
        try:
            status, error, retry_after, reply, refused = await self._post(row, attempted_at)
        except Exception as failure:
            # A bug must not strand the row (it would stay busy here forever): retry it.
            logger.exception(
                "subscription %r: delivering %s failed unexpectedly",
                row.subscription,
                row.event_id,
                extra={"action": "delivery.crashed", "subscription": row.subscription},
            )
            status, error, retry_after = None, f"delivery failed ({type(failure).__name__})", None
            reply = None
        except BaseException:
            moment = self._clock.monotonic()
            self._slots.finished(row.subscription, moment, answered=False)  # cancelled: stopping
            raise
        duration_ms = int((self._clock.monotonic() - started) * 1000)
        attempt = verdicts.Attempt(
            attempted_at, status, error, duration_ms, retry_after, reply, refused
        )
        try:
            outcome = self._judge.outcome(row, attempt)
        except Exception:
            # Never leave a row claimed and unrecorded: record the attempt, retry in a while.
            logger.exception(
                "subscription %r: deciding the outcome of %s failed; retrying it later",
                row.subscription,
                row.event_id,
                extra={"action": "delivery.crashed", "subscription": row.subscription},
            )
            outcome = deliveries.Outcome(
                row, attempted_at, status, error or "outcome undecided", duration_ms, "retry",
                attempted_at + timedelta(seconds=UNDECIDED_RETRY_S), reply=reply,
            )  # fmt: skip
        self._judge.anticipate(outcome)
        if self._judge.state(row.subscription) != "ok":
            self._release_claimed(row.subscription)
        # The slot is freed once the outcome is decided: a paused subscription's next probe
        # must wait for the pause this attempt extended.
        self._slots.finished(row.subscription, self._clock.monotonic(), answered=status is not None)
        self._start_ready()  # the freed slot takes a claimed row at once
        self._wake.set()
        self._metrics.delivery(outcome)
        self._outcomes.put_nowait(outcome)

    def _release_claimed(self, name: str) -> None:
        """Paused: rows claimed ahead go back, so each probe is the oldest due event (the
        same one until it gets through), not whichever row happened to be claimed; only a row
        claimed as the probe stays. Disabled: all go back."""
        queue = self._ready.pop(name, None)
        if not queue:
            return
        if self._judge.state(name) == "paused":
            probes = deque(entry for entry in queue if entry[0].probe)
            if probes:
                self._ready[name] = probes
            queue = deque(entry for entry in queue if not entry[0].probe)
            if not queue:
                return
        release = self._release([row for row, _ in queue])
        task = asyncio.create_task(release, name="delivery-release")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(
        self, row: deliveries.Claimed, attempted_at: datetime
    ) -> tuple[int | None, str | None, float | None, str | None, bool]:
        """One POST: (status, error or None on 2xx, Retry-After seconds, start of the reply,
        whether the target guard refused it)."""
        subscription = self._subscriptions[row.subscription]
        headers = self._signers[row.subscription].headers(row.event_id, row.body, attempted_at)
        try:
            answer = await self._callbacks.post(
                str(subscription.callback_url),
                row.body.encode(),
                headers,
                allow_private=subscription.allow_private_targets,
            )
        except httpx.TransportError as failure:
            # The transport's messages say what failed and never quote the URL.
            refused = isinstance(failure, callback_transport.RefusedTarget)
            return None, str(failure), None, None, refused
        except httpx.HTTPError as failure:
            return None, f"cannot reach callback ({type(failure).__name__})", None, None, False
        status = answer.status
        if httpx.codes.is_success(status):
            return status, None, None, answer.reply, False
        retry_after = times.parse_retry_after(answer.retry_after, attempted_at)
        error = f"callback returned {status} {answer.reason}".rstrip()
        return status, error, retry_after, answer.reply, False

    async def _apply_health(self, at: datetime) -> None:
        """Stamp, in one transaction, the health this process changed (see `Judge.refresh`)."""
        names = set(self._judge.unsaved)
        if not names:
            return
        self._judge.unsaved.difference_update(names)
        try:
            await health_store.restamp_all(
                self._engine, {name: self._judge.health[name] for name in names}, at
            )
        except Exception:
            self._judge.unsaved.update(names)  # tried again at the next health read
            logger.warning(
                "subscriptions %s: cannot record their health; it holds in this process",
                ", ".join(repr(name) for name in sorted(names)[:5])
                + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
                exc_info=True,
                extra={"action": "delivery.health_unrecorded", "subscription": min(names)},
            )

    async def _write_outcomes(self) -> None:
        """Write results in batches: one transaction for many POSTs keeps SQLite fast."""
        while True:
            batch = [await self._outcomes.get()]
            if len(self._tasks) > 1:
                # POSTs are finishing: a moment's wait makes one transaction of many.
                await self._clock.sleep(OUTCOME_GATHER_S)
            while len(batch) < MAX_OUTCOMES_PER_WRITE and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                await self._write(batch)
            finally:
                for outcome in batch:
                    self._busy_ids.discard(outcome.claimed.id)
                    self._outcomes.task_done()
                self._wake.set()  # retries may be due already, and their rows are free now

    def _rules(self, batch: list[deliveries.Outcome]) -> dict[str, health_store.Rules]:
        """How the batch's attempts are judged for their endpoints' health."""
        rules = {}
        for name in {outcome.claimed.subscription for outcome in batch}:
            rules[name] = health_store.Rules(
                pause_after=self._judge.pause_after(name),
                probe_interval_s=self._settings.probe_interval,
                endpoint=self._judge.endpoint(name),
            )
        return rules

    def _slots_to_keep(self) -> dict[str, int]:
        """Held slots beyond what is in flight and claimed ahead go back for other replicas."""
        keep = {}
        for name, held in self._held.items():
            in_flight = self._slots.in_flight[name]
            using = in_flight + len(self._ready.get(name, ()))
            if held.share is not None:
                # Others want some: down to the share, as fast as this loop's POSTs end.
                using = max(in_flight, min(using, held.share))
            if held.slots > using:
                keep[name] = using
        return keep

    def _health_changed(self, changes: list[health_store.Change]) -> None:
        for change in changes:
            self._judge.observe(change.subscription, change.health)
            for action, _ in change.transitions:
                verdicts.log_transition(change.subscription, change.health, action)
            if change.health.state != "ok":
                self._release_claimed(change.subscription)

    async def _write(self, batch: list[deliveries.Outcome]) -> None:
        """Record a batch, waiting out database errors. Past the stop's grace it gives up: the
        POSTs happened, their rows stay claimed and are retried after the lease (at least
        once), which beats a stop that never ends."""

        async def record() -> None:
            async with contextlib.AsyncExitStack() as stack:
                keep = self._slots_to_keep()
                if keep:
                    await stack.enter_async_context(self._holding)
                    keep = self._slots_to_keep()
                recording = outbox.Recording(
                    self._clock.now(), self._rules(batch), self._holder, keep
                )
                changes = await outbox.record_outcomes(self._engine, batch, recording)
                self._judge.written(batch)
                for name, slots_kept in keep.items():
                    held = self._held.get(name)
                    if held is not None:
                        self._held[name] = dataclasses.replace(
                            held, slots=min(held.slots, slots_kept)
                        )
            self._health_changed(changes)

        def give_up() -> bool:
            deadline = self._flush_deadline
            return deadline is not None and self._clock.monotonic() >= deadline

        try:
            await transient.retrying(
                record,
                what="recording delivery outcomes",
                outage=self._outage,
                give_up=give_up,
                clock=self._clock,
            )
        except Exception:
            self._judge.written(batch)
            logger.error(
                "stopping: %d delivery outcomes could not be recorded; those events will be "
                "delivered again after the restart",
                len(batch),
                extra={"action": "delivery.outcomes_lost"},
            )
