"""Activity triggers: added, updated, done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from daemon.payloads import shapes
from daemon.pipedrive import lookups
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


def _activity(
    name: str, kind: Literal["added", "change"], fires: Callable[[Observation], bool]
) -> Trigger:
    return Trigger(
        name=name,
        object=ACTIVITIES,
        kind=kind,
        fires=fires,
        mapper=shapes.activity,
        needs=lookups.needed_for_activities,
        schema="ActivityResponse",
    )


TRIGGERS = (
    _activity("activity.added", "added", created_since_start),
    _activity("activity.updated", "change", changed_since_start),
    _activity("activity.done", "change", _done),
)
