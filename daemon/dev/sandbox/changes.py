"""One write to the account as its listeners (the webhook sender) hear of it: what changed, the
record after it, and the record before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CREATE, CHANGE, DELETE = "create", "change", "delete"


@dataclass(frozen=True)
class Change:
    action: str  # create, change, delete (webhooks v2's words)
    kind: str  # deal, person, organization, activity, note, lead
    record: dict[str, Any]  # a copy of the record after the write
    before: dict[str, Any] | None  # a copy of it before (None for a create)
    at: datetime  # the write's time: the record's new update_time
    user_id: int  # who wrote (the token's user)
    company_id: int
    user_ids: tuple[int, ...]  # the company's active users, who may see it


Listener = Callable[[Change], None]
