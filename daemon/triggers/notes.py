"""`note.added`: API v1 notes (20 tokens a page), listed only when a subscription asks."""

from __future__ import annotations

from daemon.triggers.base import FilterField, ObjectType, Trigger, created_since_start

NOTES = ObjectType(
    name="notes",
    path="/v1/notes",
    paging="offset",
    params={"sort": "update_time ASC"},
    filter_fields=(
        FilterField("user_id", int),
        FilterField("deal_id", int),
        FilterField("person_id", int),
        FilterField("org_id", int),
        FilterField("lead_id", str),
    ),
)

TRIGGERS = (Trigger("note.added", NOTES, "added", created_since_start),)
