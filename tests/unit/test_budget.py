"""What a config will spend of the account's Pipedrive tokens, and intervals that fit a budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from daemon import config
from daemon.pipedrive import token_budget
from daemon.polling import forecast


def load(
    tmp_path: Path, account: dict[str, Any], triggers: list[str], interval: int = 120
) -> config.Config:
    raw = {
        "accounts": [{"name": "main", "api_token": "t", **account}],
        "subscriptions": [
            {
                "name": f"s{n}",
                "account": "main",
                "trigger": t,
                "callback_url": "http://x/h",
                "poll_interval": interval,
            }
            for n, t in enumerate(triggers)
        ],
    }
    return config.parse(raw, "c.toml", tmp_path)


def test_prediction_counts_one_listing_per_object_type_whatever_the_triggers(
    tmp_path: Path,
) -> None:
    connector = load(tmp_path, {}, ["deal.added", "deal.added.legacy", "activity.added"])
    assert forecast.prediction_line(connector, "main") == "predicted Pipedrive tokens/day: 14400"
    more = load(
        tmp_path, {}, ["deal.added", "deal.won", "deal.updated", "activity.done", "note.added"]
    )
    assert forecast.prediction_line(more, "main") == "predicted Pipedrive tokens/day: 28800"


def test_prediction_shows_the_share_of_the_budget(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"daily_token_budget": 30000}, ["deal.added", "activity.added"])
    assert "(48% of daily_token_budget 30000; budget_share 0.5)" in forecast.prediction_line(
        cfg, "main"
    )


def test_intervals_stretch_to_the_budget_share_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load(
        tmp_path,
        {"daily_token_budget": 30000, "budget_share": 0.25},
        ["deal.added", "activity.added"],
    )
    with caplog.at_level(logging.WARNING, logger="daemon.polling.forecast"):
        intervals = forecast.fitted_intervals(cfg)  # quiet: status reads it too
        assert caplog.records == []
        forecast.log_startup_warnings(cfg)  # what `run` says once at start
    assert set(intervals) == {("main", "deals"), ("main", "activities")}
    assert all(value > 120 for value in intervals.values())
    plans = [
        p.__class__(p.object_type, intervals[("main", p.object_type)], p.page_cost)
        for p in forecast.plans(cfg, "main")
    ]
    assert token_budget.predicted_tokens_per_day(plans) <= 7500
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "deals every" in lines[0] and "(was 120s)" in lines[0]


def test_no_budget_no_stretch(tmp_path: Path) -> None:
    assert forecast.fitted_intervals(load(tmp_path, {}, ["deal.added"], interval=1)) == {}
