"""POSTs to consumers, and what they answered.

Each POST is an `httpx.Request` handed straight to `CallbackTransport` (which names failures
and guards targets). `httpx.AsyncClient` is left out: its per-request layers (merging its
defaults into each request, the auth and redirect flows, the cookie jar) cost ~40 % of a
POST's CPU, and none of them is wanted here. What they did that matters is done here: the
timeout, the user agent, a URL's userinfo sent as Basic auth. A redirect is not followed (the
3xx is the answer: following it could hand a signed event to a host nobody configured), and no
cookie is kept (aiohttp's jar is a dummy: each delivery stands alone).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from daemon.delivery.callback_transport import ALLOW_PRIVATE_TARGETS, CallbackTransport

MAX_REPLY_READ = 64 * 1024  # read at most this much of a reply; the rest is never fetched
REPLY_KEPT = 1024  # bytes of the reply recorded with each attempt
USER_AGENT = b"pipedrive-triggers"


async def read_reply(response: httpx.Response) -> str:
    """The first `REPLY_KEPT` bytes of the reply as text, reading at most `MAX_REPLY_READ`
    off the connection: a reply that is longer closes the connection instead of being drained.
    """
    if response.headers.get("content-length") == "0":
        # Most consumers answer with no body: aiohttp has read it all with the headers, and
        # the stream's generator machinery cost ~3% of the daemon's CPU in a backlog.
        return ""
    kept = bytearray()
    read = 0
    chunks = response.aiter_raw()
    assert isinstance(chunks, AsyncGenerator)  # httpx's: close it when leaving it early
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            read += len(chunk)
            if len(kept) < REPLY_KEPT:
                kept += chunk[: REPLY_KEPT - len(kept)]
            if read >= MAX_REPLY_READ:
                break
    return kept.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Answer:
    """A consumer's answer to one POST."""

    status: int
    reason: str
    retry_after: str | None  # the header as sent
    reply: str  # its first `REPLY_KEPT` bytes as text


class Callbacks:
    """POSTs to consumers (see the module's docstring); one per process, closed at its end."""

    def __init__(self, timeout_s: float) -> None:
        self._transport = CallbackTransport()
        self._timeout = dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)
        self._targets: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes]]]] = {}

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool = False
    ) -> Answer:
        """POST `body` and read the answer; a failure raises an `httpx.TransportError` whose
        message never quotes the URL (`RefusedTarget` when the guard refused the target)."""
        target, fixed = self._target(url)
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if allow_private:
            extensions.update(ALLOW_PRIVATE_TARGETS)
        request = httpx.Request(
            "POST",
            target,
            headers=fixed + [(name.encode(), value.encode()) for name, value in headers.items()],
            content=body,
            extensions=extensions,
        )
        response = await self._transport.handle_async_request(request)
        try:
            return Answer(
                status=response.status_code,
                reason=response.reason_phrase,
                retry_after=response.headers.get("retry-after"),
                reply=await read_reply(response),
            )
        finally:
            await response.aclose()

    def _target(self, url: str) -> tuple[httpx.URL, list[tuple[bytes, bytes]]]:
        """The URL without its userinfo, and the headers every POST to it carries."""
        known = self._targets.get(url)
        if known is None:
            parsed = httpx.URL(url)
            fixed = [
                (b"user-agent", USER_AGENT),
                # The reply is kept as text: a compressed one would be kept as bytes.
                (b"accept-encoding", b"identity"),
            ]
            if parsed.userinfo:
                # As httpx's client does: userinfo is sent as Basic auth, not in the URL.
                credentials = f"{parsed.username}:{parsed.password}".encode()
                fixed.append((b"authorization", b"Basic " + base64.b64encode(credentials)))
                parsed = parsed.copy_with(userinfo=b"")
            known = self._targets[url] = (parsed, fixed)
        return known

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Callbacks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
