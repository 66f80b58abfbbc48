"""What each Pipedrive account has spent today: calls, tokens and rate-limit waits, and the
company's daily token budget as Pipedrive's headers last said it.

The API client counts in memory (`Usage`); the daemon adds the counts to the
`account_usage` table every `FLUSH_INTERVAL_S` and at shutdown (`flush_forever`), so
`status --accounts` reads them from the database, while the daemon runs or after it stopped.
Rows add up: a restart continues the day's totals instead of starting them again. The daily
budget seen (`x-daily-ratelimit-token-remaining` / `-limit`) replaces the row's; the running
daemon also reads it from memory (`Usage.daily`) to stretch instant mode's reconciliation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import times
from daemon.db import database, write_lock
from daemon.db.tables import account_usage
from daemon.pipedrive import costs

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 5.0
# Accounts per INSERT: 9 parameters each stays far below SQLite's and PostgreSQL's limits.
ROWS_PER_STATEMENT = 500


def today(now: datetime) -> str:
    return times.format_date(now.astimezone(UTC).date())


@dataclass
class Counts:
    calls: int = 0
    tokens: int = 0
    rate_limit_waits: int = 0


@dataclass(frozen=True)
class DailyBudget:
    """Pipedrive's daily token budget for the account's company, as one answer's headers said
    it: `remaining` tokens (`x-daily-ratelimit-token-remaining`), of `limit` when sent too."""

    remaining: int
    limit: int | None
    seen_at: datetime

    def seen_on(self, now: datetime) -> bool:
        """Whether it was seen on `now`'s UTC day (a figure of yesterday says nothing today)."""
        return today(self.seen_at) == today(now)


class Usage:
    """One account's counts since the last flush (the client calls `call` and `waited`), and
    the latest daily budget seen (`daily_budget_seen`)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self._unflushed = Counts()
        self.daily: DailyBudget | None = None  # the latest seen, kept across flushes
        self._daily_unflushed = False

    def daily_budget_seen(self, remaining: int, limit: int | None, now: datetime) -> None:
        """An answer carried the daily budget headers (Pipedrive leaves them out at times; a
        limit left out keeps the one seen before)."""
        if limit is None and self.daily is not None:
            limit = self.daily.limit
        self.daily = DailyBudget(remaining, limit, now)
        self._daily_unflushed = True

    def call(self, method: str, path: str, status: str) -> None:
        """One call and how it ended (see `api_costs.spent`)."""
        self._unflushed.calls += 1
        self._unflushed.tokens += costs.spent(method, path, status)

    def waited(self) -> None:
        self._unflushed.rate_limit_waits += 1

    def unflushed(self) -> Counts:
        return Counts(**vars(self._unflushed))

    def take(self) -> Counts:
        taken, self._unflushed = self._unflushed, Counts()
        return taken

    def take_daily(self) -> DailyBudget | None:
        """The daily budget seen since the last flush, if any."""
        taken, self._daily_unflushed = self._daily_unflushed, False
        return self.daily if taken else None


@dataclass(frozen=True)
class _Row:
    usage: Usage
    counts: Counts
    daily: DailyBudget | None


def _upsert(connection: Any, rows: Sequence[_Row], now: datetime) -> Any:
    """Add each row's counts to its account's row of today (inserted if absent); a daily
    budget seen replaces the row's, one not seen since the last flush leaves it."""
    statement = database.dialect_insert(connection, account_usage).values(
        [
            {
                "account": row.usage.account,
                "day": today(now),
                "calls": row.counts.calls,
                "tokens": row.counts.tokens,
                "rate_limit_waits": row.counts.rate_limit_waits,
                "updated_at": now,
                "daily_tokens_remaining": row.daily.remaining if row.daily else None,
                "daily_tokens_limit": row.daily.limit if row.daily else None,
                "daily_seen_at": row.daily.seen_at if row.daily else None,
            }
            for row in rows
        ]
    )
    table, added = account_usage.c, statement.excluded
    seen = added.daily_seen_at.is_not(None)
    return statement.on_conflict_do_update(
        index_elements=["account", "day"],
        set_={
            "calls": table.calls + added.calls,
            "tokens": table.tokens + added.tokens,
            "rate_limit_waits": table.rate_limit_waits + added.rate_limit_waits,
            "updated_at": added.updated_at,
            **{
                name: case((seen, added[name]), else_=table[name])
                for name in ("daily_tokens_remaining", "daily_tokens_limit", "daily_seen_at")
            },
        },
    )


async def flush(engine: AsyncEngine, usages: Iterable[Usage], now: datetime) -> None:
    """Add each account's unflushed counts to today's row."""
    rows = []
    for usage in usages:
        counts, daily = usage.take(), usage.take_daily()
        if counts.calls or counts.rate_limit_waits or daily is not None:
            rows.append(_Row(usage, counts, daily))
    if not rows:
        return
    try:
        async with write_lock.begin(engine) as connection:
            # One statement per chunk, not one per account: a thousand accounts that each
            # made a call in the last seconds are one round trip.
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                await connection.execute(
                    _upsert(connection, rows[start : start + ROWS_PER_STATEMENT], now)
                )
    except Exception:
        for row in rows:  # kept for the next flush, not lost
            row.usage._unflushed.calls += row.counts.calls
            row.usage._unflushed.tokens += row.counts.tokens
            row.usage._unflushed.rate_limit_waits += row.counts.rate_limit_waits
            row.usage._daily_unflushed |= row.daily is not None
        raise


async def flush_forever(
    engine: AsyncEngine,
    usages: Iterable[Usage],
    interval_s: float = FLUSH_INTERVAL_S,
    clock: clock_module.Clock = clock_module.SYSTEM,
    on_flushed: Callable[[], None] = lambda: None,
) -> None:
    """Flush every `interval_s` until cancelled, then once more. `on_flushed` is called
    after each periodic flush (the lifecycle looks at the daily budgets then)."""
    try:
        while True:
            await clock.sleep(interval_s)
            try:
                await flush(engine, list(usages), clock.now())
                on_flushed()
            except Exception:
                logger.warning(
                    "cannot record the accounts' API usage; trying again",
                    exc_info=True,
                    extra={"action": "account_usage.flush_failed"},
                )
    finally:
        await flush(engine, list(usages), clock.now())


async def _rows_today(engine: AsyncEngine, now: datetime) -> dict[str, Any]:
    query = select(account_usage).where(account_usage.c.day == today(now))
    async with engine.connect() as connection:
        return {row.account: row for row in await connection.execute(query)}


async def counts_today(
    engine: AsyncEngine,
    accounts: Iterable[str],
    now: datetime,
    unflushed: Mapping[str, Usage] | None = None,
) -> dict[str, Counts]:
    """What each configured account has spent today (zeros when unused), as `status
    --accounts` and the admin page show it: the recorded counts, plus, in the running daemon,
    what its `unflushed` usages have not recorded yet."""
    found = await _rows_today(engine, now)
    result: dict[str, Counts] = {}
    for name in accounts:
        row = found.get(name)
        counts = Counts(row.calls, row.tokens, row.rate_limit_waits) if row else Counts()
        usage = (unflushed or {}).get(name)
        if usage is not None:
            extra = usage.unflushed()
            counts.calls += extra.calls
            counts.tokens += extra.tokens
            counts.rate_limit_waits += extra.rate_limit_waits
        result[name] = counts
    return result


async def load_today(
    engine: AsyncEngine, accounts: Iterable[str], now: datetime
) -> list[dict[str, object]]:
    """`status --json --accounts`: one object per configured account, zeros when unused, with
    the daily budget Pipedrive last reported today (None when not seen today)."""
    found = await _rows_today(engine, now)
    rows: list[dict[str, object]] = []
    for name in accounts:
        row = found.get(name)
        seen_at = row.daily_seen_at if row is not None else None
        rows.append(
            {
                "account": name,
                "calls_today": row.calls if row else 0,
                "tokens_today": row.tokens if row else 0,
                "rate_limit_waits": row.rate_limit_waits if row else 0,
                "daily_tokens_remaining": row.daily_tokens_remaining if row else None,
                "daily_tokens_limit": row.daily_tokens_limit if row else None,
                "daily_seen_at": times.format_iso(seen_at) if seen_at else None,
            }
        )
    return rows
