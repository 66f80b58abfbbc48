"""Strict v2 body validation, without a server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.dev.sandbox import bodies, errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"title": "A", "value": 10}, {"title": "A", "value": 10}),
        ({"title": "A", "value": 10.5, "probability": None}, None),
        ({"title": "A", "won_time": "2026-01-02 03:04:05"},
         {"title": "A", "won_time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}),
        ({"title": "A", "expected_close_date": "2026-02-28", "label_ids": [1, 2]}, None),
        ({"title": "A", "custom_fields": {"abc": None}}, None),
    ],
)  # fmt: skip
def test_valid_deal_bodies(body: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert bodies.validate(body, bodies.DEAL_FIELDS, ("title",)) == (expected or body)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ([], "body"),
        ({"value": 1}, "title"),
        ({"title": "A", "value": "1"}, "value"),
        ({"title": "A", "value": True}, "value"),
        ({"title": "A", "owner_id": 1.0}, "owner_id"),
        ({"title": "A", "is_archived": 0}, "is_archived"),
        ({"title": "A", "visible_to": 2}, "visible_to"),
        ({"title": "A", "status": "closed"}, "status"),
        ({"title": "A", "expected_close_date": "2026-02-30"}, "expected_close_date"),
        ({"title": "A", "won_time": "yesterday"}, "won_time"),
        ({"title": "A", "label_ids": [1, "2"]}, "label_ids"),
        ({"title": None}, "title"),
        ({"title": "A", "stage": 1}, "stage"),
    ],
)
def test_invalid_deal_bodies(body: Any, key: str) -> None:
    with pytest.raises(errors.ApiError) as raised:
        bodies.validate(body, bodies.DEAL_FIELDS, ("title",))
    assert raised.value.status == 400
    assert raised.value.body["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
    assert raised.value.body["error"].startswith(f"Validation failed: {key}: ")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"due_time": "09:30", "duration": "01:00:00"},
         {"due_time": "09:30:00", "duration": "01:00:00"}),
        ({"participants": [{"person_id": 1, "primary": True}]}, None),
        ({"location": {"value": "Main St 1", "country": "EE"}}, None),
    ],
)  # fmt: skip
def test_valid_activity_bodies(body: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert bodies.validate(body, bodies.ACTIVITY_FIELDS) == (expected or body)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"due_time": "9:30"}, "due_time"),
        ({"duration": "25:00"}, "duration"),
        ({"done": 1}, "done"),
        ({"participants": [{"person_id": "1"}]}, "participants.person_id"),
        ({"participants": [{"id": 1}]}, "participants.id"),
        ({"location": "Main St"}, "location"),
        ({"location": {"city": "Tartu"}}, "location.city"),
        ({"user_id": 1}, "user_id"),
    ],
)
def test_invalid_activity_bodies(body: dict[str, Any], key: str) -> None:
    with pytest.raises(errors.ApiError) as raised:
        bodies.validate(body, bodies.ACTIVITY_FIELDS)
    assert raised.value.body["error"].startswith(f"Validation failed: {key}: ")
