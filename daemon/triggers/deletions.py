"""Deletions a listing cannot see: `person.deleted`, `organization.deleted`,
`activity.deleted`, `note.deleted`, `lead.deleted`. Pipedrive lists no deleted item but deals,
so these fire only in instant mode, from a delete webhook the API confirms
(`instant.deletions`); `data` is the item as the daemon last stored it, in the shape the
object's other triggers deliver, and `previous` is null.
"""

from __future__ import annotations

from daemon import payloads
from daemon.triggers.activities import ACTIVITIES
from daemon.triggers.base import ObjectType, Trigger, never
from daemon.triggers.leads import LEADS
from daemon.triggers.notes import NOTES
from daemon.triggers.organizations import ORGANIZATIONS
from daemon.triggers.persons import PERSONS


def _deleted(name: str, obj: ObjectType, payload: payloads.Payload) -> Trigger:
    return Trigger(name, obj, "change", never, payload=payload, deletion=True)


TRIGGERS = (
    _deleted("person.deleted", PERSONS, payloads.PASSTHROUGH),
    _deleted("organization.deleted", ORGANIZATIONS, payloads.PASSTHROUGH),
    _deleted("activity.deleted", ACTIVITIES, payloads.ACTIVITY),
    _deleted("note.deleted", NOTES, payloads.PASSTHROUGH),
    _deleted("lead.deleted", LEADS, payloads.PASSTHROUGH),
)
