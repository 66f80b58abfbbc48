"""The accounts' API usage, flushed into today's rows on SQLite and PostgreSQL: counts add up
across flushes, many accounts go in chunked statements, and the daily budget Pipedrive's
headers last said is kept with the day's row and shown by `status --accounts`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config, times
from daemon.pipedrive import account_usage
from daemon.status import snapshot

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAILY_KEYS = ("daily_tokens_remaining", "daily_tokens_limit", "daily_seen_at")


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


async def test_the_daily_budget_seen_is_kept_with_the_days_usage(
    engine: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    main = account_usage.Usage("main")
    main.call("GET", "/api/v2/deals", "200")
    main.daily_budget_seen(9_000, 10_000, NOW)
    await account_usage.flush(engine, [main], NOW)
    main.call("GET", "/api/v2/deals", "200")  # an answer without the headers
    await account_usage.flush(engine, [main], NOW + timedelta(seconds=5))
    cfg = config.parse(
        {
            "database": {"url": database_url},
            "accounts": [{"name": "main", "api_token": "t"}, {"name": "idle", "api_token": "t"}],
        },
        "c.toml",
        tmp_path,
    )
    rows = {r["account"]: r for r in await snapshot.account_rows(cfg, engine, NOW, {})}
    assert rows["main"]["calls_today"] == 2  # the existing keys stay
    assert rows["main"]["daily_tokens_remaining"] == 9_000  # kept: nothing newer was seen
    assert rows["main"]["daily_tokens_limit"] == 10_000
    assert rows["main"]["daily_seen_at"] == times.format_iso(NOW)
    assert {k: rows["idle"][k] for k in DAILY_KEYS} == dict.fromkeys(DAILY_KEYS)
    later = NOW + timedelta(minutes=1)
    main.call("GET", "/api/v2/deals", "200")
    main.daily_budget_seen(4_000, None, later)  # the limit left out: the one seen stays
    await account_usage.flush(engine, [main], later)
    row, _ = await snapshot.account_rows(cfg, engine, later, {})
    assert (row["daily_tokens_remaining"], row["daily_tokens_limit"]) == (4_000, 10_000)
    assert row["daily_seen_at"] == times.format_iso(later)
    assert snapshot.daily_tokens(row) == "4000/10000"
    # A new UTC day starts without one: yesterday's figure says nothing of today's budget.
    tomorrow = NOW + timedelta(days=1)
    row, _ = await snapshot.account_rows(cfg, engine, tomorrow, {})
    assert row["daily_tokens_remaining"] is None and snapshot.daily_tokens(row) == "-"
    assert "daily tokens left" in snapshot.render(await snapshot.gather(cfg, engine, later), None)
