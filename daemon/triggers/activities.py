"""Activity triggers: added, updated, done."""

from __future__ import annotations

from daemon import payloads
from daemon.triggers.base import (
    FilterField,
    ObjectType,
    Observation,
    Trigger,
    became,
    changed_since_start,
    created_since_start,
)

ACTIVITIES = ObjectType(
    name="activities",
    path="/api/v2/activities",
    paging="cursor",
    filter_fields=(
        FilterField("type", str),
        FilterField("done", bool),
        FilterField("owner_id", int),
        FilterField("creator_user_id", int),
        FilterField("deal_id", int),
        FilterField("lead_id", str),
        FilterField("person_id", int),
        FilterField("org_id", int),
        FilterField("project_id", int),
        FilterField("busy", bool),
        FilterField("priority", int),
    ),
    fields_path="/api/v2/activityFields",
)


def _done(obs: Observation) -> bool:
    return became(obs, "done", True, "marked_as_done_time")


TRIGGERS = (
    Trigger("activity.added", ACTIVITIES, "added", created_since_start, payload=payloads.ACTIVITY),
    Trigger(
        "activity.updated", ACTIVITIES, "change", changed_since_start, payload=payloads.ACTIVITY
    ),
    Trigger("activity.done", ACTIVITIES, "change", _done, payload=payloads.ACTIVITY),
)
