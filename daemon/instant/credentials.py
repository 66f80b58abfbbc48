"""The basic-auth credentials each account's webhook was registered with, as the ingress checks
them: read from `instant_webhooks` (the same for every replica) and kept in memory. A miss (an
account not known yet, credentials that do not match) reloads them, at most once a second, so
a flood of forged requests costs at most one database read a second.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import instant_webhooks, transient

logger = logging.getLogger(__name__)

RELOAD_EVERY_S = 1.0  # at most one database read per this long, however many misses
RELOAD_WAIT_S = 1.0  # a request waits this long for a reload (Pipedrive waits 10 s)


def _given(header: str | None) -> bytes | None:
    """`user:password` from an `Authorization: Basic ...` header."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


class Credentials:
    """Which `Authorization` header each account's webhook sends."""

    def __init__(self, engine: AsyncEngine, clock: clock_module.Clock = clock_module.SYSTEM):
        self._engine = engine
        self._clock = clock
        self._expected: dict[str, bytes] = {}  # account -> b"user:password"
        self._loaded_at = -float("inf")
        self._loading: asyncio.Task[None] | None = None
        self._outage = transient.Outage()
        self.loads = 0  # database reads made, for tests

    async def load(self) -> None:
        """Read every account's credentials now (at start; later only on a miss)."""
        self._loaded_at = self._clock.monotonic()
        self.loads += 1
        try:
            rows = await instant_webhooks.load_all(self._engine)
        except Exception as error:  # any failure: the credentials known so far stay in use
            self._outage.failed("reading the instant webhooks' credentials", error)
            return
        self._outage.recovered()
        self._expected = {
            account: f"{row.http_auth_user}:{row.http_auth_password.get_secret_value()}".encode()
            for account, row in rows.items()
        }

    def _matches(self, account: str, given: bytes) -> bool:
        expected = self._expected.get(account)
        if expected is None:
            # Compare anyway, so an unknown account takes as long as a wrong password.
            hmac.compare_digest(given, given)
            return False
        return hmac.compare_digest(given, expected)

    async def check(self, account: str, header: str | None) -> bool:
        """Whether `header` carries `account`'s credentials."""
        given = _given(header)
        if given is None:
            return False
        if self._matches(account, given):
            return True
        await self._reload()
        return self._matches(account, given)

    async def _reload(self) -> None:
        if self._loading is None or self._loading.done():
            if self._clock.monotonic() - self._loaded_at < RELOAD_EVERY_S:
                return
            self._loading = asyncio.create_task(self.load(), name="instant-credentials")
        try:
            # Shielded: a request that gives up waiting does not cancel the others' reload.
            await asyncio.wait_for(asyncio.shield(self._loading), RELOAD_WAIT_S)
        except TimeoutError:
            pass

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
