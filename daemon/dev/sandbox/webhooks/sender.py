"""Sends webhooks v2 in the background, as Pipedrive does: a thread of its own runs an event loop
(started by the first event a webhook is for), so a write only queues and never waits on a
consumer. First attempts go out one at a time per webhook, in the order of the writes; retries
run beside them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from daemon.dev.sandbox import errors
from daemon.dev.sandbox.changes import Change
from daemon.dev.sandbox.webhooks import events, faults, policy
from daemon.dev.sandbox.webhooks.registry import Registry

REMOVED_FOR_FAILURES = "no successful delivery for 3 days"
STOP_TIMEOUT_S = 5.0
USER_AGENT = "Pipedrive Webhooks (sandbox)"


@dataclass(frozen=True)
class Event:
    """One change for one webhook; its id is the same on every attempt."""

    change: Change
    webhook: dict[str, Any]  # the webhook as it was when the change happened
    event_id: str
    correlation_id: str  # shared by the events of one change (one per webhook)

    @property
    def webhook_id(self) -> int:
        return int(self.webhook["id"])


@dataclass(frozen=True)
class Delivery:
    """One attempt, sent or dropped, for tests to assert on."""

    webhook_id: int
    event_id: str
    attempt: int
    action: str
    entity: str
    entity_id: str
    status: int | None  # the answer's; None when nothing was sent or nothing came back
    error: str | None  # why it failed or was dropped ("dropped: ...")
    at: datetime
    body: dict[str, Any] | None  # what was sent; None when dropped

    @property
    def sent(self) -> bool:
        return self.body is not None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    def __init__(
        self, registry: Registry, timings: policy.Timings, fault_list: faults.DeliveryFaults
    ) -> None:
        self.registry = registry
        self.timings = timings
        self.faults = fault_list
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched only on the loop's thread:
        self._queues: dict[int, asyncio.Queue[Event]] = {}
        self._health: dict[int, policy.Health] = {}
        self._held: dict[int, list[tuple[Event, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    # -- any thread ---------------------------------------------------------------------------

    def on_change(self, change: Change) -> None:
        """A store listener (called under the store's lock): queue one event per webhook."""
        hooks = self.registry.matching(change.action, change.kind)
        if not hooks:
            return
        loop = self._running_loop()
        correlation_id = str(uuid.uuid4())
        for hook in hooks:
            event = Event(change, hook, str(uuid.uuid4()), correlation_id)
            loop.call_soon_threadsafe(self._enqueue, event)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def close(self) -> None:
        """Stop sending: pending attempts and retries are dropped with the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="sandbox-webhooks", daemon=True
                )
                self._loop = loop
                self._thread.start()
            return self._loop

    def _record(
        self,
        event: Event,
        attempt: int,
        *,
        status: int | None = None,
        error: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        change = event.change
        delivery = Delivery(
            event.webhook_id,
            event.event_id,
            attempt,
            change.action,
            change.kind,
            str(change.record["id"]),
            status,
            error,
            datetime.now(UTC),
            body,
        )
        with self._lock:
            self._deliveries.append(delivery)

    # -- the loop's thread --------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, event: Event) -> None:
        queue = self._queues.get(event.webhook_id)
        if queue is None:
            queue = self._queues[event.webhook_id] = asyncio.Queue()
            self._spawn(self._first_attempts(queue))
        queue.put_nowait(event)

    async def _first_attempts(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            await self._attempt(await queue.get(), 1)

    async def _attempt(self, event: Event, attempt: int) -> None:
        webhook_id = event.webhook_id
        if not self.registry.sending(webhook_id):
            self._record(event, attempt, error="dropped: webhook inactive or removed")
            return
        if self._health.get(webhook_id, policy.Health()).banned(time.monotonic()):
            self._record(event, attempt, error="dropped: webhook banned")
            return
        fault = self.faults.take(webhook_id, attempt)
        if fault is not None and fault.drop:
            self._record(event, attempt, error="dropped: fault")
            return
        if fault is not None and fault.delay_s:
            self._spawn(self._late(event, attempt, fault.delay_s))
            return
        if fault is not None and fault.reorder:
            self._held.setdefault(webhook_id, []).append((event, attempt))
            return
        await self._send(event, attempt)
        if fault is not None and fault.duplicate:
            await self._send(event, attempt, judged=False)
        for held, held_attempt in self._held.pop(webhook_id, []):
            await self._send(held, held_attempt)

    async def _late(self, event: Event, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._send(event, attempt)

    async def _retry(self, event: Event, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._attempt(event, attempt)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # A subscription URL "must not redirect": a 3xx is a failed delivery.
            self._client = httpx.AsyncClient(
                follow_redirects=False, headers={"user-agent": USER_AGENT}
            )
        return self._client

    async def _send(self, event: Event, attempt: int, *, judged: bool = True) -> None:
        hook = event.webhook
        body = events.body(
            event.change,
            hook,
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            attempt=attempt,
        )
        auth: httpx.Auth | None = None
        if hook["http_auth_user"] is not None:
            auth = httpx.BasicAuth(hook["http_auth_user"], hook["http_auth_password"] or "")
        status: int | None = None
        error: str | None = None
        timeout_s = self.timings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http().post(
                    hook["subscription_url"],
                    json=body,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                    timeout=timeout_s,
                )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (TimeoutError, httpx.TimeoutException):
            error = f"no answer within {timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.registry.delivered(event.webhook_id, status)
        self._record(event, attempt, status=status, error=error, body=body)
        if judged:
            self._judge(event, attempt, ok=error is None)

    def _judge(self, event: Event, attempt: int, *, ok: bool) -> None:
        webhook_id = event.webhook_id
        health = self._health.get(webhook_id, policy.Health())
        health, verdict = policy.after_attempt(health, attempt, ok, time.monotonic(), self.timings)
        self._health[webhook_id] = health
        if verdict.delete:
            with contextlib.suppress(errors.ApiError):  # already removed
                self.registry.remove(webhook_id, REMOVED_FOR_FAILURES)
        if verdict.retry_in is not None:
            self._spawn(self._retry(event, attempt + 1, verdict.retry_in))

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._queues.clear()
        self._held.clear()
