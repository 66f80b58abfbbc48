"""What each Pipedrive account has spent today: calls, tokens and rate-limit waits.

The API client counts in memory (`Usage`); the daemon adds the counts to the
`account_usage` table every `FLUSH_INTERVAL_S` and at shutdown (`flush_forever`), so
`status --accounts` reads them from the database, while the daemon runs or after it stopped.
Rows add up: a restart continues the day's totals instead of starting them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import times
from daemon.db import database, write_lock
from daemon.db.tables import account_usage
from daemon.pipedrive import costs

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 5.0
# Accounts per INSERT: 6 parameters each stays far below SQLite's and PostgreSQL's limits.
ROWS_PER_STATEMENT = 500


def today(now: datetime) -> str:
    return times.format_date(now.astimezone(UTC).date())


@dataclass
class Counts:
    calls: int = 0
    tokens: int = 0
    rate_limit_waits: int = 0


class Usage:
    """One account's counts since the last flush (the client calls `call` and `waited`)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self._unflushed = Counts()

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


def _upsert(connection: Any, rows: Sequence[tuple[Usage, Counts]], now: datetime) -> Any:
    """Add each row's counts to its account's row of today (inserted if absent)."""
    statement = database.dialect_insert(connection, account_usage).values(
        [
            {
                "account": usage.account,
                "day": today(now),
                "calls": counts.calls,
                "tokens": counts.tokens,
                "rate_limit_waits": counts.rate_limit_waits,
                "updated_at": now,
            }
            for usage, counts in rows
        ]
    )
    table, added = account_usage.c, statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["account", "day"],
        set_={
            "calls": table.calls + added.calls,
            "tokens": table.tokens + added.tokens,
            "rate_limit_waits": table.rate_limit_waits + added.rate_limit_waits,
            "updated_at": added.updated_at,
        },
    )


async def flush(engine: AsyncEngine, usages: Iterable[Usage], now: datetime) -> None:
    """Add each account's unflushed counts to today's row."""
    rows = []
    for usage in usages:
        counts = usage.take()
        if counts.calls or counts.rate_limit_waits:
            rows.append((usage, counts))
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
        for usage, counts in rows:  # kept for the next flush, not lost
            usage._unflushed.calls += counts.calls
            usage._unflushed.tokens += counts.tokens
            usage._unflushed.rate_limit_waits += counts.rate_limit_waits
        raise


async def flush_forever(
    engine: AsyncEngine,
    usages: Iterable[Usage],
    interval_s: float = FLUSH_INTERVAL_S,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> None:
    """Flush every `interval_s` until cancelled, then once more."""
    try:
        while True:
            await clock.sleep(interval_s)
            try:
                await flush(engine, list(usages), clock.now())
            except Exception:
                logger.warning(
                    "cannot record the accounts' API usage; trying again",
                    exc_info=True,
                    extra={"action": "account_usage.flush_failed"},
                )
    finally:
        await flush(engine, list(usages), clock.now())


async def counts_today(
    engine: AsyncEngine,
    accounts: Iterable[str],
    now: datetime,
    unflushed: Mapping[str, Usage] | None = None,
) -> dict[str, Counts]:
    """What each configured account has spent today (zeros when unused), as `status
    --accounts` and the admin page show it: the recorded counts, plus, in the running daemon,
    what its `unflushed` usages have not recorded yet."""
    query = select(account_usage).where(account_usage.c.day == today(now))
    async with engine.connect() as connection:
        found = {row.account: row for row in await connection.execute(query)}
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
    """`status --json --accounts`: one object per configured account, zeros when unused."""
    return [
        {
            "account": name,
            "calls_today": counts.calls,
            "tokens_today": counts.tokens,
            "rate_limit_waits": counts.rate_limit_waits,
        }
        for name, counts in (await counts_today(engine, accounts, now)).items()
    ]
