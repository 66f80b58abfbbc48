"""The company's daily token budget as Pipedrive's headers report it: when it is low, and how
instant mode's reconciliation stretches then (once said per account and day)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from daemon import config
from daemon.clock import FakeClock
from daemon.pipedrive import account_usage, token_budget
from daemon.pipedrive.client import PipedriveClient
from daemon.pipedrive.rate_limit import AccountRateLimiter
from daemon.polling import plan
from daemon.service import lifecycle


@pytest.mark.parametrize(
    ("remaining", "budget", "share", "low"),
    [
        (4_999, 10_000, 0.5, True),  # our half is spent: the rest is the other tools'
        (5_000, 10_000, 0.5, False),
        (9_000, 10_000, 0.5, False),
        (2_000, 10_000, 0.75, True),  # 2,500 kept for the others
        (2_500, 10_000, 0.75, False),
        (0, 10_000, 1.0, False),  # the whole budget is ours: never "low" before 429
        (0, None, 0.5, False),  # no daily_token_budget configured: nothing to compare
        (None, 10_000, 0.5, False),  # not seen today
    ],
)
def test_when_the_daily_budget_is_low(
    remaining: int | None, budget: int | None, share: float, low: bool
) -> None:
    assert token_budget.budget_low(remaining, budget, share) is low


NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _running(budget: int | None, clock: FakeClock) -> tuple[Any, account_usage.Usage]:
    account: dict[str, Any] = {"name": "main", "api_token": "t", "budget_share": 0.5}
    if budget is not None:
        account["daily_token_budget"] = budget
    raw = {
        "database": {"url": "sqlite:///x.db"},
        "instant": {"listen": "127.0.0.1:9466", "public_url": "https://h.example.com/p"},
        "accounts": [account],
        "subscriptions": [
            {
                "name": "deals",
                "account": "main",
                "trigger": "deal.added",
                "callback_url": "https://consumer.example.com/hook",
                "secret": "whsec_" + "a" * 32,
            }
        ],
    }
    usage = account_usage.Usage("main")
    pool = SimpleNamespace(usages={"main": usage}, clients={}, caches={})
    running = lifecycle._Running(
        config.parse(raw, "config.toml", Path(".")),
        None,  # type: ignore[arg-type]  # interval() reads neither engine, pool's clients,
        pool,  # type: ignore[arg-type]  # deliverer, poller nor scheduler
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        clock,
    )
    running._instant_healthy = {"main"}
    return running, usage


def _feed(running: Any) -> plan.Feed:
    [feed] = running.feeds
    return feed  # type: ignore[no-any-return]


def test_a_low_budget_stretches_reconciliation_said_once_a_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(NOON)
    running, usage = _running(10_000, clock)
    feed = _feed(running)
    assert running.interval(feed) == 600  # nothing seen yet: the reconcile_interval
    usage.daily_budget_seen(6_000, 10_000, clock.now())
    assert running.interval(feed) == 600
    usage.daily_budget_seen(4_000, 10_000, clock.now())
    running._held = {"main"}
    rescheduled: list[str] = []
    running._restart_soon = rescheduled.append  # the scheduler is not under test
    with caplog.at_level(logging.INFO):
        assert running.interval(feed) == 600 * token_budget.RECONCILE_STRETCH
        running.usage_flushed()  # the usage flush sees it low: said, and rescheduled
        running.usage_flushed()
        assert running.interval(feed) == 600 * token_budget.RECONCILE_STRETCH
    said = [r for r in caplog.records if getattr(r, "action", "") == "instant.reconcile_stretched"]
    assert len(said) == 1 and "'main'" in said[0].getMessage()
    assert rescheduled == ["main"]
    # Yesterday's figure says nothing after the daily reset.
    clock.advance(timedelta(hours=13).total_seconds())
    assert running.interval(feed) == 600
    running._instant_silent = {"main"}  # unhealthy: polling is the truth, never stretched
    usage.daily_budget_seen(10, 10_000, clock.now())
    assert running.interval(feed) == min(feed.interval_s, 600)


def test_without_a_configured_budget_nothing_stretches() -> None:
    clock = FakeClock(NOON)
    running, usage = _running(None, clock)
    usage.daily_budget_seen(0, 10_000, clock.now())
    assert running.interval(_feed(running)) == 600


@pytest.mark.parametrize(
    "headers",
    [
        {},  # Pipedrive sometimes sends none (after inactivity)
        {
            "x-ratelimit-remaining": "none",
            "x-ratelimit-reset": "2",
            "x-daily-ratelimit-token-remaining": "-5",
            "x-daily-ratelimit-token-limit": "lots",
        },
    ],
)
async def test_answers_without_readable_rate_headers_neither_wait_nor_record(
    headers: dict[str, str],
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": []}, headers=headers)

    clock = FakeClock(NOON)
    usage = account_usage.Usage("main")
    async with httpx.AsyncClient(
        base_url="https://pd.example.com", transport=httpx.MockTransport(answer)
    ) as http:
        client = PipedriveClient(
            http, account="main", limiter=AccountRateLimiter(100, clock=clock), usage=usage,
            clock=clock,
        )  # fmt: skip
        for _ in range(3):
            await client.call("GET", "/api/v2/deals")
    assert clock.monotonic() == 1000.0  # no virtual second waited
    assert usage.daily is None


async def test_the_daily_budget_headers_are_recorded_with_the_time_seen() -> None:
    sent = {"x-daily-ratelimit-token-remaining": "1234"}  # the limit left out this time

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": []}, headers=sent)

    clock = FakeClock(NOON)
    usage = account_usage.Usage("main")
    async with httpx.AsyncClient(
        base_url="https://pd.example.com", transport=httpx.MockTransport(answer)
    ) as http:
        client = PipedriveClient(
            http, account="main", limiter=AccountRateLimiter(100, clock=clock), usage=usage,
            clock=clock,
        )  # fmt: skip
        await client.call("GET", "/api/v2/deals")
    assert usage.daily == account_usage.DailyBudget(1234, None, NOON)
    assert usage.take_daily() == usage.daily and usage.take_daily() is None  # flushed once
