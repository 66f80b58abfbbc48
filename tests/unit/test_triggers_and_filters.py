"""The trigger registry, its rules, filters and one page's decision, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon import config, triggers
from daemon.model.items import StoredItem
from daemon.polling import change_feed
from daemon.triggers import filters
from daemon.triggers.base import Observation, UnmappableItem, item_key, moment

START = datetime(2026, 12, 1, 12, 0, 0, 500000, tzinfo=UTC)
DEALS = triggers.OBJECT_TYPES["deals"]


def deal(ident: int = 10, **fields: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "title": "T",
        "status": "open",
        "stage_id": 1,
        "pipeline_id": 1,
        "label_ids": [],
        "add_time": "2026-12-01T12:00:05Z",
        "update_time": "2026-12-01T12:00:05Z",
        "stage_change_time": None,
        **fields,
    }


def fires(
    name: str, previous: dict[str, Any] | None, current: dict[str, Any], floor: int | None = 5
) -> bool:
    return triggers.get(name).fires(Observation(previous, current, START, floor))


def test_the_registry_holds_the_whole_catalog_and_each_trigger_once() -> None:
    assert {
        "deal.added", "deal.added.legacy", "deal.updated", "deal.stage_changed", "deal.won",
        "deal.lost", "deal.deleted", "activity.added", "activity.updated", "activity.done",
        "person.added", "person.updated", "organization.added", "organization.updated",
        "note.added", "lead.added", "person.deleted", "organization.deleted",
        "activity.deleted", "note.deleted", "lead.deleted",
    } == set(triggers.REGISTRY)  # fmt: skip
    assert {t.object.name for t in triggers.REGISTRY.values()} == {
        "deals", "activities", "persons", "organizations", "notes", "leads",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "previous", "current", "expected"),
    [
        ("deal.added", None, deal(), True),
        ("deal.added", None, deal(add_time="2026-11-01T00:00:00Z"), True),  # backdated, id > floor
        ("deal.added", None, deal(3, add_time="2026-11-01T00:00:00Z"), False),  # existed before
        ("deal.added", None, deal(3, add_time="2026-12-01T12:00:00Z"), True),  # the start's second
        ("deal.added", deal(), deal(title="x"), False),  # seen: an update
        ("deal.updated", None, deal(), False),  # creation is not an update
        ("deal.updated", None, deal(3, add_time="2026-11-01T00:00:00Z"), True),  # unseen, changed
        ("deal.updated", deal(), deal(title="x"), True),
        ("deal.updated", deal(), deal(status="deleted"), False),  # deleted fires deal.deleted
        ("deal.deleted", deal(), deal(status="deleted"), True),
        ("deal.deleted", deal(status="deleted"), deal(status="deleted", title="x"), False),
        ("deal.won", deal(), deal(status="won", won_time="2026-12-01T12:01:00Z"), True),
        (
            "deal.won",
            deal(status="won", won_time="a"),
            deal(status="won", won_time="a", title="x"),
            False,
        ),
        (
            "deal.won",
            deal(status="won", won_time="2026-12-01T12:01:00Z"),
            deal(status="won", won_time="2026-12-01T12:09:00Z"),
            True,
        ),  # reopened and won between polls
        (
            "deal.lost",
            None,
            deal(
                3, add_time="2026-11-01T00:00:00Z", status="lost", lost_time="2026-11-02T00:00:00Z"
            ),
            False,
        ),  # lost before the start
        (
            "deal.stage_changed",
            deal(),
            deal(stage_id=2, stage_change_time="2026-12-01T12:02:00Z"),
            True,
        ),
        (
            "deal.stage_changed",
            None,
            deal(stage_change_time="2026-12-01T12:00:05Z"),
            False,
        ),  # placed at creation
        (
            "deal.stage_changed",
            None,
            deal(3, add_time="2026-11-01T00:00:00Z", stage_change_time="2026-12-01T12:02:00Z"),
            True,
        ),
    ],
)
def test_rules(
    name: str, previous: dict[str, Any] | None, current: dict[str, Any], expected: bool
) -> None:
    assert fires(name, previous, current) is expected


def test_activity_done_fires_once_per_marking() -> None:
    undone = {
        "id": 9,
        "done": False,
        "add_time": "2026-12-01T12:00:05Z",
        "update_time": "2026-12-01T12:00:05Z",
        "marked_as_done_time": None,
    }
    done = {**undone, "done": True, "marked_as_done_time": "2026-12-01T12:03:00Z"}
    assert fires("activity.done", undone, done)
    assert not fires("activity.done", done, {**done, "subject": "edited"})


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"id": 2**64}, "outside the signed 64-bit range"),
        ({"id": "12"}, "expected an integer"),
        ({"id": True}, "expected an integer"),
    ],
)
def test_item_keys_refuse_what_cannot_be_stored(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(UnmappableItem, match=problem):
        item_key(item, DEALS)


def test_timestamps_that_are_no_instant_make_the_item_unmappable() -> None:
    with pytest.raises(UnmappableItem, match="representable"):
        moment({"add_time": "0001-01-01T00:00:00+01:00"}, "add_time")
    assert moment({"t": "2026-01-02 03:04:05"}, "t") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert moment({"t": ""}, "t") is None


def test_filter_problems_name_the_key_and_the_valid_ones() -> None:
    found = dict(filters.problems(DEALS, {"colour": "red", "stage_id": "3", "label_ids": [1, 2]}))
    assert "unknown filter key for deals" in found["colour"] and "pipeline_id" in found["colour"]
    assert "expected an integer" in found["stage_id"]
    assert "label_ids" not in found


def test_filters_match_any_alternative_and_any_label_but_no_bool_for_an_int() -> None:
    compiled = filters.compile_filter(DEALS, {"stage_id": [3, 4], "label_ids": 7})
    assert compiled.matches(deal(stage_id=4, label_ids=[1, 7]))
    assert not compiled.matches(deal(stage_id=5, label_ids=[7]))
    assert not compiled.matches(deal(stage_id=4, label_ids=[]))
    assert not filters.compile_filter(DEALS, {"stage_id": 1}).matches(deal(stage_id=True))


def test_a_filter_config_error_names_file_key_value_and_reason(tmp_path: Path) -> None:
    raw = {
        "accounts": [{"name": "main", "api_token": "t"}],
        "subscriptions": [
            {
                "name": "s",
                "account": "main",
                "trigger": "activity.done",
                "callback_url": "http://x/h",
                "filter": {"stage_id": 3, "done": "yes"},
            }
        ],
    }
    with pytest.raises(config.ConfigError) as caught:
        config.parse(raw, "c.toml", tmp_path)
    text = str(caught.value)
    assert 'subscriptions[0] ("s").filter.stage_id: unknown filter key for activities' in text
    assert 'subscriptions[0] ("s").filter.done: expected true or false' in text


def reader(position: datetime = START, **kw: Any) -> change_feed.Reader:
    return change_feed.Reader(
        name=kw.pop("name", "r"),
        trigger=triggers.get(kw.pop("trigger", "deal.updated")),
        filter=filters.compile_filter(DEALS, {}),
        start=START,
        id_floor=5,
        position=position,
    )


def test_decide_sees_a_version_once_and_numbers_changes() -> None:
    seen = deal(3, add_time="2026-11-01T00:00:00Z")
    stored = {"3": StoredItem(4, change_feed.content_hash(seen), seen, "lineage-4")}
    watermark = START + timedelta(minutes=5)
    caught_up, backfilling = reader(watermark, name="now"), reader(START, name="back")
    look_back = timedelta(seconds=60)
    same = change_feed.decide(
        [seen], stored, [caught_up, backfilling], DEALS, watermark=watermark, look_back=look_back
    )
    assert [f.reader.name for f in same.firings] == ["back"]  # only the one that had not read it
    assert same.states == [] and same.firings[0].previous is None and same.firings[0].version == 4
    edited = {**seen, "title": "new"}
    changed = change_feed.decide(
        [edited], stored, [caught_up], DEALS, watermark=watermark, look_back=look_back
    )
    assert [(f.version, f.previous) for f in changed.firings] == [(5, seen)]
    assert [s.version for s in changed.states] == [5]
    # A re-read keeps the version's lineage; a change continues it from the stored one.
    assert same.firings[0].lineage == "lineage-4"
    fifth = change_feed.lineage("lineage-4", change_feed.content_hash(edited))
    assert changed.firings[0].lineage == changed.states[0].lineage == fifth


def test_a_lineage_tells_apart_what_a_version_number_cannot() -> None:
    a, b = change_feed.content_hash(deal(3, value=1)), change_feed.content_hash(deal(3, value=2))
    first = change_feed.lineage(None, a)
    second = change_feed.lineage(first, b)
    assert change_feed.lineage(None, a) == first  # the same versions seen: the same name
    # A -> B -> A -> B: every version a new name, though two contents repeat.
    names = [first, second, change_feed.lineage(second, a)]
    names.append(change_feed.lineage(names[-1], b))
    assert len(set(names)) == 4
    # A fresh database's first version, or a restored one's next, differs from the lost one's.
    assert change_feed.lineage(None, b) not in names
    assert change_feed.lineage(first, a) not in names


def test_decide_rejects_an_unreadable_item_without_storing_it() -> None:
    page = [deal(11, update_time="soon"), deal(12)]
    decision = change_feed.decide(
        page, {}, [reader(trigger="deal.added")], DEALS, watermark=START, look_back=timedelta(0)
    )
    assert [r.item["id"] for r in decision.rejected] == [11]
    assert [s.item_id for s in decision.states] == ["12"] and decision.max_id == 12


def test_previous_holds_only_changed_fields_and_the_ones_always_carried() -> None:
    before = {"stage_id": 2, "title": "a", "value": 1}
    after = {"stage_id": 2, "title": "b", "value": 1}
    assert change_feed.previous_fields(before, after) == {"title": "a"}
    assert change_feed.previous_fields(before, after, ("stage_id",)) == {
        "title": "a",
        "stage_id": 2,
    }
