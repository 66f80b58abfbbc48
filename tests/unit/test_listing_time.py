"""The feed's watermark never passes the listing's own time: table tests of the pure parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.polling import change_feed
from tests.unit.test_triggers_and_filters import DEALS, START, deal, reader

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("served_at", "expected"),
    [
        (NOW - timedelta(seconds=3), NOW - timedelta(seconds=3)),  # Pipedrive's Date, believed
        (None, NOW + change_feed.CLOCK_SKEW),  # no Date: our clock, a little ahead
        (datetime(2099, 1, 1, tzinfo=UTC), NOW + change_feed.CLOCK_SKEW),  # a Date not sane
        (datetime(1970, 1, 1, tzinfo=UTC), NOW + change_feed.CLOCK_SKEW),
    ],
)
def test_the_listing_time_is_a_sane_date_header_else_now_plus_a_skew(
    served_at: datetime | None, expected: datetime
) -> None:
    assert change_feed.listing_time(served_at, NOW) == expected


def test_an_item_dated_after_the_listing_is_delivered_but_moves_no_mark() -> None:
    ceiling = START + timedelta(minutes=1)
    page = [
        deal(11, update_time="2026-12-01T12:00:30Z"),
        deal(12, update_time="2099-01-01T00:00:00Z"),
        deal(13, update_time="2026-12-01T12:01:02Z"),
    ]
    decision = change_feed.decide(
        page,
        {},
        [reader(trigger="deal.added")],
        DEALS,
        watermark=START,
        look_back=timedelta(0),
        ceiling=ceiling,
    )
    assert [f.item_id for f in decision.firings] == ["11", "12", "13"]  # all delivered
    # 13 is 2 s past the listing's Date (whole seconds, often a second stale): not reported
    assert decision.newest_update == ceiling
    assert [(f.item_id, f.update_time.year) for f in decision.future] == [("12", 2099)]
    stored = {s.item_id: s for s in decision.states}  # the true time is what is kept
    assert stored["12"].update_time == datetime(2099, 1, 1, tzinfo=UTC)
