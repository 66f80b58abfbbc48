"""Fault matching and v1 offset ordering decisions, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import QueryParams

from daemon.dev.sandbox import errors, faults, gateway, pagination, v1_records


def test_skip_lets_matching_calls_through_then_fires() -> None:
    armed = faults.Faults()
    armed.add(status=500, skip=2, path="/api/v2/deals")
    taken = [armed.take("GET", path) for path in ["/api/v2/deals/1", *["/api/v2/deals"] * 4]]
    assert [fault.status if fault else None for fault in taken] == [None, None, None, 500, None]
    assert armed.pending == 0


def test_a_skipping_fault_does_not_hide_later_ones() -> None:
    armed = faults.Faults()
    armed.add(status=500, skip=1)
    armed.add(status=429, retry_after=7)
    first = armed.take("GET", "/x")
    assert first is not None and (first.status, first.retry_after) == (429, 7)
    second = armed.take("GET", "/x")
    assert second is not None and second.status == 500


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        ({"additional_data": {"next_cursor": None}}, {}, gateway.STUCK_CURSOR),
        ({"additional_data": {"next_cursor": "abc"}}, {}, "abc"),
        ({"additional_data": {"next_cursor": "abc"}}, {"cursor": "xyz"}, "xyz"),
    ],
)
def test_pinned_cursor(body: dict[str, Any], query: dict[str, str], expected: str) -> None:
    pinned = gateway.pin_next_page(body, QueryParams(query))
    assert pinned["additional_data"]["next_cursor"] == expected


def test_pinned_v1_page_points_at_itself() -> None:
    body = {"additional_data": {"pagination": {"start": 4, "more_items_in_collection": False}}}
    pinned = gateway.pin_next_page(body, QueryParams({"start": "4"}))
    assert pinned["additional_data"]["pagination"]["next_start"] == 4
    assert pinned["additional_data"]["pagination"]["more_items_in_collection"] is True


ITEMS: list[dict[str, Any]] = [
    {"id": 1, "update_time": "2026-01-01 00:00:02", "deal_id": None},
    {"id": 2, "update_time": "2026-01-01 00:00:01", "deal_id": 7},
    {"id": 3, "update_time": "2026-01-01 00:00:02", "deal_id": 5},
]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("update_time ASC", [2, 1, 3]),
        ("update_time DESC", [1, 3, 2]),
        ("update_time DESC, id DESC", [3, 1, 2]),
        ("deal_id", [3, 2, 1]),  # nulls last ascending
    ],
)
def test_offset_sort(sort: str, expected: list[int]) -> None:
    order = v1_records.parse_sort(sort, v1_records.NOTE_SORTS, "id ASC")
    page, _ = v1_records.offset_page(list(ITEMS), {}, order)
    assert [item["id"] for item in page] == expected


@pytest.mark.parametrize("sort", ["colour ASC", "id UP", "id ASC DESC"])
def test_offset_sort_refuses_unknown_fields(sort: str) -> None:
    with pytest.raises(errors.ApiError):
        v1_records.parse_sort(sort, v1_records.NOTE_SORTS, "id ASC")


def test_a_fresh_cursor_is_new_on_every_page_and_names_the_first_page() -> None:
    query = QueryParams({})
    cursors = {
        gateway.pin_next_page({"additional_data": {"next_cursor": None}}, query, fresh=True)[
            "additional_data"
        ]["next_cursor"]
        for _ in range(3)
    }
    assert len(cursors) == 3
    for cursor in cursors:
        decoded = pagination.decode_cursor(cursor, ["id"])
        assert decoded is not None and decoded.id <= 0  # after no real id: the first page
