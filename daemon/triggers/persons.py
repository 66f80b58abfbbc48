"""Person triggers: added, updated; `data` is the API v2 person object."""

from __future__ import annotations

from daemon.triggers.base import (
    FilterField,
    ObjectType,
    Trigger,
    changed_since_start,
    created_since_start,
)

PERSONS = ObjectType(
    name="persons",
    path="/api/v2/persons",
    paging="cursor",
    filter_fields=(
        FilterField("owner_id", int),
        FilterField("org_id", int),
        FilterField("label_ids", int, many=True),
        FilterField("visible_to", int),
    ),
    fields_path="/api/v2/personFields",
)

TRIGGERS = (
    Trigger("person.added", PERSONS, "added", created_since_start),
    Trigger("person.updated", PERSONS, "change", changed_since_start),
)
