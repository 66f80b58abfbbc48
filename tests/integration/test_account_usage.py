"""The accounts' API usage, flushed into today's rows on SQLite and PostgreSQL: counts add up
across flushes, and many accounts go in chunked statements."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.pipedrive import account_usage

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_flushes_add_up_per_account(engine: AsyncEngine) -> None:
    main, other = account_usage.Usage("main"), account_usage.Usage("other")
    main.call("GET", "/api/v2/deals", "200")
    main.waited()
    await account_usage.flush(engine, [main, other], NOW)
    main.call("GET", "/api/v2/deals", "200")
    other.call("GET", "/v1/users/me", "200")
    await account_usage.flush(engine, [main, other], NOW)
    counts = await account_usage.counts_today(engine, ["main", "other", "idle"], NOW)
    assert counts == {
        "main": account_usage.Counts(calls=2, tokens=20, rate_limit_waits=1),
        "other": account_usage.Counts(calls=1, tokens=2, rate_limit_waits=0),
        "idle": account_usage.Counts(),
    }
    assert main.unflushed() == account_usage.Counts()


async def test_more_accounts_than_one_statement_takes(engine: AsyncEngine) -> None:
    usages = [
        account_usage.Usage(f"acct-{n:04d}")
        for n in range(account_usage.ROWS_PER_STATEMENT * 2 + 1)
    ]
    for round_ in range(2):
        for n, usage in enumerate(usages):
            for _ in range(n % 3 + round_):
                usage.call("GET", "/api/v2/deals", "200")
        await account_usage.flush(engine, usages, NOW)
    counts = await account_usage.counts_today(engine, [u.account for u in usages], NOW)
    assert [c.calls for c in counts.values()] == [2 * (n % 3) + 1 for n in range(len(usages))]
