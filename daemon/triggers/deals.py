"""Deal triggers: added (v2 and legacy shapes), updated, stage changed, won, lost, deleted."""

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


def _v2(
    name: str,
    kind: Literal["added", "change"],
    fires: Callable[[Observation], bool],
    always_previous: tuple[str, ...] = (),
) -> Trigger:
    return Trigger(
        name=name,
        object=DEALS,
        kind=kind,
        fires=fires,
        mapper=shapes.deal_v2,
        needs=lookups.needed_for_deals,
        schema="DealResponseV2",
        always_previous=always_previous,
    )


TRIGGERS = (
    _v2("deal.added", "added", created_since_start),
    Trigger(
        name="deal.added.legacy",
        object=DEALS,
        kind="added",
        fires=created_since_start,
        mapper=shapes.deal_legacy,
        needs=lookups.needed_for_deals,
        schema="DealResponse",
    ),
    _v2("deal.updated", "change", _updated),
    _v2("deal.stage_changed", "change", _stage_changed, always_previous=("stage_id",)),
    _v2("deal.won", "change", _won),
    _v2("deal.lost", "change", _lost),
    _v2("deal.deleted", "change", _became_deleted),
)
