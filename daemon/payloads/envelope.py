"""The webhook event: its stable id and the JSON body consumers receive."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from daemon import times

EVENT_ID_PREFIX = "msg_"


def _digest(*parts: str) -> str:
    return EVENT_ID_PREFIX + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def event_id(subscription: str, trigger: str, item_id: int | str) -> str:
    """`webhook-id` of an addition: the same on every retry and replay, one per item."""
    return _digest(subscription, trigger, str(item_id))


def change_event_id(subscription: str, trigger: str, item_id: str, version: int) -> str:
    """`webhook-id` of a change: one per observed version of the item, so a retry, a replay,
    a restart or a re-read keeps it, and A -> B -> A -> B gives three different ids."""
    return _digest(subscription, trigger, item_id, f"v{version}")


def raw_event_id(subscription: str, trigger: str, raw: str) -> str:
    """`webhook-id` of an item that could not be read at all: one per distinct raw object."""
    return _digest(subscription, trigger, "raw", hashlib.sha256(raw.encode()).hexdigest())


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
