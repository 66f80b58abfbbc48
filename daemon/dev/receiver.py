"""A webhook consumer to point subscriptions at: the demo prints what it gets, tests check it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    event_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None when the receiver has no secret to check with
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Reply:
    status: int
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver:
    """An ASGI app that records every POST, verifies Standard Webhooks signatures when given the
    secret, and answers 200 unless told to answer otherwise for the next requests."""

    def __init__(
        self,
        secret: str | None = None,
        on_receive: Callable[[Received], None] | None = None,
        keep_bodies: bool = True,
    ) -> None:
        self._verifier = Webhook(secret) if secret else None
        self._on_receive = on_receive
        self._keep_bodies = keep_bodies
        self._lock = threading.Lock()
        self._script: deque[_Reply] = deque()
        self.received: list[Received] = []  # the requests answered with 2xx
        self.attempts: list[Received] = []  # every request, whatever the answer

    def reply(
        self,
        status: int,
        times: int = 1,
        delay_s: float = 0.0,
        retry_after: int | None = None,
        location: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (after `delay_s`), with a
        `Retry-After`, a redirect's `Location` or other `headers` when given."""
        headers = dict(headers or {})
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if location is not None:
            headers["location"] = location
        with self._lock:
            self._script.extend(_Reply(status, delay_s, headers) for _ in range(times))

    def clear_replies(self) -> None:
        """Forget the scripted answers not used yet: answer 200 from now on."""
        with self._lock:
            self._script.clear()

    def event_ids(self) -> set[str]:
        with self._lock:
            return {item.event_id for item in self.received}

    def wait_for(self, distinct_events: int, timeout_s: float) -> bool:
        """Block until `distinct_events` different webhook-ids arrived (True) or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.event_ids()) >= distinct_events:
                return True
            time.sleep(0.02)
        return len(self.event_ids()) >= distinct_events

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool | None:
        if self._verifier is None:
            return None
        try:
            self._verifier.verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        with self._lock:
            reply = self._script.popleft() if self._script else _Reply(200)
        item = Received(
            event_id=headers.get("webhook-id", ""),
            headers=headers,
            body=body if self._keep_bodies else b"",
            verified=self._verify(body, headers),
            received_at=time.time(),
        )
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        with self._lock:
            self.attempts.append(item)
            if 200 <= reply.status < 300:
                self.received.append(item)
        if self._on_receive is not None and 200 <= reply.status < 300:
            self._on_receive(item)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})
