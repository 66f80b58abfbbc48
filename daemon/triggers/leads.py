"""`lead.added`: API v1 leads (UUID ids, 20 tokens a page), listed only when subscribed."""

from __future__ import annotations

from daemon.triggers.base import FilterField, ObjectType, Trigger, created_since_start

LEADS = ObjectType(
    name="leads",
    path="/v1/leads",
    paging="offset",
    params={"sort": "update_time ASC"},
    filter_fields=(
        FilterField("owner_id", int),
        FilterField("person_id", int),
        FilterField("organization_id", int),
        FilterField("label_ids", str, many=True),
        FilterField("source_name", str),
    ),
    string_ids=True,
)

TRIGGERS = (Trigger("lead.added", LEADS, "added", created_since_start),)
