"""Reading a nudge's items one `GET {path}/{id}` each (instant mode): when that is cheaper
than the feed's listing, and which of the objects it serves a listing would show."""

from __future__ import annotations

from daemon.pipedrive import lookups
from daemon.pipedrive.client import PipedriveClient
from daemon.triggers.base import Item, ObjectType

BY_ID_PARAMS = frozenset({"include_fields"})
"""The listing parameters that `GET .../{id}` takes too, so both serve the same object."""


def lists_deleted(obj: ObjectType) -> bool:
    """Whether the feed's listing serves deleted items (deals, for 30 days): a delete is read
    by listing it there; elsewhere deletes are the deletion triggers' (`instant.deletions`)."""
    return "deleted" in obj.params.get("status", "")


def readable(obj: ObjectType, item_ids: frozenset[str]) -> bool:
    """Whether reading these items one `GET {path}/{id}` each costs fewer tokens than one
    listing (a deal: 1 token against 10), for a handful at most (`lookups.BY_ID_AT_MOST`).
    Only v2 objects: v1's notes and leads are read by their listing."""
    if not obj.path.startswith("/api/v2/") or obj.string_ids or not item_ids:
        return False
    if not all(i.isdigit() for i in item_ids):
        return False
    return lookups.one_by_one_is_cheaper(obj.path, len(item_ids))


async def fetch(client: PipedriveClient, obj: ObjectType, item_ids: frozenset[str]) -> list[Item]:
    """The items Pipedrive still serves, as a listing would show them: a deleted one only
    where the listing shows deleted ones; one Pipedrive does not have (404) is left out."""
    params = {k: v for k, v in obj.params.items() if k in BY_ID_PARAMS}
    return [
        item
        for ident in sorted(item_ids, key=int)
        if (item := await client.find(f"{obj.path}/{ident}", params)) is not None
        and (lists_deleted(obj) or item.get("is_deleted") is not True)
    ]
