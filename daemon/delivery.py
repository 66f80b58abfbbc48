"""The delivery loop: claim due outbox rows, POST them, record every attempt's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import callback_transport, store
from daemon import metrics as metrics_module
from daemon.config import DeliveryConfig, SubscriptionConfig
from daemon.retry_policy import RetryPolicy, next_attempt, parse_retry_after
from daemon.signing import Signer

logger = logging.getLogger(__name__)

IDLE_POLL_S = 1.0  # how often an idle loop looks for rows that became due
LEASE_MARGIN_S = 5.0  # a claim outlives the POST's timeout by this much
MAX_OUTCOMES_PER_WRITE = 500  # one transaction records at most this many attempts


def _now() -> datetime:
    return datetime.now(UTC)


def delivery_http_client(timeout_s: float) -> httpx.AsyncClient:
    """The client for `Deliverer`: see `callback_transport` for its errors and its guard."""
    return callback_transport.client(timeout_s)


class Deliverer:
    """POSTs outbox rows to their subscription's callback; one slow or dead consumer holds at
    most `per_subscription_concurrency` slots, so other subscriptions keep flowing."""

    def __init__(
        self,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        subscriptions: Mapping[str, SubscriptionConfig],
        settings: DeliveryConfig,
        *,
        clock: Callable[[], datetime] = _now,
        random_unit: Callable[[], float] = random.random,
        metrics: metrics_module.Metrics = metrics_module.NONE,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._http = http
        self._subscriptions = dict(subscriptions)
        self._signers = {name: Signer(sub.secret) for name, sub in subscriptions.items()}
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_schedule, settings.max_attempts, settings.jitter)
        self._clock = clock
        self._random_unit = random_unit
        self._wake = asyncio.Event()
        # SQLite has one writer: claims and outcome writes queue here, not in SQLite's busy
        # handler, whose sleeps of up to 100 ms would idle the delivery slots.
        self._sqlite_writes = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy_ids: set[int] = set()  # in flight or awaiting their outcome's write
        self._in_flight: Counter[str] = Counter()
        self._outcomes: asyncio.Queue[store.Outcome] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def _serialised(self) -> AsyncIterator[None]:
        if self._sqlite_writes is None:
            yield
            return
        async with self._sqlite_writes:
            yield

    def wake(self) -> None:
        """New rows are in the outbox: look now rather than at the next idle poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, grace_s: float | None = None) -> None:
        """Deliver until `stop` is set, then let in-flight POSTs finish within `grace_s`."""
        writer = asyncio.create_task(self._write_outcomes(), name="delivery-writer")
        try:
            while not stop.is_set():
                claimed = await self._claim()
                if claimed == 0 or len(self._tasks) >= self._settings.concurrency:
                    await self._idle(stop)
        finally:
            await self._finish(writer, self._settings.timeout if grace_s is None else grace_s)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until a POST finishes, the poller finds rows, `stop`, or the idle poll."""
        self._wake.clear()
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=IDLE_POLL_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _finish(self, writer: asyncio.Task[None], grace_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()  # its row stays claimed until the lease ends, then is retried
            await asyncio.gather(*pending, return_exceptions=True)
        await self._outcomes.join()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _claim(self) -> int:
        free = self._settings.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        cap = self._settings.per_subscription_concurrency
        capacity = {name: cap - self._in_flight[name] for name in self._subscriptions}
        now = self._clock()
        async with self._serialised():
            rows = await store.claim_due(
                self._engine,
                now=now,
                lease_until=now + timedelta(seconds=self._settings.timeout + LEASE_MARGIN_S),
                capacity=capacity,
                limit=free,
            )
        started = 0
        for row in rows:
            if row.id in self._busy_ids:
                continue  # our own earlier claim whose outcome is still being written
            self._busy_ids.add(row.id)
            self._in_flight[row.subscription] += 1
            task = asyncio.create_task(self._attempt(row), name=f"deliver-{row.event_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _attempt(self, row: store.Claimed) -> None:
        attempted_at = self._clock()
        started = time.monotonic()
        try:
            status, error, retry_after, reply = await self._post(row, attempted_at)
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
        finally:
            self._in_flight[row.subscription] -= 1
            self._wake.set()
        duration_ms = int((time.monotonic() - started) * 1000)
        outcome = self._outcome(row, attempted_at, status, error, duration_ms, retry_after, reply)
        self._metrics.delivery(outcome)
        self._outcomes.put_nowait(outcome)

    async def _post(
        self, row: store.Claimed, attempted_at: datetime
    ) -> tuple[int | None, str | None, float | None, str | None]:
        """One POST: (status, error or None on 2xx, Retry-After seconds, start of the reply)."""
        subscription = self._subscriptions[row.subscription]
        headers = self._signers[row.subscription].headers(row.event_id, row.body, attempted_at)
        try:
            async with self._http.stream(
                "POST",
                str(subscription.callback_url),
                content=row.body.encode(),
                headers=headers,
                extensions=(
                    callback_transport.ALLOW_PRIVATE_TARGETS
                    if subscription.allow_private_targets
                    else None
                ),
            ) as response:
                status = response.status_code
                retry_after = parse_retry_after(response.headers.get("retry-after"), attempted_at)
                reason = response.reason_phrase
                reply = await callback_transport.read_reply(response)
        except httpx.TransportError as failure:
            # The transport's messages say what failed and never quote the URL.
            return None, str(failure), None, None
        except httpx.HTTPError as failure:
            return None, f"cannot reach callback ({type(failure).__name__})", None, None
        if 200 <= status < 300:
            return status, None, None, reply
        return status, f"callback returned {status} {reason}".rstrip(), retry_after, reply

    def _outcome(
        self,
        row: store.Claimed,
        attempted_at: datetime,
        status: int | None,
        error: str | None,
        duration_ms: int,
        retry_after: float | None,
        reply: str | None,
    ) -> store.Outcome:
        log_extra = {"subscription": row.subscription, "event_id": row.event_id}
        attempts_made = row.attempts + 1
        if error is None:
            logger.debug(
                "subscription %r: delivered %s",
                row.subscription,
                row.event_id,
                extra={"action": "delivery.delivered", **log_extra},
            )
            return store.Outcome(
                row, attempted_at, status, None, duration_ms, "delivered", reply=reply
            )
        retry_at = next_attempt(
            self._policy,
            attempts_made,
            attempted_at,
            retry_after_s=retry_after,
            random_unit=self._random_unit(),
        )
        if retry_at is None:
            logger.error(
                "subscription %r: %s; event %s dead-lettered after %d attempts",
                row.subscription,
                error,
                row.event_id,
                attempts_made,
                extra={"action": "delivery.dead_lettered", **log_extra},
            )
            return store.Outcome(row, attempted_at, status, error, duration_ms, "dead", reply=reply)
        logger.warning(
            "subscription %r: %s; event %s attempt %d of %d, next at %s",
            row.subscription,
            error,
            row.event_id,
            attempts_made,
            self._policy.max_attempts,
            retry_at.isoformat(timespec="seconds"),
            extra={"action": "delivery.failed", **log_extra},
        )
        return store.Outcome(
            row, attempted_at, status, error, duration_ms, "retry", retry_at, reply=reply
        )

    async def _write_outcomes(self) -> None:
        """Write results in batches: one transaction for many POSTs keeps SQLite fast."""
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < MAX_OUTCOMES_PER_WRITE and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                await self._write(batch)
            finally:
                for outcome in batch:
                    self._busy_ids.discard(outcome.claimed.id)
                    self._outcomes.task_done()

    async def _write(self, batch: list[store.Outcome]) -> None:
        while True:
            try:
                async with self._serialised():
                    await store.record_outcomes(self._engine, batch)
                return
            except Exception:
                # The POSTs happened; losing their outcomes would resend them, not lose them,
                # but keep trying so a brief database hiccup costs no duplicates.
                logger.exception(
                    "cannot record %d delivery outcomes; retrying",
                    len(batch),
                    extra={"action": "delivery.record_failed"},
                )
                await asyncio.sleep(IDLE_POLL_S)
