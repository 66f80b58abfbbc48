"""The edge in front of the routes, as Pipedrive's API gateway behaves: log every call, check
the token before routing, spend rate-limit budget, apply injected faults, stamp rate headers."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.dev.sandbox import calls, clock, costs, errors, faults, pagination, rate_limit

V1_ALIAS = "/api/v1/"
MALFORMED_BODY = b'{"success": true, "data": [{"id": 1, "title": "trunc'


def presented_token(scope: Scope) -> str | None:
    """x-api-token header, else the legacy api_token query parameter, else a Bearer token."""
    headers = Headers(scope=scope)
    token = headers.get("x-api-token") or QueryParams(scope["query_string"]).get("api_token")
    if token:
        return token
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def route_template(route: Route) -> str:
    """'/api/v2/deals/{id:int}' -> '/api/v2/deals/{id}', the spec's spelling."""
    return route.path.replace(":int}", "}")


class Gateway:
    def __init__(
        self,
        app: ASGIApp,
        routes: list[Route],
        token: Callable[[], str],
        limiter: rate_limit.RateLimiter,
        fault_list: faults.Faults,
        log: calls.CallLog,
    ) -> None:
        self.app = app
        self.routes = routes
        self.token = token
        self.limiter = limiter
        self.faults = fault_list
        self.log = log

    def _template(self, scope: Scope) -> str | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route_template(route)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = clock.utc_now()
        method, path = scope["method"], scope["path"]
        query = dict(QueryParams(scope["query_string"]))
        token = presented_token(scope)
        valid = token is not None and token == self.token()
        logged = False

        async def logging_send(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                # Logged before the body goes out, so a client that has its response
                # always finds its call in the log.
                logged = True
                call = calls.Call(method, path, query, message["status"], valid, started)
                self.log.append(call)
            await send(message)

        try:
            await self._handle(scope, receive, logging_send, token or "", valid)
        finally:
            if not logged:
                self.log.append(calls.Call(method, path, query, 500, valid, started))

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, token: str, valid: bool
    ) -> None:
        mono, wall = time.monotonic(), clock.utc_now()
        if not valid:
            headers = {**self.limiter.peek(token, mono, wall).headers(), "x-401-by-gw": "true"}
            await _send_json(send, 401, errors.unauthorized_body(), headers)
            return
        if scope["path"].startswith(V1_ALIAS):
            scope = {**scope, "path": "/v1/" + scope["path"][len(V1_ALIAS) :]}
        template = self._template(scope)
        decision = self.limiter.admit(token, costs.cost_of(scope["method"], template), mono, wall)
        headers = decision.headers()
        if not decision.allowed:
            await _send_json(send, 429, errors.rate_limited_body(), headers)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.malformed:
                await _send_raw(send, 200, MALFORMED_BODY, headers)
                return
            if fault.status is not None:
                body = errors.error_body(f"Injected fault: HTTP {fault.status}")
                if fault.status == 429:
                    body = errors.rate_limited_body()
                if fault.retry_after is not None:
                    headers = {**headers, "retry-after": str(fault.retry_after)}
                await _send_json(send, fault.status, body, headers)
                return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if fault is not None and (fault.repeat_cursor or fault.fresh_cursor):
            query = QueryParams(scope["query_string"])
            if fault.fresh_cursor:  # the first page again, whatever cursor was sent
                query = QueryParams([(k, v) for k, v in query.multi_items() if k != "cursor"])
                scope = {**scope, "query_string": str(query).encode()}
            pinning = _pinning_cursor(stamped, query, fresh=fault.fresh_cursor)
            await self.app(scope, receive, pinning)
            return
        await self.app(scope, receive, stamped)


# A valid cursor meaning "after id 0, by id": the first page, again and again.
STUCK_CURSOR = pagination.encode_cursor(pagination.Cursor("id", 0, "asc", 0))


_fresh = itertools.count(1)


def pin_next_page(body: Any, query: QueryParams, *, fresh: bool = False) -> Any:
    """A list body whose next page is the one just asked for: v2 gets the request's own cursor
    back (or STUCK_CURSOR), v1 gets `next_start` = the request's `start`. `fresh`: a v2 cursor
    never issued before, meaning "after id -n", so the first page (the gateway drops the
    cursor it was sent, so each of them serves that page again)."""
    if not isinstance(body, dict) or not isinstance(body.get("additional_data"), dict):
        return body
    extra = body["additional_data"]
    if fresh:
        n = -next(_fresh)
        extra["next_cursor"] = pagination.encode_cursor(pagination.Cursor("id", n, "asc", n))
    elif isinstance(extra.get("pagination"), dict):
        start = int(query.get("start") or 0)
        extra["pagination"].update(more_items_in_collection=True, next_start=start)
    else:
        extra["next_cursor"] = query.get("cursor") or extra.get("next_cursor") or STUCK_CURSOR
    return body


def _pinning_cursor(send: Send, query: QueryParams, *, fresh: bool = False) -> Send:
    """Buffer the route's answer and rewrite its paging data before it goes out."""
    started: list[Message] = []
    chunks: list[bytes] = []

    async def rewriting(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        start = started[0]
        raw = b"".join(chunks)
        if start["status"] == 200:
            raw = json.dumps(pin_next_page(json.loads(raw), query, fresh=fresh)).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    return rewriting


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    await _send_raw(send, status, json.dumps(body).encode(), headers)


async def _send_raw(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
