"""Organization triggers: added, updated; `data` is the API v2 organization object."""

from __future__ import annotations

from daemon.triggers.base import (
    FilterField,
    ObjectType,
    Trigger,
    changed_since_start,
    created_since_start,
)

ORGANIZATIONS = ObjectType(
    name="organizations",
    path="/api/v2/organizations",
    paging="cursor",
    filter_fields=(
        FilterField("owner_id", int),
        FilterField("label_ids", int, many=True),
        FilterField("visible_to", int),
    ),
    fields_path="/api/v2/organizationFields",
)

TRIGGERS = (
    Trigger("organization.added", ORGANIZATIONS, "added", created_since_start),
    Trigger("organization.updated", ORGANIZATIONS, "change", changed_since_start),
)
