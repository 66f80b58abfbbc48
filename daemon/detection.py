"""Deciding which listed items are new for a subscription, and its next high-water mark."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Item = Mapping[str, Any]


@dataclass(frozen=True)
class Mark:
    """The newest item a subscription has seen: ids grow as items are created, so the id
    orders creation even when an admin backdates `add_time`."""

    id: int
    add_time: datetime | None


@dataclass(frozen=True)
class Detection:
    new_items: list[Item]  # oldest first, the order deliveries are created in
    mark: Mark


def parse_time(value: str) -> datetime:
    """Pipedrive v2 times are RFC 3339 (`2026-11-24T06:36:08Z`)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def added_at(item: Item) -> datetime | None:
    """The item's `add_time`, or None when missing or unparsable: a malformed item must not
    stall detection; the mapping step dead-letters it with the reason."""
    add_time = item.get("add_time")
    if not isinstance(add_time, str):
        return None
    try:
        moment = parse_time(add_time)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _mark_of(item: Item) -> Mark:
    return Mark(item["id"], added_at(item))


def top_mark(items: Iterable[Item], mark: Mark | None) -> Mark | None:
    """The highest of `mark` and every listed item's id."""
    best = mark
    for item in items:
        if best is None or item["id"] > best.id:
            best = _mark_of(item)
    return best


def select_new(items: Iterable[Item], mark: Mark | None, start: datetime | None) -> Detection:
    """Items new to a subscription, and the mark to store with them in one transaction.

    - An initialised subscription (`mark` set) takes every item with a larger id: several
      items may share an `add_time` second, and a backdated `add_time` is still new.
    - A first run with `start=None` ("now") takes nothing and marks the newest item.
    - A first run with a `start` time backfills every item added at or after it.
    """
    listed = list(items)
    if mark is not None:
        new = [item for item in listed if item["id"] > mark.id]
    elif start is None:
        new = []
    else:
        new = [item for item in listed if (added := added_at(item)) is not None and added >= start]
    unique = {item["id"]: item for item in new}
    new_mark = top_mark(listed, mark) or Mark(0, None)
    return Detection([unique[key] for key in sorted(unique)], new_mark)
