"""select_new: which listed items are new for a subscription, and its next mark."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.detection import Mark, select_new

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def item(item_id: int, add_time: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {"id": item_id, "add_time": add_time}


@pytest.mark.parametrize(
    ("listed", "mark", "start", "new_ids", "mark_id"),
    [
        # first run, start = now: nothing new, mark the newest
        ([item(9), item(7)], None, None, [], 9),
        # first run on an empty account
        ([], None, None, [], 0),
        # items sharing one add_time second are all new
        ([item(12), item(11), item(10)], Mark(9, T0), None, [10, 11, 12], 12),
        # a backdated add_time is still new: ids order creation
        ([item(10, "2019-01-01T00:00:00Z")], Mark(9, T0), None, [10], 10),
        # at or below the mark: not new, mark stays
        ([item(9), item(8)], Mark(9, T0), None, [], 9),
        # a listing that reaches below a higher mark (shared listing) adds only what is above it
        ([item(15), item(13), item(11)], Mark(13, T0), None, [15], 15),
        # backfill: items added at or after start, oldest first
        (
            [
                item(5, "2026-11-20T10:00:00Z"),
                item(4, "2026-11-20T09:59:59Z"),
                item(3, "2026-11-21T00:00:00Z"),
            ],
            None,
            T0,
            [3, 5],
            5,
        ),
        # a malformed add_time neither stalls detection nor counts as in range for a backfill
        ([item(10, "yesterday"), item(9, "2026-11-20T10:00:00")], Mark(8, T0), None, [9, 10], 10),
        ([item(10, "yesterday")], None, T0, [], 10),
        # duplicates in a listing (main + backfill pages) are delivered once
        ([item(10), item(10)], Mark(9, T0), None, [10], 10),
    ],
)
def test_select_new(
    listed: list[dict[str, Any]],
    mark: Mark | None,
    start: datetime | None,
    new_ids: list[int],
    mark_id: int,
) -> None:
    detection = select_new(listed, mark, start)
    assert [i["id"] for i in detection.new_items] == new_ids
    assert detection.mark.id == mark_id


def test_mark_keeps_the_add_time_of_the_newest_item() -> None:
    detection = select_new([item(3, "2026-11-21T08:00:00Z"), item(2)], Mark(1, T0), None)
    assert detection.mark == Mark(3, datetime(2026, 11, 21, 8, 0, tzinfo=UTC))
