"""Keyset cursor paging decisions, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.dev.sandbox import pagination
from daemon.dev.sandbox.pagination import Cursor

ITEMS: list[dict[str, Any]] = [
    {"id": 1, "add_time": "2026-01-01T00:00:01Z", "due": None},
    {"id": 2, "add_time": "2026-01-01T00:00:00Z", "due": "2026-02-01"},
    {"id": 3, "add_time": "2026-01-01T00:00:01Z", "due": None},
    {"id": 4, "add_time": "2026-01-01T00:00:00Z", "due": "2026-01-01"},
    {"id": 5, "add_time": "2026-01-01T00:00:02Z", "due": "2026-02-01"},
]


def walk(items: list[dict[str, Any]], field: str, direction: str, limit: int) -> list[int]:
    seen: list[int] = []
    after = None
    while True:
        page, token = pagination.paginate(items, field, direction, after, limit)
        seen += [item["id"] for item in page]
        if token is None:
            return seen
        after = pagination.decode_cursor(token, (field,))


@pytest.mark.parametrize(
    ("field", "direction", "expected"),
    [
        ("id", "asc", [1, 2, 3, 4, 5]),
        ("id", "desc", [5, 4, 3, 2, 1]),
        ("add_time", "asc", [2, 4, 1, 3, 5]),
        ("add_time", "desc", [5, 3, 1, 4, 2]),
        ("due", "asc", [4, 2, 5, 1, 3]),  # nulls last ascending
        ("due", "desc", [3, 1, 5, 2, 4]),  # and first descending
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 3, 5, 10])
def test_walk_visits_each_item_once_in_order(
    field: str, direction: str, expected: list[int], limit: int
) -> None:
    assert walk(ITEMS, field, direction, limit) == expected


def test_last_page_has_no_cursor_and_full_page_has_one() -> None:
    assert pagination.paginate(ITEMS, "id", "asc", None, 5)[1] is None
    page, token = pagination.paginate(ITEMS, "id", "asc", None, 4)
    assert [i["id"] for i in page] == [1, 2, 3, 4] and token is not None


def test_cursor_resumes_after_a_deleted_item() -> None:
    after = Cursor("id", 2, "asc", 2)
    remaining = [item for item in ITEMS if item["id"] != 2]
    page, _ = pagination.paginate(remaining, "id", "asc", after, 10)
    assert [i["id"] for i in page] == [3, 4, 5]


def test_cursor_has_the_spec_example_form() -> None:
    token = pagination.encode_cursor(Cursor("id", 7, "asc", 7))
    assert token == "eyJmaWVsZCI6ImlkIiwiZmllbGRWYWx1ZSI6Nywic29ydERpcmVjdGlvbiI6ImFzYyIsImlkIjo3fQ"
    assert pagination.decode_cursor(token, ("id",)) == Cursor("id", 7, "asc", 7)


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        "bm90IGpzb24",  # "not json"
        pagination.encode_cursor(Cursor("title", "x", "asc", 1)),  # field not sortable
        pagination.encode_cursor(Cursor("id", 1, "up", 1)),
        "eyJmaWVsZCI6ImlkIiwiZmllbGRWYWx1ZSI6MSwic29ydERpcmVjdGlvbiI6ImFzYyIsImlkIjoiMSJ9",
    ],
)
def test_foreign_cursors_are_refused(token: str) -> None:
    assert pagination.decode_cursor(token, ("id", "add_time")) is None
