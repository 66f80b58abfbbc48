"""Nudges coalesced on the leading edge (`instant.coalesce`): the pure decisions table-tested,
then the driver on a fake clock, counting the reads it makes."""

from __future__ import annotations

import asyncio

import pytest

from daemon import clock as clock_module
from daemon.instant import coalesce
from daemon.instant.coalesce import LISTING_SLACK_S, Coalescer, Coalescing

NOW = "now"
LATER = "later"  # a read scheduled at the window's end
NOTHING = "nothing"  # one is scheduled already


def _say(answer: float | None, now: float) -> str | tuple[str, float]:
    if answer is None:
        return NOTHING
    return NOW if answer == now else (LATER, answer)


# Each case: the (time, event) steps on one key, "n" a nudge, "r" the scheduled read starting,
# with what each nudge is told.
@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([(0.0, "n")], [NOW], id="a lone change is read at once"),
        pytest.param(
            [(0.0, "n"), (0.3, "n"), (0.5, "n"), (0.9, "n")],
            [NOW, (LATER, 1.0), NOTHING, NOTHING],
            id="a burst: one read now, one at the window's end",
        ),
        pytest.param(
            [(0.0, "n"), (1.0, "n"), (5.0, "n")],
            [NOW, NOW, NOW],
            id="nudges a window apart are each read at once",
        ),
        pytest.param(
            [(0.0, "n"), (0.5, "n"), (1.0, "r"), (1.2, "n"), (1.9, "n"), (2.0, "r"), (3.5, "n")],
            [NOW, (LATER, 1.0), (LATER, 2.0), NOTHING, NOW],
            id="a steady flow: one read per window, then quiet opens a fresh leading edge",
        ),
        pytest.param(
            [(0.0, "n"), (0.5, "n"), (1.3, "n")],
            [NOW, (LATER, 1.0), NOTHING],
            id="a late scheduled read still covers nudges after the window's end",
        ),
        pytest.param(
            [(0.0, "n"), (1.0, "r"), (1.5, "n")],
            [NOW, (LATER, 2.0)],
            id="the read at the end opens the next window",
        ),
    ],
)
def test_coalescer_decides_when_to_read(
    steps: list[tuple[float, str]], expected: list[str | tuple[str, float]]
) -> None:
    coalescer: Coalescer[str] = Coalescer(1.0)
    told = []
    for now, event in steps:
        if event == "n":
            told.append(_say(coalescer.nudge("deals", now), now))
        else:
            coalescer.reading("deals", now)
    assert told == expected


def test_keys_are_independent_and_a_zero_window_reads_every_nudge() -> None:
    coalescer: Coalescer[str] = Coalescer(1.0)
    assert coalescer.nudge("deals", 0.0) == 0.0
    assert coalescer.nudge("persons", 0.1) == 0.1
    assert coalescer.nudge("deals", 0.2) == 1.0
    eager: Coalescer[str] = Coalescer(0.0)
    assert [eager.nudge("deals", t) for t in (0.0, 0.0, 0.5)] == [0.0, 0.0, 0.5]


def test_expire_forgets_ended_windows_only() -> None:
    coalescer: Coalescer[str] = Coalescer(1.0)
    coalescer.nudge("deals", 0.0)
    coalescer.nudge("persons", 0.0)
    coalescer.nudge("persons", 0.5)  # a read waits for 1.0
    coalescer.nudge("notes", 0.8)
    coalescer.expire(1.5)
    assert len(coalescer) == 2  # persons (its read not started yet) and notes (open until 1.8)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_driver_reads_at_once_then_once_at_the_windows_end() -> None:
    clock = clock_module.FakeClock()
    reads: list[tuple[str, str, float]] = []

    async def read(account: str, object_type: str, item_ids: frozenset[str] | None) -> None:
        reads.append((account, object_type, clock.monotonic()))

    coalescing = Coalescing(read, 1.0, clock)
    start = clock.monotonic()
    coalescing.nudge("main", "deals")
    await _settle()
    assert reads == [("main", "deals", start)]  # no waiting for the first
    for _ in range(100):  # a burst
        coalescing.nudge("main", "deals")
    coalescing.nudge("main", "persons")
    await clock.sleep(5)
    assert reads == [
        ("main", "deals", start),
        ("main", "persons", start),
        # The burst, read once at the window's end (and a little after, so that two
        # listings never fall in one window).
        ("main", "deals", start + 1.0 + LISTING_SLACK_S),
    ]
    await coalescing.aclose()


async def test_reads_of_one_feed_never_overlap() -> None:
    clock = clock_module.FakeClock()
    running = 0
    most = 0
    finished = 0

    async def read(account: str, object_type: str, item_ids: frozenset[str] | None) -> None:
        nonlocal running, most, finished
        running += 1
        most = max(most, running)
        await clock.sleep(2.5)  # slower than the window
        running -= 1
        finished += 1

    coalescing = Coalescing(read, 1.0, clock)
    for _ in range(4):
        coalescing.nudge("main", "deals")
        await clock.sleep(0.9)
    await clock.sleep(10)
    assert (most, finished) == (1, coalescing.reads)
    # 0.0 at once; the one due at 1.0 starts when it ends (2.5) and covers 1.8; 2.7 waits for 3.5
    assert coalescing.reads == 3
    await coalescing.aclose()


async def test_a_failing_read_is_logged_and_the_next_nudge_reads_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = clock_module.FakeClock()
    calls = 0

    async def read(account: str, object_type: str, item_ids: frozenset[str] | None) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    coalescing = Coalescing(read, 1.0, clock)
    coalescing.nudge("main", "deals")
    await _settle()
    await clock.sleep(2)
    coalescing.nudge("main", "deals")
    await _settle()
    assert calls == 2
    assert [r.action for r in caplog.records] == ["instant.read_failed"] * 2  # type: ignore[attr-defined]
    await coalescing.aclose()


async def test_a_read_gets_the_items_nudged_since_the_last_one_began() -> None:
    clock = clock_module.FakeClock()
    reads: list[frozenset[str] | None] = []

    async def read(account: str, object_type: str, item_ids: frozenset[str] | None) -> None:
        reads.append(item_ids)

    coalescing = Coalescing(read, 1.0, clock)
    coalescing.nudge("main", "deals", "7")
    await _settle()
    for item in ("8", "9", "8"):  # within the window: read together at its end
        coalescing.nudge("main", "deals", item)
    await clock.sleep(1.5)
    coalescing.nudge("main", "deals", "10")
    coalescing.nudge("main", "deals", None)  # names no item: the feed is listed
    await clock.sleep(1.5)
    coalescing.nudge("main", "deals", "11")
    await clock.sleep(1.5)
    assert reads == [frozenset({"7"}), frozenset({"8", "9"}), None, frozenset({"11"})]
    await coalescing.aclose()


async def test_past_max_items_a_window_lists_its_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = clock_module.FakeClock()
    reads: list[frozenset[str] | None] = []

    async def read(account: str, object_type: str, item_ids: frozenset[str] | None) -> None:
        reads.append(item_ids)

    coalescing = Coalescing(read, 1.0, clock)
    coalescing.nudge("main", "deals", "1")
    await _settle()
    for item in range(2, 2 + coalesce.MAX_ITEMS + 1):  # a flood: memory stays bounded
        coalescing.nudge("main", "deals", str(item))
    assert len(coalescing._named[("main", "deals")].items) == 0
    await clock.sleep(2)
    assert reads == [frozenset({"1"}), None]
    await coalescing.aclose()
