"""The JSON body of a webhooks v2 delivery: `meta`, `data` (the record now), `previous` (what the
change replaced). Pure: the sender gives the ids and the attempt number."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from daemon.dev.sandbox import changes, render
from daemon.dev.sandbox.changes import Change

# Moves on every write, so it would be in every `previous`: left out, like a v2 UI edit's.
_BOOKKEEPING = frozenset({"update_time"})
HOST = f"{render.COMPANY['company_domain']}.pipedrive.com"


def timestamp(change: Change) -> str:
    """RFC 3339 with milliseconds, as the guide's example (`2023-01-01T00:00:00.000Z`)."""
    moment = change.at.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def previous_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Only the changed fields' old values; custom fields only the changed keys."""
    found: dict[str, Any] = {}
    for key, old in before.items():
        if key in _BOOKKEEPING or after.get(key) == old:
            continue
        if key == "custom_fields" and isinstance(old, dict):
            new = after.get(key) or {}
            found[key] = {code: value for code, value in old.items() if new.get(code) != value}
        else:
            found[key] = old
    return found


def body(
    change: Change,
    webhook: dict[str, Any],
    *,
    event_id: str,
    correlation_id: str,
    attempt: int,
) -> dict[str, Any]:
    """One attempt's body. A delete sends `data: null` and the record as it was in `previous`;
    a change sends the new state and the changed fields' old values; a create, no previous."""
    meta = {
        "action": change.action,
        "entity": change.kind,
        "entity_id": str(change.record["id"]),
        "id": event_id,
        "correlation_id": correlation_id,
        "timestamp": timestamp(change),
        "attempt": attempt,
        "version": "2.0",
        "webhook_id": str(webhook["id"]),
        "webhook_owner_id": str(webhook["owner_id"]),
        "company_id": str(change.company_id),
        "user_id": str(change.user_id),
        "permitted_user_ids": [str(user_id) for user_id in change.user_ids],
        "change_source": "api",
        "is_bulk_edit": False,
        "host": HOST,
        "type": "general",
    }
    if change.action == changes.DELETE:
        return {"meta": meta, "data": None, "previous": change.before or change.record}
    previous = None
    if change.action == changes.CHANGE and change.before is not None:
        previous = previous_values(change.before, change.record)
    return {"meta": meta, "data": change.record, "previous": previous}
