"""Feeds' first listings: a stable offset per feed spreads thousands of them over their interval,
while a handful still list right after start; the daemon's scheduler uses it."""

from __future__ import annotations

import collections
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from daemon import clock, config
from daemon.polling import plan, poller, schedule
from daemon.service import lifecycle
from daemon.service import polls as service_polls

OBJECTS = ("deals", "activities", "persons", "organizations")
KEYS = [f"acct-{a:05d}/{obj}" for a in range(1000) for obj in OBJECTS]


@pytest.mark.parametrize(
    ("interval_s", "feeds", "at_most_s"),
    [
        (1, 1, schedule.SPACING_S),  # the demo: one feed lists at once
        (2, 3, 3 * schedule.SPACING_S),  # the tests' few quick feeds: well within the interval
        (120, 4, 4 * schedule.SPACING_S),  # a small daemon: within a fifth of a second
        (120, 4000, 120),  # the 1,000-account daemon: the whole interval
        (1, 4000, 1),  # never beyond the interval
    ],
)
def test_first_delay_lies_in_the_window(interval_s: float, feeds: int, at_most_s: float) -> None:
    delays = [schedule.first_delay(key, interval_s, feeds) for key in KEYS[:feeds]]
    assert all(0 <= delay < interval_s for delay in delays)
    assert max(delays) <= at_most_s


def test_the_offset_is_the_same_in_every_process() -> None:
    """Not Python's salted `hash`: another interpreter gives the same phases."""
    code = "from daemon.polling import schedule; print(repr(schedule.phase('a/deals')))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert float(other.stdout) == schedule.phase("a/deals")
    assert schedule.first_delay("a/deals", 120, 4000) == schedule.first_delay("a/deals", 120, 4000)


def test_4000_feeds_spread_about_evenly_over_120_s() -> None:
    delays = [schedule.first_delay(key, 120, len(KEYS)) for key in KEYS]
    per_tenth = collections.Counter(int(delay // 12) for delay in delays)
    assert sorted(per_tenth) == list(range(10))
    assert all(340 <= count <= 460 for count in per_tenth.values())  # 400 each, give or take
    per_second = collections.Counter(int(delay) for delay in delays)
    assert max(per_second.values()) < 60  # 33 on average; was all 4,000 at second 0
    assert len(set(delays)) == len(delays)


@pytest.mark.parametrize("key", ["", "a/deals", "ünïcode/persons", "x" * 500])
def test_the_phase_is_a_fraction_below_one(key: str) -> None:
    assert 0 <= schedule.phase(key) < 1
    assert schedule.first_delay(key, 1, 10**9) < 1


def test_the_daemon_first_lists_each_feed_after_its_offset(tmp_path: Path) -> None:
    raw = {
        "accounts": [{"name": f"a{n}", "api_token": "t"} for n in range(50)],
        "subscriptions": [
            {"name": f"s{n}-{t}", "account": f"a{n}", "trigger": t, "callback_url": "http://x/h"}
            for n in range(50)
            for t in ("deal.added", "activity.added")
        ],
    }
    feeds = plan.feeds(config.parse(raw, "c.toml", tmp_path))
    scheduler = AsyncIOScheduler()  # not started: the jobs wait with their first run time
    before = datetime.now(UTC)
    polls = service_polls.Polls(clock.SYSTEM)
    no_poller = cast(poller.Poller, None)  # the jobs never run here
    for feed in feeds:  # never listed: each after its offset
        delay = schedule.continue_after(None, feed.key, feed.interval_s, len(feeds))
        lifecycle._schedule(scheduler, polls, no_poller, feed, feed.interval_s, delay)
    after = datetime.now(UTC)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert len(jobs) == 100
    for feed in feeds:
        delay = timedelta(seconds=schedule.first_delay(feed.key, feed.interval_s, len(feeds)))
        assert before + delay <= jobs[feed.key].next_run_time <= after + delay
    # 100 feeds spread over 5 s (100 x SPACING_S), not all at once
    assert len({job.next_run_time for job in jobs.values()}) == 100


@pytest.mark.parametrize(
    ("ago_s", "expected_s"),
    [
        (0.0, 120.0),  # just listed (by the replica that held it): a whole interval on
        (30.0, 90.0),  # the schedule continues where it was
        (119.5, 0.5),
        (-5.0, 120.0),  # a clock a little behind the last listing's: not beyond one interval
    ],
)
def test_a_feed_taken_over_continues_its_schedule(ago_s: float, expected_s: float) -> None:
    assert schedule.continue_after(ago_s, "a/deals", 120, 4000) == pytest.approx(expected_s)


@pytest.mark.parametrize("ago_s", [None, 120.0, 86_400.0])
def test_a_feed_never_listed_or_overdue_lists_after_its_offset(ago_s: float | None) -> None:
    assert schedule.continue_after(ago_s, "a/deals", 120, 4000) == schedule.first_delay(
        "a/deals", 120, 4000
    )
