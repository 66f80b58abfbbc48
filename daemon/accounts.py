"""Per Pipedrive account: the API client, rate limiter and lookup cache, shared by all."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass

from daemon import lookups
from daemon import metrics as metrics_module
from daemon.config import Config
from daemon.pipedrive import DEFAULT_RETRY, PipedriveClient, RetryOptions
from daemon.rate_limit import AccountRateLimiter


@dataclass
class Accounts:
    """One rate limiter, API client and lookup cache per account, shared by polls and actions."""

    clients: dict[str, PipedriveClient]
    caches: dict[str, lookups.LookupCache]


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
            clients[account.name] = PipedriveClient(
                http,
                account=account.name,
                limiter=AccountRateLimiter(
                    account.calls_per_minute,
                    on_wait=functools.partial(metrics.rate_limit_wait, account.name),
                ),
                retry=retry,
                metrics=metrics,
            )
        yield Accounts(clients, {name: lookups.LookupCache() for name in clients})
