"""Building an event from a firing (`polling.events`) and each trigger's `Payload`, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon import payloads, triggers
from daemon.payloads import envelope
from daemon.pipedrive.lookups import Lookups
from daemon.polling import change_feed, events
from daemon.triggers.filters import Filter
from tests.unit.test_custom_fields import DEALS as DEAL_CATALOG
from tests.unit.test_custom_fields import PRIORITY
from tests.unit.test_payloads import DEAL, LOOKUPS

NOW = datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=UTC)
START = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = envelope.Origin(7700001, "a" * 32)


def firing(
    trigger: str,
    current: dict[str, Any],
    previous: dict[str, Any] | None = None,
    *,
    custom: bool = False,
) -> change_feed.Firing:
    reader = change_feed.Reader(
        "sub", triggers.get(trigger), Filter(()), START, None, START, include_custom_fields=custom
    )
    return change_feed.Firing(reader, str(current["id"]), 2, current, previous, "lineage")


@pytest.mark.parametrize(
    ("trigger", "payload"),
    [
        ("deal.added", payloads.DEAL_V2),
        ("deal.added.legacy", payloads.DEAL_LEGACY),
        ("deal.stage_changed", payloads.DEAL_V2),
        ("activity.done", payloads.ACTIVITY),
        ("person.updated", payloads.PASSTHROUGH),
        ("lead.added", payloads.PASSTHROUGH),
    ],
)
def test_each_trigger_names_its_payload(trigger: str, payload: payloads.Payload) -> None:
    assert triggers.get(trigger).payload is payload


def test_payloads_name_their_schema() -> None:
    schemas = {p.schema for p in (payloads.DEAL_V2, payloads.DEAL_LEGACY, payloads.ACTIVITY)}
    assert schemas == {"DealResponseV2", "DealResponse", "ActivityResponse"}
    assert payloads.PASSTHROUGH.schema is None
    assert payloads.PASSTHROUGH.data({"id": 1}, Lookups.empty()) == {"id": 1}


def test_an_addition_has_the_addition_id_and_no_previous() -> None:
    event = events.event(firing("deal.added", DEAL), ORIGIN, LOOKUPS, None, NOW)
    assert event.event_id == ORIGIN.addition("sub", "deal.added", "42")
    assert (event.subscription, event.event_type, event.item_id, event.error) == (
        "sub",
        "deal.added",
        "42",
        None,
    )
    body = json.loads(event.body)
    assert body["data"] == payloads.DEAL_V2.data(DEAL, LOOKUPS)
    assert "previous" not in body


def test_a_change_carries_what_differs_and_what_the_trigger_always_carries() -> None:
    before = {**DEAL, "title": "Old title"}
    event = events.event(firing("deal.stage_changed", DEAL, before), ORIGIN, LOOKUPS, None, NOW)
    assert event.event_id == ORIGIN.change("sub", "deal.stage_changed", "42", "lineage")
    assert json.loads(event.body)["previous"] == {"title": "Old title", "stage_id": 3}


def test_custom_fields_only_for_a_subscription_that_asks() -> None:
    item = {**DEAL, "custom_fields": {PRIORITY: 2}}
    plain = events.event(firing("deal.added", item), ORIGIN, LOOKUPS, DEAL_CATALOG, NOW)
    asked = events.event(
        firing("deal.added", item, custom=True), ORIGIN, LOOKUPS, DEAL_CATALOG, NOW
    )
    assert "custom_fields" not in json.loads(plain.body)["data"]
    assert json.loads(asked.body)["data"]["custom_fields"] != {}


def test_the_replay_builds_the_same_body_as_the_poller() -> None:
    before = {**DEAL, "title": "Old title"}
    made = events.event(firing("deal.updated", DEAL, before), ORIGIN, LOOKUPS, None, NOW)
    again = events.body(triggers.get("deal.updated"), "sub", DEAL, before, LOOKUPS, None, NOW)
    assert again == made.body


def test_an_unmappable_item_is_a_dead_letter_under_its_own_id() -> None:
    broken = {**DEAL, "add_time": "soon"}
    fired = firing("deal.added", broken)
    with pytest.raises(ValueError) as caught:
        events.event(fired, ORIGIN, LOOKUPS, None, NOW)
    letter = events.unmappable(fired, ORIGIN, caught.value, NOW)
    assert letter.event_id == ORIGIN.unreadable("sub", "deal.added", envelope.raw_json(broken))
    assert letter.error is not None and letter.error.startswith("cannot map item 42: ")
    assert json.loads(letter.body)["data"] == broken


def test_a_rejected_item_keeps_at_most_64_characters_of_its_id() -> None:
    reader = firing("deal.added", DEAL).reader
    item = {"id": "x" * 80}
    letter = events.rejected(change_feed.Rejected(reader, item, "id: bad"), ORIGIN, NOW)
    assert letter.item_id == "x" * 64
    assert letter.error == "cannot read a listed deals item: id: bad"
    assert letter.event_id == ORIGIN.unreadable("sub", "deal.added", envelope.raw_json(item))


def test_the_legacy_id_has_a_version_only_for_a_change() -> None:
    assert events.legacy_id(firing("deal.added", DEAL)) == envelope.legacy_id(
        "sub", "deal.added", "42", None
    )
    assert events.legacy_id(firing("deal.won", DEAL)) == envelope.legacy_id(
        "sub", "deal.won", "42", 2
    )
