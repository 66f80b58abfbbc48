"""Pipedrive's webhook bodies read as nudges (`instant.nudges`), table-tested; and the memory
of event ids, bounded whatever a flood sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from daemon import triggers
from daemon.instant import nudges
from daemon.instant.nudges import Nudge


def body(**meta: object) -> bytes:
    return json.dumps({"meta": meta, "data": {"id": 1}, "previous": None}).encode()


def test_every_object_type_the_triggers_poll_has_its_pipedrive_entity() -> None:
    assert set(nudges.OBJECT_TYPES.values()) == set(triggers.OBJECT_TYPES)


def test_a_v2_body_becomes_a_nudge_for_its_feed() -> None:
    meta = nudges.parse(
        body(
            action="change",
            entity="activity",
            entity_id="42",
            id="5a0b6f9e-0000-4000-8000-000000000001",
            timestamp="2026-03-04T05:06:07.000Z",
            version="2.0",
        )
    )
    assert (meta.object_type, meta.looked_up) == ("activities", None)
    assert meta.nudge("main", "activities") == Nudge(
        "main",
        "activities",
        "change",
        "42",
        "5a0b6f9e-0000-4000-8000-000000000001",
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("entity", "object_type", "looked_up"),
    [
        ("deal", "deals", "deals"),
        ("person", "persons", "persons"),
        ("user", None, "users"),
        ("stage", None, "stages"),
        ("product", None, None),
    ],
)
def test_an_entity_maps_to_its_feed_and_to_the_lookups_it_makes_stale(
    entity: str, object_type: str | None, looked_up: str | None
) -> None:
    meta = nudges.parse(body(action="change", entity=entity, entity_id="7"))
    assert (meta.object_type, meta.looked_up) == (object_type, looked_up)


@pytest.mark.parametrize(
    ("meta", "object_type", "entity_id", "timestamp"),
    [
        ({"entity": "product"}, None, None, None),  # no feed reads products
        ({"entity": "user"}, None, None, None),
        ({"entity": "lead", "entity_id": "0e7c-uuid"}, "leads", "0e7c-uuid", None),
        ({"entity": "deal", "entity_id": 7}, "deals", "7", None),
        (
            {"entity": "deal", "timestamp": 1767225600},
            "deals",
            None,
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
        (
            {"entity": "deal", "timestamp": "1767225600"},
            "deals",
            None,
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
        ({"entity": "deal", "timestamp": "yesterday"}, "deals", None, None),  # not malformed
        ({"entity": "deal", "entity_id": True}, "deals", None, None),
    ],
)
def test_what_each_meta_says(
    meta: dict[str, object],
    object_type: str | None,
    entity_id: str | None,
    timestamp: datetime | None,
) -> None:
    parsed = nudges.parse(body(action="create", **meta))
    assert (parsed.object_type, parsed.entity_id, parsed.timestamp) == (
        object_type,
        entity_id,
        timestamp,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "body is not JSON"),
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[" * 100_000, "body is not JSON"),
        (b"[1, 2]", "body has no meta object"),
        (b'{"meta": "x"}', "body has no meta object"),
        (b'{"data": {}}', "body has no meta object"),
        (b'{"meta": {"entity": "deal"}}', "meta has no entity or action"),
        (b'{"meta": {"action": "create", "entity": 5}}', "meta has no entity or action"),
    ],
)
def test_malformed_bodies_say_why_without_quoting_them(raw: bytes, reason: str) -> None:
    with pytest.raises(nudges.Malformed) as raised:
        nudges.parse(raw)
    assert str(raised.value) == reason


def test_seen_remembers_ids_per_account_and_forgets_the_oldest() -> None:
    seen = nudges.Seen(size=3)
    assert seen.first_time("main", "a")
    assert seen.first_time("other", "a")  # another account's event
    assert not seen.first_time("main", "a")
    assert seen.first_time("main", "b")
    assert seen.first_time("main", "c")  # "other"/"a" goes: the least recently seen
    assert len(seen) == 3
    assert seen.first_time("other", "a")  # forgotten, so new again; "main"/"a" goes now
    assert not seen.first_time("main", "c")
    assert seen.first_time("main", "a")


def test_seen_stays_bounded_under_a_flood() -> None:
    seen = nudges.Seen(size=1000)
    for number in range(50_000):
        seen.first_time("main", f"id-{number}")
    assert len(seen) == 1000
