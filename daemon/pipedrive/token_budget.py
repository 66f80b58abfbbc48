"""Keeping an account's polling inside its share of Pipedrive's daily token budget.

Pipedrive charges each call's tokens against one budget per company (30,000 x plan multiplier
x seats), shared with every other integration and reset at midnight server time; once it is
spent, every call gets 429 until then. Stretching the poll intervals up front is cheaper than
finding out at 23:00.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

SECONDS_PER_DAY = 86_400
V2_LIST_PAGE_COST = 10
"""Tokens for one page of a v2 listing (`GET /api/v2/deals`, `/activities`, ...)."""
V1_LIST_PAGE_COST = 20
"""Tokens for one page of a v1 listing (`GET /v1/notes`, `/v1/leads`)."""


@dataclass(frozen=True)
class FeedPlan:
    """How often one watched object type of an account is listed, and what a page costs."""

    object_type: str
    interval_s: float
    page_cost: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"{self.object_type}: interval_s must be > 0 (got {self.interval_s})")
        if self.page_cost < 0:
            raise ValueError(f"{self.object_type}: page_cost must be >= 0 (got {self.page_cost})")


@dataclass(frozen=True)
class Stretch:
    object_type: str
    old_interval_s: float
    new_interval_s: float


def _polls_per_day(interval_s: Fraction) -> int:
    return math.ceil(SECONDS_PER_DAY / interval_s)


def _spend(plans: Sequence[FeedPlan], intervals_s: Sequence[Fraction]) -> int:
    return sum(
        _polls_per_day(interval) * plan.page_cost
        for plan, interval in zip(plans, intervals_s, strict=True)
    )


def predicted_tokens_per_day(plans: Iterable[FeedPlan]) -> int:
    """Tokens a day of polling costs in the steady state: one page per cycle per feed.

    A backlog (several pages in a cycle), backfills and lookups cost more; this is the floor
    the daemon spends however quiet the account is.
    """
    listed = list(plans)
    return _spend(listed, [Fraction(plan.interval_s) for plan in listed])


def _scaled(plans: Sequence[FeedPlan], factor: Fraction) -> list[Fraction]:
    # Rounded up, so a stretched interval is whole seconds and never shorter than asked.
    return [Fraction(math.ceil(Fraction(plan.interval_s) * factor)) for plan in plans]


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def _check_budget(daily_token_budget: int, budget_share: float) -> None:
    if daily_token_budget < 1:
        raise ValueError(f"daily_token_budget must be >= 1 (got {daily_token_budget})")
    if not 0 < budget_share <= 1:
        raise ValueError(f"budget_share must be > 0 and <= 1 (got {budget_share})")


def _smallest_fitting_factor(
    plans: Sequence[FeedPlan], plan: FeedPlan, allowance: float
) -> Fraction:
    """The smallest factor n / `plan.interval_s` (n whole seconds) at which `plans` fit.

    The rounded intervals only change where some feed's scaled interval reaches a whole second,
    so the least of these over all feeds is the smallest factor that fits at all. Spend falls
    as n grows, so n is found by bisection, up to where every feed is polled once a day.
    """
    interval = Fraction(plan.interval_s)
    beyond_a_day = SECONDS_PER_DAY / min(Fraction(p.interval_s) for p in plans)
    low, high = math.ceil(interval), math.ceil(interval * beyond_a_day)
    while low < high:
        middle = (low + high) // 2
        if _spend(plans, _scaled(plans, middle / interval)) <= allowance:
            high = middle
        else:
            low = middle + 1
    return low / interval


def fit_to_budget(
    plans: Iterable[FeedPlan], daily_token_budget: int, budget_share: float
) -> list[Stretch]:
    """The intervals to stretch so polling spends at most `budget_share` of the daily budget.

    All intervals grow by one factor, the smallest that fits (each result rounded up to whole
    seconds), so the feeds keep their relative freshness; none is shortened. Empty when the
    plans already fit. Raises ValueError for a budget below 1 or a share outside (0, 1] (the
    config rejects those first), and when even one poll a day per feed is over the share.
    """
    _check_budget(daily_token_budget, budget_share)
    listed = list(plans)
    allowance = budget_share * daily_token_budget
    if predicted_tokens_per_day(listed) <= allowance:
        return []
    # Past a day every feed is polled once a day, whatever its interval: the least we can spend.
    least = sum(plan.page_cost for plan in listed)
    if least > allowance:
        raise ValueError(
            f"polling each of {len(listed)} feeds once a day costs {least} tokens, over "
            f"{_percent(budget_share)} of the daily budget {daily_token_budget}"
        )

    factor = min(_smallest_fitting_factor(listed, plan, allowance) for plan in listed)
    return [
        Stretch(plan.object_type, plan.interval_s, float(new))
        for plan, new in zip(listed, _scaled(listed, factor), strict=True)
        if new != plan.interval_s
    ]


def _seconds(interval_s: float) -> str:
    return f"{interval_s:g}s"


def explain(
    stretches: Sequence[Stretch],
    predicted: int,
    budget: int,
    share: float,
    *,
    account: str,
) -> str:
    """One log line saying which intervals were stretched and why."""
    where = (
        f"account {account!r}: predicted {predicted} tokens/day is "
        f"{'over' if stretches else 'within'} {_percent(share)} of the daily budget {budget}"
    )
    if not stretches:
        return where
    polling = ", ".join(
        f"{s.object_type} every {_seconds(s.new_interval_s)} (was {_seconds(s.old_interval_s)})"
        for s in stretches
    )
    return f"{where}; polling {polling}"


# Instant mode's reconciliation, once the company's daily budget runs low: listed half as
# often until the daily reset. Nudges still read each change at once; only the safety net
# slows, and it spends half of what it did.
RECONCILE_STRETCH = 2


def budget_low(remaining: int | None, daily_token_budget: int | None, budget_share: float) -> bool:
    """Whether the company's daily budget left (`x-daily-ratelimit-token-remaining` as seen
    today; None when it was not) is below what the account keeps for the company's other
    tools, `daily_token_budget x (1 - budget_share)`. False without a configured budget."""
    if remaining is None or not daily_token_budget:
        return False
    return remaining < daily_token_budget * (1 - budget_share)


def stretched_reconcile(interval_s: float) -> float:
    """The reconciliation interval while the budget is low (see `budget_low`)."""
    return interval_s * RECONCILE_STRETCH
