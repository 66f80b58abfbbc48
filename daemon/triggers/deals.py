"""Deal triggers: added (v2 and legacy shapes), updated, stage changed, won, lost, deleted."""

from __future__ import annotations

from daemon import payloads
from daemon.payloads import shapes
from daemon.triggers.base import (
    FilterField,
    ObjectType,
    Observation,
    Trigger,
    at_or_after,
    became,
    changed_since_start,
    created_since_start,
)

DEALS = ObjectType(
    name="deals",
    path="/api/v2/deals",
    paging="cursor",
    # Deleted deals are listed (for 30 days) only when asked for by status.
    params={"status": "open,won,lost,deleted", "include_fields": shapes.DEAL_INCLUDE_FIELDS},
    filter_fields=(
        FilterField("status", str),
        FilterField("pipeline_id", int),
        FilterField("stage_id", int),
        FilterField("owner_id", int),
        FilterField("creator_user_id", int),
        FilterField("person_id", int),
        FilterField("org_id", int),
        FilterField("currency", str),
        FilterField("label_ids", int, many=True),
        FilterField("visible_to", int),
        FilterField("origin", str),
        FilterField("channel", int),
    ),
    fields_path="/api/v2/dealFields",
)


def _deleted(obs: Observation) -> bool:
    return obs.current.get("status") == "deleted" or obs.current.get("is_deleted") is True


def _updated(obs: Observation) -> bool:
    return not _deleted(obs) and changed_since_start(obs)


def _stage_changed(obs: Observation) -> bool:
    if _deleted(obs) or obs.current.get("stage_change_time") in (None, ""):
        return False
    if obs.previous is None:
        # A move after the start; for a deal created since, a move after its creation.
        moved = at_or_after(obs.current, "stage_change_time", obs.start)
        created_with_it = obs.current["stage_change_time"] == obs.current.get("add_time")
        return moved and not (created_since_start(obs) and created_with_it)
    return obs.previous.get("stage_id") != obs.current.get("stage_id") or obs.previous.get(
        "stage_change_time"
    ) != obs.current.get("stage_change_time")


def _won(obs: Observation) -> bool:
    return became(obs, "status", "won", "won_time")


def _lost(obs: Observation) -> bool:
    return became(obs, "status", "lost", "lost_time")


def _became_deleted(obs: Observation) -> bool:
    if not _deleted(obs):
        return False
    if obs.previous is None:
        return at_or_after(obs.current, "update_time", obs.start)
    return obs.previous.get("status") != "deleted" and obs.previous.get("is_deleted") is not True


TRIGGERS = (
    Trigger("deal.added", DEALS, "added", created_since_start, payload=payloads.DEAL_V2),
    Trigger("deal.added.legacy", DEALS, "added", created_since_start, payload=payloads.DEAL_LEGACY),
    Trigger("deal.updated", DEALS, "change", _updated, payload=payloads.DEAL_V2),
    Trigger(
        "deal.stage_changed",
        DEALS,
        "change",
        _stage_changed,
        payload=payloads.DEAL_V2,
        always_previous=("stage_id",),
    ),
    Trigger("deal.won", DEALS, "change", _won, payload=payloads.DEAL_V2),
    Trigger("deal.lost", DEALS, "change", _lost, payload=payloads.DEAL_V2),
    Trigger("deal.deleted", DEALS, "change", _became_deleted, payload=payloads.DEAL_V2),
)
