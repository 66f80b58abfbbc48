"""fit_to_budget: stretching an account's poll intervals into its share of the daily tokens."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from daemon.pipedrive.token_budget import (
    V1_LIST_PAGE_COST,
    V2_LIST_PAGE_COST,
    FeedPlan,
    Stretch,
    explain,
    fit_to_budget,
    predicted_tokens_per_day,
)

DEALS = FeedPlan("deals", 120, V2_LIST_PAGE_COST)
NOTES = FeedPlan("notes", 120, V1_LIST_PAGE_COST)


@pytest.mark.parametrize(
    ("plans", "tokens"),
    [
        ([], 0),
        ([DEALS], 720 * 10),
        ([DEALS, NOTES], 720 * 10 + 720 * 20),
        ([FeedPlan("deals", 7, 10)], 12_343 * 10),  # 86400 / 7 = 12342.9: the last cycle counts
        ([FeedPlan("deals", 0.5, 10)], 172_800 * 10),
        ([FeedPlan("deals", 2 * 86_400, 10)], 10),  # still one poll in any day
        ([FeedPlan("leads", 300, 20), FeedPlan("persons", 60, 10)], 288 * 20 + 1440 * 10),
    ],
)
def test_predicted_tokens_per_day(plans: list[FeedPlan], tokens: int) -> None:
    assert predicted_tokens_per_day(plans) == tokens


@pytest.mark.parametrize(
    ("interval_s", "page_cost"),
    [(0, 10), (-5, 10), (math.inf, 10), (math.nan, 10), (60, -1)],
)
def test_a_feed_plan_rejects_impossible_values(interval_s: float, page_cost: int) -> None:
    with pytest.raises(ValueError, match="deals"):
        FeedPlan("deals", interval_s, page_cost)


def test_plans_within_the_share_are_left_alone() -> None:
    assert fit_to_budget([DEALS, NOTES], 30_000, 1.0) == []
    assert fit_to_budget([], 30_000, 0.01) == []


def test_exactly_the_share_fits() -> None:
    assert fit_to_budget([DEALS, NOTES], 43_200, 0.5) == []  # 21600 tokens == 50 % of 43200
    assert fit_to_budget([DEALS, NOTES], 43_198, 0.5) != []


def test_the_logged_example() -> None:
    stretches = fit_to_budget([DEALS, NOTES], 30_000, 0.5)
    # 15000 / 30 tokens = 500 polls a day at most: 86400 / 500 = 172.8 -> 173 s.
    assert stretches == [Stretch("deals", 120, 173), Stretch("notes", 120, 173)]
    assert explain(stretches, 21_600, 30_000, 0.5, account="main") == (
        "account 'main': predicted 21600 tokens/day is over 50% of the daily budget 30000; "
        "polling deals every 173s (was 120s), notes every 173s (was 120s)"
    )


def _brute_force(plans: list[FeedPlan], allowance: float) -> list[int]:
    """The rounded intervals at the smallest factor that fits, trying every candidate."""
    factors = sorted(
        {
            Fraction(n) / Fraction(p.interval_s)
            for p in plans
            for n in range(math.ceil(p.interval_s), math.ceil(p.interval_s * 50))
        }
    )
    for factor in factors:
        intervals = [math.ceil(Fraction(p.interval_s) * factor) for p in plans]
        spend = sum(
            math.ceil(86_400 / i) * p.page_cost for i, p in zip(intervals, plans, strict=True)
        )
        if spend <= allowance:
            return intervals
    raise AssertionError("no factor below 50 fits")


@pytest.mark.parametrize(
    ("plans", "budget", "share"),
    [
        ([FeedPlan("persons", 60, 10), FeedPlan("deals", 600, 10)], 10_000, 1.0),
        ([FeedPlan("persons", 45, 10), FeedPlan("leads", 90, 20)], 30_000, 0.8),
        ([FeedPlan("deals", 30, 10), FeedPlan("activities", 77, 10)], 60_000, 0.25),
        ([FeedPlan("deals", 13.5, 10), FeedPlan("notes", 100, 20)], 90_000, 0.5),
        ([FeedPlan("deals", 1, 10)], 30_000, 1.0),
    ],
)
def test_the_smallest_common_factor_that_fits(
    plans: list[FeedPlan], budget: int, share: float
) -> None:
    stretches = fit_to_budget(plans, budget, share)
    new = {s.object_type: s.new_interval_s for s in stretches}
    fitted = [
        FeedPlan(p.object_type, new.get(p.object_type, p.interval_s), p.page_cost) for p in plans
    ]
    assert predicted_tokens_per_day(fitted) <= budget * share
    assert [p.interval_s for p in fitted] == _brute_force(plans, budget * share)
    for stretch in stretches:
        assert stretch.new_interval_s > stretch.old_interval_s
        assert stretch.new_interval_s == int(stretch.new_interval_s)


def test_all_intervals_grow_by_the_same_factor() -> None:
    plans = [FeedPlan("persons", 60, 10), FeedPlan("deals", 600, 10)]
    stretches = fit_to_budget(plans, 10_000, 1.0)
    persons, deals = (s.new_interval_s / s.old_interval_s for s in stretches)
    # Equal but for rounding each interval up to whole seconds.
    assert abs(persons - deals) <= 1 / 60


def test_only_changed_intervals_are_returned() -> None:
    # Rounding the half-second feed up to 1 s is enough; the 120 s feed stays as it is.
    plans = [FeedPlan("deals", 0.5, 10), FeedPlan("persons", 120, 10)]
    assert fit_to_budget(plans, 900_000, 1.0) == [Stretch("deals", 0.5, 1)]


def test_a_share_too_small_for_one_poll_a_day_is_an_error() -> None:
    plans = [DEALS, NOTES]  # at least 10 + 20 tokens a day
    with pytest.raises(ValueError, match="once a day costs 30 tokens"):
        fit_to_budget(plans, 30_000, 0.0005)  # 15 tokens
    assert fit_to_budget(plans, 30_000, 0.001) == [  # 30 tokens: once a day fits
        Stretch("deals", 120, 86_400),
        Stretch("notes", 120, 86_400),
    ]


@pytest.mark.parametrize(
    ("budget", "share", "message"),
    [
        (0, 0.5, "daily_token_budget must be >= 1"),
        (-1, 0.5, "daily_token_budget must be >= 1"),
        (30_000, 0, "budget_share"),
        (30_000, -0.1, "budget_share"),
        (30_000, 1.5, "budget_share"),
    ],
)
def test_budget_and_share_are_checked(budget: int, share: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_to_budget([DEALS], budget, share)


def test_explain_when_nothing_was_stretched() -> None:
    assert explain([], 7_200, 30_000, 0.125, account="eu") == (
        "account 'eu': predicted 7200 tokens/day is within 12.5% of the daily budget 30000"
    )


def test_explain_keeps_fractional_seconds() -> None:
    line = explain([Stretch("deals", 0.5, 1)], 1_735_200, 900_000, 1.0, account="main")
    assert line.endswith("over 100% of the daily budget 900000; polling deals every 1s (was 0.5s)")
