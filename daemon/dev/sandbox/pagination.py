"""Keyset cursor paging as v2 lists do it: a sort field plus an id tie-break, opaque to clients.

The cursor is base64url JSON `{"field", "fieldValue", "sortDirection", "id"}`, the form of the
spec's example. It names the last item served, and the next page starts strictly after it, so
rows inserted or deleted between requests never shift a page: nothing is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SortValue = int | str | None


@dataclass(frozen=True)
class Cursor:
    field: str
    field_value: SortValue
    direction: str
    id: int


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps(
        {
            "field": cursor.field,
            "fieldValue": cursor.field_value,
            "sortDirection": cursor.direction,
            "id": cursor.id,
        },
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, allowed_fields: Sequence[str]) -> Cursor | None:
    """The cursor, or None when it is not one this server could have issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    field, value = data.get("field"), data.get("fieldValue")
    direction, item_id = data.get("sortDirection"), data.get("id")
    if not isinstance(field, str) or field not in allowed_fields:
        return None
    if not isinstance(direction, str) or direction not in ("asc", "desc"):
        return None
    if not isinstance(item_id, int) or isinstance(item_id, bool):
        return None
    if value is not None and (not isinstance(value, int | str) or isinstance(value, bool)):
        return None
    return Cursor(field, value, direction, item_id)


def sort_key(item: Mapping[str, Any], field: str) -> tuple[int, SortValue, int]:
    """Nulls sort after every value ascending (so before them descending), then by id."""
    value = item.get(field)
    return (1, None, item["id"]) if value is None else (0, value, item["id"])


def _cursor_key(cursor: Cursor) -> tuple[int, SortValue, int]:
    if cursor.field_value is None:
        return (1, None, cursor.id)
    return (0, cursor.field_value, cursor.id)


def _after(key: tuple[int, SortValue, int], mark: tuple[int, SortValue, int], desc: bool) -> bool:
    # Tuples holding None compare fine here: a None slot only meets another None after the
    # leading flags were equal, and then equality short-circuits to the id.
    return key < mark if desc else key > mark


def paginate(
    items: Sequence[Mapping[str, Any]],
    field: str,
    direction: str,
    after: Cursor | None,
    limit: int,
) -> tuple[list[Mapping[str, Any]], str | None]:
    """One page of `items` in (field, id) order and the cursor for the next, None at the end."""
    if after is not None:
        field, direction = after.field, after.direction
    desc = direction == "desc"
    ordered = sorted(items, key=lambda item: sort_key(item, field), reverse=desc)
    if after is not None:
        mark = _cursor_key(after)
        ordered = [item for item in ordered if _after(sort_key(item, field), mark, desc)]
    page = ordered[:limit]
    if len(ordered) <= limit or not page:
        return page, None
    last = page[-1]
    return page, encode_cursor(Cursor(field, last.get(field), direction, last["id"]))
