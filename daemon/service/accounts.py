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


def max_wait_in_call_s(config: Config, account: str) -> float:
    """How long a call may wait for a 429's pause: one cycle of the account's fastest feed
    (a longer pause fails the cycle with its reason, and the next cycle asks again)."""
    intervals = [s.poll_interval for s in config.subscriptions if s.account == account]
    return min([DEFAULT_MAX_WAIT_IN_CALL_S, *intervals])


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
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for account in config.accounts:
            http = await stack.enter_async_context(
                PipedriveClient.http_client(account.api_root, account.token)
            )
            wait = max_wait_in_call_s(config, account.name)
            clients[account.name] = _client(http, account, retry, metrics, max_wait_s=wait)
        yield Accounts(clients, {name: lookups.LookupCache() for name in clients})


class AccountPool:
    """The running daemon's accounts, re-opened by `apply` when a reload changes them. The
    `clients` and `caches` dicts are updated in place, so the poller sees the new ones at its
    next cycle; a replaced client is closed at the next `apply` or at `aclose`, so a poll that
    is using it when the reload comes finishes with it."""

    def __init__(
        self,
        retry: RetryOptions = DEFAULT_RETRY,
        metrics: metrics_module.Metrics = metrics_module.NONE,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self.clients: dict[str, PipedriveClient] = {}
        self.caches: dict[str, lookups.LookupCache] = {}
        self._retry = retry
        self._settings: dict[str, AccountConfig] = {}
        self._stacks: dict[str, contextlib.AsyncExitStack] = {}
        self._retired: list[contextlib.AsyncExitStack] = []
        # Counts outlive a client replaced by a reload, so nothing counted is lost.
        self.usages: dict[str, account_usage.Usage] = {}

    async def apply(self, config: Config) -> None:
        for stack in self._retired:
            await stack.aclose()
        self._retired = []
        wanted = {account.name: account for account in config.accounts}
        for name in [n for n in self._settings if n not in wanted]:
            del self.clients[name], self.caches[name], self._settings[name]
            self._retired.append(self._stacks.pop(name))
        for name, account in wanted.items():
            if self._settings.get(name) == account:
                continue  # unchanged: keeps its rate limiter's history and its cache
            stack = contextlib.AsyncExitStack()
            http = await stack.enter_async_context(
                PipedriveClient.http_client(account.api_root, account.token)
            )
            usage = self.usages.setdefault(name, account_usage.Usage(name))
            wait = max_wait_in_call_s(config, name)
            self.clients[name] = _client(
                http, account, self._retry, self._metrics, usage, self._clock, max_wait_s=wait
            )
            self.caches[name] = lookups.LookupCache(clock=self._clock)
            if name in self._stacks:
                self._retired.append(self._stacks[name])
            self._stacks[name] = stack
            self._settings[name] = account

    async def aclose(self) -> None:
        for stack in [*self._retired, *self._stacks.values()]:
            await stack.aclose()
        self._retired, self._stacks = [], {}
