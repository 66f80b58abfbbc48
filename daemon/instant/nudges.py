"""What one of Pipedrive's webhooks says, as far as the daemon cares: that a feed (account,
object type) changed. Pure: the body parsed into a `Nudge`, Pipedrive's entity names mapped
onto the triggers' object types, and the memory of event ids seen, against Pipedrive's retries.

The body's `data` and `previous` are never used: the feed's poll reads what changed from the
API, so a forged or stale body can at worst cause one read.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon import times

# Pipedrive's `meta.entity` -> the triggers' object type (`triggers.OBJECT_TYPES`). Others
# (product, user, pipeline, stage, project, task, ...) have no feed: ignored.
OBJECT_TYPES = {
    "activity": "activities",
    "deal": "deals",
    "lead": "leads",
    "note": "notes",
    "organization": "organizations",
    "person": "persons",
}
# ... and the entities whose objects payloads name (see `pipedrive.lookups`): a change of one
# that no feed reads still drops its cached copy, so names stay fresh while it is kept long.
LOOKED_UP = {
    "deal": "deals",
    "organization": "organizations",
    "person": "persons",
    "stage": "stages",
    "user": "users",
}
DEDUP_SIZE = 10_000  # event ids remembered, over all accounts: a few minutes of a flood


class Malformed(ValueError):
    """The body is not a webhooks v2 body: not JSON, or no `meta` with `entity` and
    `action`. The message says which, never quoting the body."""


@dataclass(frozen=True)
class Nudge:
    """A feed changed: read it. Relayed nudges and the ones an unreadable body stands for know
    only the feed (`action`, `entity_id` and `meta_id` None)."""

    account: str
    # The daemon's name for it: a feed's object type ("deals", "activities"), or a lookup
    # resource no feed reads ("users", "stages"), which only drops cached copies.
    object_type: str
    action: str | None = None  # Pipedrive's: create, change or delete
    entity_id: str | None = None
    meta_id: str | None = None  # Pipedrive's event id, the same on every retry
    timestamp: datetime | None = None  # when the change was made, as Pipedrive says


@dataclass(frozen=True)
class Meta:
    """The parts of a body's `meta` a nudge needs; `object_type` None: an entity no feed reads."""

    entity: str
    action: str
    entity_id: str | None
    meta_id: str | None
    timestamp: datetime | None

    @property
    def object_type(self) -> str | None:
        return OBJECT_TYPES.get(self.entity)

    @property
    def looked_up(self) -> str | None:
        """The lookup resource a change of this entity makes stale (None: none)."""
        return LOOKED_UP.get(self.entity)

    def nudge(self, account: str, object_type: str) -> Nudge:
        return Nudge(
            account, object_type, self.action, self.entity_id, self.meta_id, self.timestamp
        )


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _timestamp(value: object) -> datetime | None:
    """v2's `2026-01-02T03:04:05.000Z`, or the 10-digit seconds its docs also mention."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            if value.isdigit():
                return datetime.fromtimestamp(int(value), UTC)
            return times.as_utc(times.parse_rfc3339(value))
    except (ValueError, OverflowError, OSError):
        pass
    return None  # a time we cannot read changes nothing: the poll reads the item's own


def parse(body: bytes) -> Meta:
    """The body's `meta`, or `Malformed`."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError among them
        raise Malformed("body is not JSON") from None
    meta = document.get("meta") if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        raise Malformed("body has no meta object")
    entity, action = meta.get("entity"), meta.get("action")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise Malformed("meta has no entity or action")
    return Meta(
        entity=entity,
        action=action,
        entity_id=_text(meta.get("entity_id")),
        meta_id=_text(meta.get("id")),
        timestamp=_timestamp(meta.get("timestamp")),
    )


class Seen:
    """The last `size` (account, event id) pairs: Pipedrive retries an event with the same
    `meta.id`, and one seen already is not a new nudge. Bounded over all accounts, so memory is
    the same whatever a flood sends; an id forgotten costs at most one coalesced read."""

    def __init__(self, size: int = DEDUP_SIZE) -> None:
        self.size = size
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first_time(self, account: str, meta_id: str) -> bool:
        key = (account, meta_id)
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)
