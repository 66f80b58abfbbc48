"""Orphans and changed `start` or `trigger`, decided from config and state without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon import config
from daemon.db import feed_store, outbox
from daemon.status import drift

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _config(subscriptions: list[dict[str, Any]]) -> config.Config:
    raw = {
        "database": {"url": "sqlite:///x.db"},
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {"account": "main", "trigger": "deal.added", "callback_url": "https://h.example", **s}
            for s in subscriptions
        ],
    }
    return config.parse(raw, "c.toml", Path("/tmp"))


def _state(name: str, trigger: str = "deal.added", start: datetime = T0) -> Any:
    return feed_store.SubscriptionState(
        name, "main", trigger, start, None, start, "ok", None, None, T0
    )


def test_findings() -> None:
    cfg = _config(
        [
            {"name": "same"},
            {"name": "trig", "trigger": "deal.updated", "start": "2019-01-01T00:00:00Z"},
            {"name": "start", "start": "2021-01-01T00:00:00Z"},
            {"name": "fresh", "start": "2021-01-01T00:00:00Z"},
        ]
    )
    states = {n: _state(n) for n in ("same", "trig", "start", "gone", "quiet")}
    counts = {
        "gone": outbox.SubscriptionCounts(3, 5, 1),
        "quiet": outbox.SubscriptionCounts(0, 9, 0),  # all delivered: nothing is lost
        "same": outbox.SubscriptionCounts(1, 0, 0),
    }
    found = {(f.subscription, f.action): f.message for f in drift.findings(cfg, counts, states)}
    assert set(found) == {
        ("gone", "config.orphaned"),
        ("trig", "config.trigger_changed"),
        ("start", "config.start_ignored"),
    }
    assert "3 pending events and 1 dead letters" in found[("gone", "config.orphaned")]
    assert (
        "since 2019-01-01T00:00:00+00:00 (a backfill" in found[("trig", "config.trigger_changed")]
    )
    assert [o.subscription for o in drift.orphans({"same"}, counts, states)] == ["gone"]
