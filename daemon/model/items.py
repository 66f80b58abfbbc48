"""What the daemon remembers of a listed item: the version it read back (`StoredItem`), and
the row a page writes when an item is new or changed (`ItemStateRow`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredItem:
    version: int
    content_hash: str
    snapshot: dict[str, Any]
    lineage: str


@dataclass(frozen=True)
class ItemStateRow:
    item_id: str
    version: int
    content_hash: str
    update_time: datetime | None
    snapshot: str  # the raw object as JSON
    lineage: str
