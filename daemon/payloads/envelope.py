"""The webhook event: its stable id and the JSON body consumers receive."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon import times
from daemon.model import deliveries

EVENT_ID_PREFIX = "msg_"


def _digest(*parts: str) -> str:
    return EVENT_ID_PREFIX + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Origin:
    """What makes one feed's events unlike any other's: the Pipedrive company the account's
    token belongs to (its `company_id`), and this database (`installation`, created with it)."""

    company_id: int
    installation: str

    @property
    def _company(self) -> str:
        return f"company {self.company_id}"

    def addition(self, subscription: str, trigger: str, item_id: int | str) -> str:
        """`webhook-id` of an addition: one per company, subscription, trigger and item (a
        company never reuses an item id), so every database that sees it gives the same."""
        return _digest(self._company, subscription, trigger, str(item_id))

    def change(self, subscription: str, trigger: str, item_id: str, lineage: str) -> str:
        """`webhook-id` of a change: one per observed version of the item, named by its
        `lineage` (the content of every version this database saw of it, in order), so a
        retry, a replay, a restart or a re-read keeps it, a restored backup that sees other
        content does not reuse it, and A -> B -> A -> B gives three different ids."""
        return _digest(self._company, self.installation, subscription, trigger, item_id, lineage)

    def unreadable(self, subscription: str, trigger: str, raw: str) -> str:
        """`webhook-id` of an item that could not be read at all: one per distinct raw object."""
        digest = hashlib.sha256(raw.encode()).hexdigest()
        return _digest(self._company, self.installation, subscription, trigger, "raw", digest)


def raw_json(item: Any) -> str:
    """An object as Pipedrive sent it, compact: an item's stored snapshot, and what names an
    unreadable one (`Origin.unreadable`)."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def dead_on_arrival(
    origin: Origin,
    subscription: str,
    trigger: str,
    item_id: str,
    raw: Any,
    error: str,
    now: datetime,
) -> deliveries.NewEvent:
    """An item no payload can be made of: dead-lettered at once, its body the raw object, its
    id its own (one per raw object), so the version that maps later does not find it taken."""
    return deliveries.NewEvent(
        subscription,
        origin.unreadable(subscription, trigger, raw_json(raw)),
        trigger,
        item_id,
        body(trigger, subscription, dict(raw), now),
        error,
    )


def legacy_id(subscription: str, trigger: str, item_id: str, version: int | None) -> str:
    """The id revisions up to 0007 gave an event: (subscription, trigger, item), and the
    version number for a change (`version`; None for an addition). Never given to a new event:
    only to recognise one queued before the upgrade when its version is read again."""
    if version is None:
        return _digest(subscription, trigger, item_id)
    return _digest(subscription, trigger, item_id, f"v{version}")


def body(
    trigger: str,
    subscription: str,
    data: dict[str, Any],
    detected_at: datetime,
    *,
    change: bool = False,
    previous: dict[str, Any] | None = None,
) -> str:
    """The envelope, serialised once at detection so every attempt sends the same bytes.
    Change events add `previous` (null when the daemon had not seen the item before)."""
    envelope: dict[str, Any] = {
        "type": trigger,
        "timestamp": times.format_connector(detected_at),
        "subscription": subscription,
        "data": data,
    }
    if change:
        envelope["previous"] = previous
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
