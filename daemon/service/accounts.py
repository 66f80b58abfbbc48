"""Per Pipedrive account: the API client, rate limiter and lookup cache, shared by all."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from daemon import clock as clock_module
from daemon import metrics as metrics_module
from daemon.config import AccountConfig, Config
from daemon.pipedrive import account_usage, lookups
from daemon.pipedrive.client import (
    DEFAULT_MAX_WAIT_IN_CALL_S,
    DEFAULT_RETRY,
    PipedriveClient,
    RetryOptions,
)
from daemon.pipedrive.rate_limit import AccountRateLimiter


@dataclass
class Accounts:
    """One rate limiter, API client and lookup cache per account, shared by polls and actions."""

    clients: dict[str, PipedriveClient]
    caches: dict[str, lookups.LookupCache]


def max_wait_in_call_s(config: Config) -> dict[str, float]:
    """How long each account's calls may wait for a 429's pause: one cycle of the account's
    fastest feed (a longer pause fails the cycle with its reason, and the next cycle asks
    again). Worked out for all accounts in one pass over the subscriptions."""
    waits = {account.name: DEFAULT_MAX_WAIT_IN_CALL_S for account in config.accounts}
    for subscription in config.subscriptions:
        if subscription.account in waits:
            waits[subscription.account] = min(
                waits[subscription.account], subscription.poll_interval
            )
    return waits


def _client(
    http: httpx.AsyncClient,
    account: AccountConfig,
    retry: RetryOptions,
    metrics: metrics_module.Metrics,
    usage: account_usage.Usage | None = None,
    clock: clock_module.Clock = clock_module.SYSTEM,
    *,
    max_wait_s: float = DEFAULT_MAX_WAIT_IN_CALL_S,
) -> PipedriveClient:
    return PipedriveClient(
        http,
        account=account.name,
        api_root=account.api_root,
        token=account.token,
        limiter=AccountRateLimiter(
            account.calls_per_minute,
            on_wait=functools.partial(metrics.rate_limit_wait, account.name),
            clock=clock,
        ),
        retry=retry,
        max_wait_in_call_s=max_wait_s,
        metrics=metrics,
        usage=usage,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def open_accounts(
    config: Config,
    retry: RetryOptions = DEFAULT_RETRY,
    metrics: metrics_module.Metrics = metrics_module.NONE,
) -> AsyncIterator[Accounts]:
    async with PipedriveClient.shared_http_client() as http:
        waits = max_wait_in_call_s(config)
        clients = {
            account.name: _client(http, account, retry, metrics, max_wait_s=waits[account.name])
            for account in config.accounts
        }
        yield Accounts(clients, {name: lookups.LookupCache() for name in clients})


class AccountPool:
    """The running daemon's accounts, re-made by `apply` when a reload changes them. The
    `clients` and `caches` dicts are updated in place, so the poller sees the new ones at its
    next cycle. Every client sends on one shared HTTP client (one connection pool, one TLS
    context), closed by `aclose`; a replaced client needs no closing, so a poll that is using
    it when the reload comes finishes with it."""

    def __init__(
        self,
        retry: RetryOptions = DEFAULT_RETRY,
        metrics: metrics_module.Metrics = metrics_module.NONE,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._http = PipedriveClient.shared_http_client()
        self.clients: dict[str, PipedriveClient] = {}
        self.caches: dict[str, lookups.LookupCache] = {}
        self._retry = retry
        self._settings: dict[str, AccountConfig] = {}
        # Counts outlive a client replaced by a reload, so nothing counted is lost.
        self.usages: dict[str, account_usage.Usage] = {}

    async def apply(self, config: Config) -> None:
        wanted = {account.name: account for account in config.accounts}
        waits = max_wait_in_call_s(config)
        for name in [n for n in self._settings if n not in wanted]:
            del self.clients[name], self.caches[name], self._settings[name]
        for name, account in wanted.items():
            if self._settings.get(name) == account:
                continue  # unchanged: keeps its rate limiter's history and its cache
            usage = self.usages.setdefault(name, account_usage.Usage(name))
            self.clients[name] = _client(
                self._http,
                account,
                self._retry,
                self._metrics,
                usage,
                self._clock,
                max_wait_s=waits[name],
            )
            self.caches[name] = lookups.LookupCache(clock=self._clock)
            self._settings[name] = account

    async def aclose(self) -> None:
        await self._http.aclose()
