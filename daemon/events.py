"""The webhook event: its stable id and the JSON body consumers receive."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from daemon import payloads

EVENT_ID_PREFIX = "msg_"


def event_id(subscription: str, trigger: str, item_id: int) -> str:
    """`webhook-id`: the same on every retry and replay, unique per subscription+trigger+item."""
    digest = hashlib.sha256(f"{subscription}\x00{trigger}\x00{item_id}".encode()).hexdigest()
    return EVENT_ID_PREFIX + digest[:32]


def body(trigger: str, subscription: str, data: dict[str, Any], detected_at: datetime) -> str:
    """The envelope, serialised once at detection so every attempt sends the same bytes."""
    return json.dumps(
        {
            "type": trigger,
            "timestamp": payloads.format_instant(detected_at),
            "subscription": subscription,
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
