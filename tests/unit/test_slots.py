"""Slot sharing decided without I/O: caps, order, rate windows, disabled and paused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.delivery import slots
from daemon.model import endpoint_health

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_caps_order_and_switches() -> None:
    table = slots.Slots(
        {
            "plain": slots.Limits(concurrency=4),
            "ordered": slots.Limits(concurrency=4, ordered=True),
            "off": slots.Limits(concurrency=4),
            "paused": slots.Limits(concurrency=4),
            "probe-later": slots.Limits(concurrency=4),
        }
    )
    table.started("plain", 0.0)
    states = {
        "off": endpoint_health.disabled("operator", NOW),
        "paused": endpoint_health.paused("10 failures", NOW - timedelta(minutes=2), 60),
        "probe-later": endpoint_health.paused("10 failures", NOW, 60),
    }
    assert table.capacity(states, NOW, 0.0) == {
        "plain": 3, "ordered": 1, "off": 0, "paused": 1, "probe-later": 0,
    }  # fmt: skip
    table.started("paused", 0.0)
    table.started("ordered", 0.0)
    capacity = table.capacity(states, NOW, 0.0)
    assert (capacity["paused"], capacity["ordered"]) == (0, 0)  # one probe, one in order
    table.finished("ordered")
    assert table.capacity(states, NOW, 0.0)["ordered"] == 1


def test_max_per_second_counts_starts_in_a_sliding_window() -> None:
    table = slots.Slots({"capped": slots.Limits(concurrency=10, max_per_second=3)})
    for moment in (10.0, 10.2, 10.4):
        table.started("capped", moment)
        table.finished("capped")  # finishing does not give the start back
    assert table.capacity({}, NOW, 10.5) == {"capped": 0}
    assert table.next_window_opening(10.5) == 0.5
    assert table.capacity({}, NOW, 11.05) == {"capped": 1}  # 10.0 left the window
    assert table.capacity({}, NOW, 11.5) == {"capped": 3}
    assert table.next_window_opening(11.5) is None


def test_probe_interval_doubles_up_to_an_hour() -> None:
    state = endpoint_health.paused("down", NOW, 60)
    intervals = []
    for _ in range(8):
        state = endpoint_health.probe_failed(state, NOW)
        intervals.append(state.probe_interval_s)
    assert intervals == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert state.probe_at == NOW + timedelta(hours=1)


def test_starts_are_remembered_for_one_second_only() -> None:
    # Uncapped subscriptions too: a day of deliveries must not pile up in memory.
    table = slots.Slots({"busy": slots.Limits(concurrency=16)})
    for index in range(10_000):
        table.started("busy", index / 1000)  # 1,000 a second for 10 s
        table.finished("busy")
    assert table.start_rate("busy", 9.9995) == pytest.approx(1000, rel=0.01)
    assert len(table._starts["busy"]) == 1000
    assert table.start_rate("busy", 20.0) == 0
    assert table.start_rate("not-configured", 20.0) == 0


def test_the_start_rate_is_known_a_tenth_of_a_second_into_a_backlog() -> None:
    table = slots.Slots({"busy": slots.Limits(concurrency=16)})
    for index in range(200):
        table.started("busy", 5 + index / 2000)  # 2,000 a second, for 0.1 s
    assert table.start_rate("busy", 5.1) == pytest.approx(2000, rel=0.01)
    table.started("busy", 7.0)  # one lone start: not read as a burst
    assert table.start_rate("busy", 7.0) == pytest.approx(10)
