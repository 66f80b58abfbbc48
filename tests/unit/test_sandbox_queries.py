"""Parsing and filtering of v2 list parameters, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.dev.sandbox import errors, queries

SORTS = ("id", "update_time", "add_time")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "attribute", "expected"),
    [
        ({}, "limit", 100),
        ({"limit": "500"}, "limit", 500),
        ({}, "sort_by", "id"),
        ({"sort_by": "add_time", "sort_direction": "desc"}, "sort_direction", "desc"),
        ({"ids": "3, 1,2"}, "ids", frozenset({1, 2, 3})),
        ({"ids": ""}, "ids", None),
        ({"owner_id": "7"}, "equals", {"owner_id": 7}),
        ({"updated_since": "2026-01-01T10:00:00+02:00"}, "updated_since", "2026-01-01T08:00:00Z"),
    ],
)
def test_parse_list_query(params: dict[str, str], attribute: str, expected: Any) -> None:
    query = queries.parse_list_query(params, SORTS, ("owner_id",))
    assert getattr(query, attribute) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "501"},
        {"limit": "0"},
        {"limit": "ten"},
        {"sort_by": "title"},
        {"sort_direction": "up"},
        {"ids": ",".join(str(n) for n in range(101))},
        {"ids": "1,two"},
        {"owner_id": "me"},
        {"updated_since": "2026-01-01T00:00:00.000Z"},
        {"updated_since": "2026-01-01 00:00:00"},
        {"cursor": "garbage"},
    ],
)
def test_parse_list_query_rejects(params: dict[str, str]) -> None:
    with pytest.raises(errors.ApiError) as raised:
        queries.parse_list_query(params, SORTS, ("owner_id",))
    assert raised.value.status == 400


def item(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "owner_id": 1, "update_time": "2026-01-01T00:00:00Z", **fields}


@pytest.mark.parametrize(
    ("params", "record", "expected"),
    [
        ({"updated_since": "2026-01-01T00:00:00Z"}, item(), True),  # inclusive
        ({"updated_until": "2026-01-01T00:00:00Z"}, item(), False),  # exclusive
        ({"updated_until": "2026-01-01T00:00:01Z"}, item(), True),
        ({"owner_id": "2"}, item(), False),
        ({"ids": "2,3"}, item(), False),
        ({"ids": "1"}, item(), True),
    ],
)
def test_matches(params: dict[str, str], record: dict[str, Any], expected: bool) -> None:
    query = queries.parse_list_query(params, SORTS, ("owner_id",))
    assert queries.matches(record, query) is expected


def deal(status: str = "open", archived: bool = False) -> dict[str, Any]:
    return {"status": status, "is_archived": archived, "is_deleted": status == "deleted"}


@pytest.mark.parametrize(
    ("record", "statuses", "deleted_days_ago", "expected"),
    [
        (deal(), None, None, True),
        (deal("won"), None, None, True),
        (deal(archived=True), None, None, False),
        (deal(archived=True), ["open"], None, False),
        (deal("deleted"), None, 1, False),
        (deal("deleted"), ["deleted"], 1, True),
        (deal("deleted"), ["deleted"], 30, True),
        (deal("deleted"), ["deleted"], 31, False),
        (deal("won"), ["open", "lost"], None, False),
    ],
)
def test_deal_listed(
    record: dict[str, Any], statuses: list[str] | None, deleted_days_ago: int | None,
    expected: bool,
) -> None:  # fmt: skip
    deleted_at = None if deleted_days_ago is None else NOW - timedelta(days=deleted_days_ago)
    assert queries.deal_listed(record, statuses, deleted_at, NOW) is expected
