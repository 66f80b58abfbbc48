"""v1 notes and leads: records, write rules, and v1 offset listing (`start`/`limit`, `sort`,
`updated_since`) with the `additional_data.pagination` envelope."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from daemon.dev.sandbox import changes, clock, errors, queries
from daemon.dev.sandbox.state import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
NOTE_SORTS = (
    "id", "user_id", "deal_id", "person_id", "org_id", "content", "add_time", "update_time",
)  # fmt: skip
LEAD_SORTS = (
    "id", "title", "owner_id", "creator_id", "was_seen", "expected_close_date",
    "next_activity_id", "add_time", "update_time",
)  # fmt: skip
_NOTE_LINKS = ("lead_id", "deal_id", "person_id", "org_id", "project_id", "task_id")
_PINS = ("lead", "deal", "organization", "person", "project", "task")
_PIN_LINK = {"organization": "org_id"}


def lead_uuid(serial: int) -> str:
    """Deterministic UUID-shaped ids whose string order is creation order."""
    return f"{serial:08x}-5a1d-4b0c-8000-{serial:012x}"


# -- notes -----------------------------------------------------------------------------------


def add_note(
    store: Store,
    fields: dict[str, Any],
    update_time: datetime | None = None,
) -> dict[str, Any]:
    """`fields` already passed `bodies.validate(..., NOTE_FIELDS, ("content",))`."""
    with store.lock:
        if not any(fields.get(link) is not None for link in _NOTE_LINKS):
            raise errors.bad_request(
                "One of lead_id, deal_id, person_id, org_id, project_id or task_id is required"
            )
        checks: list[tuple[Mapping[Any, Any], str, str]] = [
            (store.leads, "Lead", "lead_id"),
            (store.deals, "Deal", "deal_id"),
            (store.persons, "Person", "person_id"),
            (store.organizations, "Organization", "org_id"),
            (store.users, "User", "user_id"),
        ]
        for table, name, key in checks:
            value = fields.get(key)
            if value is not None and value not in table:
                raise errors.bad_request(f"{name} with id {value} does not exist ({key})")
        for pin in _PINS:
            link = _PIN_LINK.get(pin, f"{pin}_id")
            if fields.get(f"pinned_to_{pin}_flag") and fields.get(link) is None:
                raise errors.bad_request(f"pinned_to_{pin}_flag needs {link}")
        now = store.now()
        added = fields.get("add_time") or now
        user_id = fields.get("user_id", store.me_id)
        note: dict[str, Any] = {
            "id": store.next_id("note"),
            "active_flag": True,
            "add_time": clock.v1_time(added),
            "content": fields["content"],
            **{link: fields.get(link) for link in _NOTE_LINKS},
            "last_update_user_id": user_id,
            **{f"pinned_to_{pin}_flag": bool(fields.get(f"pinned_to_{pin}_flag")) for pin in _PINS},
            "update_time": clock.v1_time(update_time or now),
            "user_id": user_id,
        }
        store.notes[note["id"]] = note
        store.emit(changes.CREATE, "note", note)
        return note


def render_note(store: Store, note: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 note with its linked names (computed now, as the API joins them per request)."""
    deal = store.deals.get(note["deal_id"]) if note["deal_id"] is not None else None
    org = store.organizations.get(note["org_id"]) if note["org_id"] is not None else None
    person = store.persons.get(note["person_id"]) if note["person_id"] is not None else None
    user = store.users.get(note["user_id"])
    return {
        **note,
        "deal": {"title": deal["title"]} if deal else None,
        "organization": {"name": org["name"]} if org else None,
        "person": {"name": person["name"]} if person else None,
        "project": None,
        "task": None,
        "user": {
            "email": user["email"],
            "icon_url": None,
            "is_you": user["id"] == store.me_id,
            "name": user["name"],
        }
        if user
        else None,
    }


# -- leads -----------------------------------------------------------------------------------


def add_lead(
    store: Store,
    fields: dict[str, Any],
    origin: str = "API",
    add_time: datetime | None = None,
    update_time: datetime | None = None,
) -> dict[str, Any]:
    """`fields` already passed `bodies.validate(..., LEAD_FIELDS, ("title",))`."""
    with store.lock:
        person_id, org_id = fields.get("person_id"), fields.get("organization_id")
        if person_id is None and org_id is None:
            raise errors.bad_request("A lead needs a person_id or an organization_id")
        if person_id is not None and person_id not in store.persons:
            raise errors.bad_request(f"Person with id {person_id} does not exist (person_id)")
        if org_id is not None and org_id not in store.organizations:
            raise errors.bad_request(
                f"Organization with id {org_id} does not exist (organization_id)"
            )
        owner_id = fields.get("owner_id", store.me_id)
        if owner_id not in store.users:
            raise errors.bad_request(f"User with id {owner_id} does not exist (owner_id)")
        if not fields["title"].strip():
            raise errors.bad_request("Lead title must not be empty")
        now = store.now()
        lead_id = lead_uuid(store.next_id("lead"))
        lead: dict[str, Any] = {
            "id": lead_id,
            "title": fields["title"],
            "owner_id": owner_id,
            "creator_id": store.me_id,
            "label_ids": fields.get("label_ids", []),
            "person_id": person_id,
            "organization_id": org_id,
            "source_name": "API" if origin == "API" else "Manually created",
            "origin": origin,
            "origin_id": fields.get("origin_id"),
            "channel": fields.get("channel"),
            "channel_id": fields.get("channel_id"),
            "source_deal_id": None,
            "is_archived": False,
            "was_seen": fields.get("was_seen", False),
            "value": fields.get("value"),
            "expected_close_date": fields.get("expected_close_date"),
            "next_activity_id": None,
            "add_time": clock.lead_time(add_time or now),
            "update_time": clock.lead_time(update_time or add_time or now),
            "visible_to": fields.get("visible_to", "3"),
            "cc_email": f"sandbox+lead{lead_id[:8]}@pipedrivemail.com",
        }
        store.leads[lead_id] = lead
        store.emit(changes.CREATE, "lead", lead)
        return lead


# -- offset listing ----------------------------------------------------------------------------


def parse_sort(text: str | None, allowed: Sequence[str], default: str) -> list[tuple[str, bool]]:
    """`"update_time ASC, id DESC"` -> [("update_time", False), ("id", True)]."""
    result = []
    for part in (text or default).split(","):
        words = part.split()
        if not words:
            continue
        field, direction = words[0], (words[1].upper() if len(words) > 1 else "ASC")
        if field not in allowed or direction not in ("ASC", "DESC") or len(words) > 2:
            raise errors.bad_request(f"Invalid sort: {part.strip()!r}")
        result.append((field, direction == "DESC"))
    return result


def _ordered(items: list[dict[str, Any]], sort: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort, id last as the tie-break; nulls after values ascending."""
    ordered = sorted(items, key=lambda item: item["id"])
    for field, desc in reversed(sort):
        present = [item for item in ordered if item.get(field) is not None]
        missing = [item for item in ordered if item.get(field) is None]
        present.sort(key=lambda item: item[field], reverse=desc)
        ordered = [*missing, *present] if desc else [*present, *missing]
    return ordered


def since_param(params: Mapping[str, str]) -> datetime | None:
    text = params.get("updated_since")
    if not text:
        return None
    moment = clock.parse_iso8601(text)
    if moment is None:
        raise errors.bad_request(
            "updated_since must be an RFC3339 timestamp, e.g. 2025-01-01T10:20:00Z"
        )
    return moment


def offset_page(
    items: list[dict[str, Any]],
    params: Mapping[str, str],
    sort: list[tuple[str, bool]],
    keep: Callable[[dict[str, Any]], bool] = lambda item: True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The page and `additional_data` for v1 offset paging; `limit` above 500 is clamped."""
    start = queries.int_param(params, "start") or 0
    limit = queries.int_param(params, "limit")
    if start < 0 or (limit is not None and limit < 1):
        raise errors.bad_request("start must be >= 0 and limit >= 1")
    limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
    since = since_param(params)
    chosen = [
        item
        for item in items
        if keep(item) and (since is None or clock.parse_any(item["update_time"]) >= since)
    ]
    ordered = _ordered(chosen, sort)
    page = ordered[start : start + limit]
    more = start + limit < len(ordered)
    pagination: dict[str, Any] = {"start": start, "limit": limit, "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    return page, {"pagination": pagination}
