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
    table.finished("ordered", 0.0, answered=True)
    assert table.capacity(states, NOW, 0.0)["ordered"] == 1


def test_max_per_second_counts_starts_in_a_sliding_window() -> None:
    table = slots.Slots({"capped": slots.Limits(concurrency=10, max_per_second=3)})
    for moment in (10.0, 10.2, 10.4):
        table.started("capped", moment)
        table.finished("capped", moment, answered=True)  # finishing does not give the start back
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
        table.finished("busy", index / 1000, answered=True)
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


def _table(busy: dict[str, tuple[int, float | None]]) -> slots.Slots:
    """The defaults (64 slots, 16 reserved, 16 per subscription); per subscription, how many
    POSTs are in flight and when its consumer last answered (None: never)."""
    table = slots.Slots({name: slots.Limits(concurrency=16) for name in busy}, 64)
    for name, (in_flight, answered_at) in busy.items():
        if answered_at is not None:
            table.started(name, answered_at)
            table.finished(name, answered_at, answered=True)
        for _ in range(in_flight):
            table.started(name, 0.0)
    return table


HANGING = {f"hang-{n}": (6, None) for n in range(8)}  # 48: all the general slots


@pytest.mark.parametrize(
    ("busy", "moment", "capacity", "shared", "newcomers", "answering"),
    [
        pytest.param(
            {**HANGING, "slow": (1, 0.3)},
            0.5,
            {"hang-0": 0, "slow": 11},
            0,
            set(),
            {"slow"},
            id="answering beside 8 hanging: all but the newcomer room of the reserve",
        ),
        pytest.param(
            {**HANGING, "slow": (1, 0.3)},
            0.3 + slots.RESPONSIVE_S + 0.1,
            {"hang-0": 0, "slow": 4},
            0,
            set(),
            set(),
            id="an answer too old: stalled, an even share of the general slots",
        ),
        pytest.param(
            {**HANGING, "slow": (1, None)},
            0.5,
            {"slow": 4},
            0,
            set(),
            set(),
            id="not heard from yet: stalled",
        ),
        pytest.param(
            {**HANGING, "idle": (0, None), "idle-ok": (0, 0.2)},
            0.5,
            {"idle": 16, "idle-ok": 12},
            0,
            {"idle", "idle-ok"},
            {"idle-ok"},
            id="idle: one reserved slot each; answering lately, as much as it may borrow",
        ),
        pytest.param(
            {"a": (1, 0.1), "b": (1, 0.1), "c": (1, 0.1), "d": (1, 0.1)},
            0.5,
            {"a": 14, "d": 14},
            48,
            set(),
            {"a", "b", "c", "d"},
            id="answering only: 60 of 64 split, the newcomer room left",
        ),
        pytest.param(
            {"a": (15, 0.1), "b": (15, 0.1), "c": (15, 0.1), "d": (15, 0.1), "new": (0, None)},
            0.5,
            {"a": 0, "new": 16},
            0,
            {"new"},
            {"a", "b", "c", "d"},
            id="not heard from, beside answering ones: the reserved slot alone",
        ),
        pytest.param(
            {"a": (1, 0.1), "b": (14, None), "c": (14, None), "d": (14, None), "e": (14, None)},
            0.5,
            {"a": 8, "b": 0},
            0,
            set(),
            {"a"},
            id="stalled above the general slots: at least the even share",
        ),
    ],
)
def test_answering_subscriptions_may_borrow_the_reserve(
    busy: dict[str, tuple[int, float | None]],
    moment: float,
    capacity: dict[str, int],
    shared: int,
    newcomers: set[str],
    answering: set[str],
) -> None:
    plan = _table(busy).plan({}, NOW, moment)
    assert {name: plan.capacity[name] for name in capacity} == capacity
    assert (plan.shared, set(plan.newcomers), set(plan.answering)) == (shared, newcomers, answering)


def test_a_plan_of_some_subscriptions_is_the_full_plan_for_them() -> None:
    """A POST that ends plans only the subscriptions with rows claimed (and the busy ones):
    what it decides for them is what a plan of every subscription decides."""
    busy = {"hangs": (40, None), "answers": (6, 9.0), "idle-answered": (0, 9.5)}
    table = _table({**busy, "quiet": (0, None), "waiting": (0, None)})
    full = table.plan({}, NOW, 10.0)
    for names in ({"waiting"}, {"answers", "waiting"}, {"idle-answered", "quiet"}):
        part = table.plan({}, NOW, 10.0, names=names)
        assert {n: part.capacity[n] for n in names} == {n: full.capacity[n] for n in names}
        assert part.shared == full.shared
        assert part.newcomers & names == full.newcomers & names
        assert part.answering & names == full.answering & names


def test_only_an_answer_makes_a_consumer_answering() -> None:
    table = slots.Slots({"s": slots.Limits(concurrency=16)})
    table.started("s", 1.0)
    table.finished("s", 16.0, answered=False)  # a timeout or a refused connection
    assert not table.answered_lately("s", 16.0)
    table.started("s", 16.0)
    table.finished("s", 16.5, answered=True)  # any status: a 500 is an answer too
    assert table.answered_lately("s", 16.5 + slots.RESPONSIVE_S)
    assert not table.answered_lately("s", 16.6 + slots.RESPONSIVE_S)
    table.reconfigure({})
    assert not table.answered_lately("s", 17.0)
