"""What a trigger is: the object it watches, when it fires, and the payload it sends.

Every trigger is one `Trigger` value in one module of this package; the registry in
`__init__` collects them, `config.py` validates names and filters against it, and the
poller knows no trigger by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from daemon import payloads, times
from daemon.pipedrive import costs

Item = Mapping[str, Any]

MAX_ITEM_ID = 2**63 - 1  # ids are stored and sent as signed 64-bit integers
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class UnmappableItem(ValueError):
    """A listed object the daemon cannot reason about (no usable id, a broken timestamp):
    dead-lettered with its raw object, never allowed to stall its feed."""


@dataclass(frozen=True)
class FilterField:
    """A field a subscription may filter on: `kind` is the type of one value in the config;
    `many` means the item holds a list (e.g. `label_ids`) that matches when any value does."""

    name: str
    kind: type[int] | type[str] | type[bool]
    many: bool = False


@dataclass(frozen=True)
class ObjectType:
    """One listable Pipedrive object: one feed per account lists it once per cycle."""

    name: str  # "deals", also the feed's key
    path: str  # the listing
    paging: Literal["cursor", "offset"]  # v2 cursors, v1 start/limit
    params: Mapping[str, str] = field(default_factory=dict)  # fixed listing parameters
    filter_fields: tuple[FilterField, ...] = ()
    fields_path: str | None = None  # custom field definitions, for `include_custom_fields`
    string_ids: bool = False  # leads have UUID ids

    @property
    def page_cost(self) -> int:
        """Pipedrive tokens per listing page (`x-token-cost`)."""
        return costs.token_cost("GET", self.path)

    def filter_field(self, name: str) -> FilterField | None:
        return next((f for f in self.filter_fields if f.name == name), None)


@dataclass(frozen=True)
class Observation:
    """One subscription looking at one listed version of an item."""

    previous: Item | None  # what the daemon last saw of it; None: never seen by this subscription
    current: Item
    start: datetime  # the subscription's start: nothing before it fires
    id_floor: int | None  # the highest id that existed when the subscription started


@dataclass(frozen=True)
class Trigger:
    name: str  # the contract: config's `trigger`, the envelope's `type`
    object: ObjectType
    kind: Literal["added", "change"]  # "added" events carry no `previous`
    fires: Callable[[Observation], bool]
    payload: payloads.Payload = payloads.PASSTHROUGH  # the shape of `data`
    always_previous: tuple[str, ...] = ()  # `previous` keys carried even when unchanged
    # Fired by `instant.deletions` when Pipedrive's delete webhook is confirmed by the API,
    # never by a listing (which does not show deleted items): needs instant mode.
    deletion: bool = False


def never(_obs: Observation) -> bool:
    """A listing never fires it (see `Trigger.deletion`)."""
    return False


def item_key(item: Item, obj: ObjectType) -> str:
    """The item's id as stored: a positive 64-bit integer, or a UUID for leads."""
    ident = item.get("id")
    if obj.string_ids:
        if isinstance(ident, str) and _UUID.match(ident):
            return ident.lower()
        raise UnmappableItem(f"id: expected a UUID, got {ident!r}")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise UnmappableItem(f"id: expected an integer, got {ident!r}")
    if not 0 < ident <= MAX_ITEM_ID:
        raise UnmappableItem(f"id: {ident} is outside the signed 64-bit range")
    return str(ident)


def moment(item: Item, name: str) -> datetime | None:
    """A Pipedrive timestamp as an aware UTC datetime; None when absent or empty.
    Anything else that is not a real instant (e.g. "0001-01-01T00:00:00+01:00", which is
    before year 1 in UTC) makes the item unmappable rather than crashing the feed."""
    value = item.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UnmappableItem(f"{name}: expected a timestamp, got {value!r}")
    try:
        return times.parse_pipedrive(value)
    except ValueError as error:
        raise UnmappableItem(f"{name}: {error}") from None


def required_moment(item: Item, name: str) -> datetime:
    value = moment(item, name)
    if value is None:
        raise UnmappableItem(f"{name}: missing")
    return value


def at_or_after(item: Item, name: str, start: datetime) -> bool:
    """Pipedrive's timestamps have whole seconds: whatever happened in the second of the start
    counts as after it (an event too many beats one lost)."""
    value = moment(item, name)
    return value is not None and value >= start.replace(microsecond=0)


def created_since_start(obs: Observation) -> bool:
    """The item is new to this subscription: never seen, and created after it started.
    A backdated `add_time` still counts when the id is above what existed at the start."""
    if obs.previous is not None:
        return False
    if at_or_after(obs.current, "add_time", obs.start):
        return True
    ident = obs.current.get("id")
    return (
        obs.id_floor is not None
        and isinstance(ident, int)
        and not isinstance(ident, bool)
        and ident > obs.id_floor
    )


def changed_since_start(obs: Observation) -> bool:
    """The item changed while the subscription watched. Seen before: this version differs
    (the feed only shows versions that do). Never seen: it existed before the subscription
    started (else it is an addition) and was updated after."""
    if obs.previous is not None:
        return True
    return not created_since_start(obs) and at_or_after(obs.current, "update_time", obs.start)


def became(obs: Observation, field_name: str, value: Any, since_field: str) -> bool:
    """`field_name` now equals `value` and did not before, or it went away and came back
    (its `since_field` timestamp moved); never seen: `since_field` is after the start."""
    if obs.current.get(field_name) != value:
        return False
    if obs.previous is None:
        return at_or_after(obs.current, since_field, obs.start)
    return obs.previous.get(field_name) != value or obs.previous.get(
        since_field
    ) != obs.current.get(since_field)
