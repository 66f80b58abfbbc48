"""The webhook event: its stable id and the JSON body consumers receive."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

EVENT_ID_PREFIX = "msg_"


def event_id(subscription: str, trigger: str, item_id: int) -> str:
    """`webhook-id`: the same on every retry and replay, unique per subscription+trigger+item."""
    digest = hashlib.sha256(f"{subscription}\x00{trigger}\x00{item_id}".encode()).hexdigest()
    return EVENT_ID_PREFIX + digest[:32]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(trigger: str, subscription: str, data: dict[str, Any], detected_at: datetime) -> str:
    """The envelope, serialised once at detection so every attempt sends the same bytes."""
    return json.dumps(
        {
            "type": trigger,
            "timestamp": rfc3339(detected_at),
            "subscription": subscription,
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
