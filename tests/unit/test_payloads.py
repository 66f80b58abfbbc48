"""Pipedrive v2 objects map to the connector's schemas exactly, path for path and type for type."""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from typing import Any

import pytest
import yaml

from daemon.payloads import shapes
from daemon.pipedrive.lookups import Lookups
from tests.schema_check import SHARED_DIR, assert_matches_schema, leaf_paths, schema_fields

V2_SPEC = SHARED_DIR / "pipedrive-openapi" / "pipedrive-v2.2026-08-18.yaml"

# Fields the mapping can never fill from API v2 (docs/payloads.md says why).
ALWAYS_NULL = {
    "DealResponseV2": {"reference_activities_count"},
    "DealResponse": {"reference_activities_count"},
    "ActivityResponse": {"gcal_event_id", "google_calendar_id"},
    "StageResponse": set(),
}

# Null only because the fixture's deal is open and its activity not done, as Pipedrive sends them.
NULL_IN_FIXTURE = {
    "DealResponseV2": {"lost_reason", "close_time"},
    "DealResponse": {"lost_reason", "close_time"},
    "ActivityResponse": {"marked_as_done_time"},
    "StageResponse": set(),
}

# Shaped like the v2 spec's examples (GET /api/v2/deals with include_fields, /activities,
# /stages, /persons, /organizations) and the v1 GET /v1/users example.
DEAL: dict[str, Any] = {
    "id": 42,
    "title": "Acme rollout",
    "creator_user_id": 1,
    "owner_id": 2,
    "value": 1250.5,
    "person_id": 7,
    "org_id": 9,
    "stage_id": 3,
    "pipeline_id": 1,
    "currency": "EUR",
    "archive_time": None,
    "add_time": "2026-11-24T06:36:08Z",
    "update_time": "2026-11-24T07:00:00Z",
    "stage_change_time": "2026-11-24T06:40:00Z",
    "status": "open",
    "is_archived": False,
    "is_deleted": False,
    "probability": 90,
    "lost_reason": None,
    "visible_to": 3,
    "close_time": None,
    "won_time": None,
    "lost_time": None,
    "local_won_date": None,
    "local_lost_date": None,
    "local_close_date": None,
    "expected_close_date": "2026-12-31",
    "label_ids": [1, 2],
    "origin": "ManuallyCreated",
    "origin_id": None,
    "channel": 52,
    "channel_id": "Jun23 Billboards",
    "acv": None,
    "arr": None,
    "mrr": None,
    "custom_fields": {},
    "next_activity_id": 501,
    "last_activity_id": 500,
    "products_count": 2,
    "files_count": 0,
    "notes_count": 1,
    "followers_count": 1,
    "email_messages_count": 3,
    "activities_count": 2,
    "done_activities_count": 1,
    "undone_activities_count": 1,
    "participants_count": 1,
}

ACTIVITY: dict[str, Any] = {
    "id": 501,
    "subject": "Demo call",
    "type": "call",
    "owner_id": 2,
    "creator_user_id": 1,
    "is_deleted": False,
    "add_time": "2026-11-24T06:50:00Z",
    "update_time": "2026-11-24T06:55:00Z",
    "deal_id": 42,
    "lead_id": None,
    "person_id": 7,
    "org_id": 9,
    "project_id": None,
    "due_date": "2026-11-25",
    "due_time": "15:00:00",
    "duration": "01:30:00",
    "busy": True,
    "done": False,
    "marked_as_done_time": None,
    "location": None,
    "participants": [{"person_id": 7, "primary": True}],
    "conference_meeting_client": None,
    "conference_meeting_url": None,
    "conference_meeting_id": None,
    "public_description": "",
    "priority": 263,
    "note": "<p>Bring the contract</p>",
}

LAST_ACTIVITY: dict[str, Any] = {
    **ACTIVITY,
    "id": 500,
    "subject": "Intro",
    "due_date": "2026-11-20",
    "done": True,
    "marked_as_done_time": "2026-11-20T10:00:00Z",
}

STAGE: dict[str, Any] = {
    "id": 3,
    "order_nr": 2,
    "name": "Proposal made",
    "is_deleted": False,
    "deal_probability": 100,
    "pipeline_id": 1,
    "is_deal_rot_enabled": True,
    "days_to_rotten": 2,
    "add_time": "2024-01-01T00:00:00Z",
    "update_time": "2024-01-01T00:00:00Z",
}


def _user(ident: int, name: str) -> dict[str, Any]:
    return {
        "id": ident,
        "name": name,
        "email": f"{name.split()[0].lower()}@example.com",
        "active_flag": True,
        "is_deleted": False,
        "timezone_name": "Europe/Berlin",
    }


LOOKUPS = Lookups(
    users={1: _user(1, "John Doe"), 2: _user(2, "Jane Roe")},
    persons={7: {"id": 7, "name": "Pat Buyer", "org_id": 9, "emails": [], "is_deleted": False}},
    organizations={9: {"id": 9, "name": "Acme Ltd", "owner_id": 2, "is_deleted": False}},
    stages={3: STAGE},
    deals={42: DEAL},
    activities={500: LAST_ACTIVITY, 501: ACTIVITY},
)

EXPECTED_DEAL_V2: dict[str, Any] = {
    "id": 42,
    "creator_user_id": {"id": 1, "name": "John Doe", "email": "john@example.com"},
    "user_id": {"id": 2, "name": "Jane Roe", "email": "jane@example.com"},
    "person_id": {"name": "Pat Buyer", "value": 7},
    "org_id": {"name": "Acme Ltd", "value": 9},
    "status": "open",
    "title": "Acme rollout",
    "value": 1250.5,
    "currency": "EUR",
    "add_time": "2026-11-24T06:36:08.000Z",
    "update_time": "2026-11-24T07:00:00.000Z",
    "stage_id": 3,
    "stage_change_time": "2026-11-24T06:40:00.000Z",
    "active": True,
    "deleted": False,
    "next_activity_date": "2026-11-25",
    "next_activity_time": "2026-11-25T15:00:00.000Z",
    "next_activity_id": 501,
    "last_activity_id": 500,
    "last_activity_date": "2026-11-20",
    "lost_reason": None,
    "visible_to": "3",
    "close_time": None,
    "pipeline_id": 1,
    "products_count": 2,
    "files_count": 0,
    "notes_count": 1,
    "followers_count": 1,
    "email_messages_count": 3,
    "activities_count": 2,
    "done_activities_count": 1,
    "undone_activities_count": 1,
    "reference_activities_count": None,
    "participants_count": 1,
    "expected_close_date": "2026-12-31",
    "next_activity_subject": "Demo call",
    "next_activity_type": "call",
    "next_activity_duration": "01:30:00",
    "next_activity_note": "<p>Bring the contract</p>",
}

EXPECTED_ACTIVITY: dict[str, Any] = {
    "id": 501,
    "user_id": 2,
    "done": False,
    "type": "call",
    "due_date": "2026-11-25",
    "due_time": "15:00",
    "duration": "01:30",
    "subject": "Demo call",
    "deal_id": 42,
    "deal_title": "Acme rollout",
    "org_id": 9,
    "org_name": "Acme Ltd",
    "person_id": 7,
    "person_name": "Pat Buyer",
    "add_time": "2026-11-24T06:50:00.000Z",
    "update_time": "2026-11-24T06:55:00.000Z",
    "marked_as_done_time": None,
    "gcal_event_id": None,
    "google_calendar_id": None,
    "note": "<p>Bring the contract</p>",
    "assigned_to_user_id": 2,
    "created_by_user_id": 1,
    "owner_name": "Jane Roe",
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(base)
    changed.update(changes)
    return changed


def _without(base: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in keys}


def _map(schema: str, obj: dict[str, Any], lookups: Lookups = LOOKUPS) -> dict[str, Any]:
    if schema == "DealResponseV2":
        return shapes.deal_v2(obj, lookups)
    if schema == "DealResponse":
        return shapes.deal_legacy(obj, lookups)
    if schema == "ActivityResponse":
        return shapes.activity(obj, lookups)
    return shapes.stage(obj)


FULL_INPUTS = {
    "DealResponseV2": DEAL,
    "DealResponse": DEAL,
    "ActivityResponse": ACTIVITY,
    "StageResponse": STAGE,
}

# The least Pipedrive can send that still maps: everything else comes out null.
MINIMAL_INPUTS: dict[str, dict[str, Any]] = {
    "DealResponseV2": {"id": 1, "add_time": "2026-11-24T06:36:08Z"},
    "DealResponse": {"id": 1, "add_time": "2026-11-24T06:36:08Z"},
    "ActivityResponse": {"id": 1, "add_time": "2026-11-24T06:36:08Z"},
    "StageResponse": {"id": 1},
}
NEVER_NULL = {"id", "add_time"}


@functools.cache
def _v2_spec() -> dict[str, Any]:
    with V2_SPEC.open() as f:
        spec: dict[str, Any] = yaml.load(f, Loader=yaml.CSafeLoader)
    return spec


# --- the contract: paths, types, formats -----------------------------------------------------


@pytest.mark.parametrize("schema", list(FULL_INPUTS))
def test_full_object_matches_schema_paths_and_types(schema: str) -> None:
    out = _map(schema, FULL_INPUTS[schema])
    assert set(leaf_paths(out, schema)) == set(schema_fields(schema))
    assert_matches_schema(out, schema)


@pytest.mark.parametrize("schema", list(FULL_INPUTS))
def test_full_object_is_null_only_where_api_v2_has_nothing(schema: str) -> None:
    out = leaf_paths(_map(schema, FULL_INPUTS[schema]), schema)
    nulls = {path for path, value in out.items() if value is None}
    assert nulls == ALWAYS_NULL[schema] | NULL_IN_FIXTURE[schema]


@pytest.mark.parametrize("schema", list(MINIMAL_INPUTS))
def test_minimal_object_matches_schema_with_nulls(schema: str) -> None:
    out = _map(schema, MINIMAL_INPUTS[schema], Lookups.empty())
    assert_matches_schema(out, schema)
    flat = leaf_paths(out, schema)
    assert {p for p, v in flat.items() if v is not None} == NEVER_NULL & set(flat)


def test_deal_v2_maps_every_field() -> None:
    assert shapes.deal_v2(DEAL, LOOKUPS) == EXPECTED_DEAL_V2


def test_deal_legacy_is_v2_plus_stage_name() -> None:
    out = shapes.deal_legacy(DEAL, LOOKUPS)
    assert _without(out, "stage_name") == EXPECTED_DEAL_V2
    assert out["stage_name"] == "Proposal made"


def test_output_keys_follow_schema_order() -> None:
    for schema, obj in FULL_INPUTS.items():
        top = list(dict.fromkeys(p.split(".")[0] for p in schema_fields(schema)))
        assert list(_map(schema, obj)) == top, schema


def test_activity_maps_every_field() -> None:
    assert shapes.activity(ACTIVITY, LOOKUPS) == EXPECTED_ACTIVITY


def test_stage_maps_id_and_name() -> None:
    assert shapes.stage(STAGE) == {"id": 3, "name": "Proposal made"}


# --- conversions, table-driven ------------------------------------------------------------------

INSTANTS = [
    ("2026-11-24T06:36:08Z", "2026-11-24T06:36:08.000Z"),
    ("2026-11-24T06:36:08.000Z", "2026-11-24T06:36:08.000Z"),
    ("2026-11-24T06:36:08.1234567Z", "2026-11-24T06:36:08.123Z"),
    ("2026-11-24T08:36:08+02:00", "2026-11-24T06:36:08.000Z"),
    ("2026-11-24 06:36:08", "2026-11-24T06:36:08.000Z"),  # v1 style, documented as UTC
    ("2026-01-01T00:30:00-01:00", "2026-01-01T01:30:00.000Z"),
]


@pytest.mark.parametrize(("given", "expected"), INSTANTS)
@pytest.mark.parametrize("field", ["add_time", "update_time", "stage_change_time", "close_time"])
def test_deal_times_become_millisecond_utc(field: str, given: str, expected: str) -> None:
    assert shapes.deal_v2(_with(DEAL, **{field: given}), LOOKUPS)[field] == expected


@pytest.mark.parametrize(("given", "expected"), INSTANTS)
@pytest.mark.parametrize("field", ["add_time", "update_time", "marked_as_done_time"])
def test_activity_times_become_millisecond_utc(field: str, given: str, expected: str) -> None:
    assert shapes.activity(_with(ACTIVITY, **{field: given}), LOOKUPS)[field] == expected


@pytest.mark.parametrize(
    ("field", "given", "expected"),
    [
        ("due_time", "15:00:00", "15:00"),
        ("due_time", "09:05", "09:05"),
        ("due_time", "23:59:59", "23:59"),
        ("due_time", None, None),
        ("due_time", "", None),
        ("duration", "01:30:00", "01:30"),
        ("duration", "00:15", "00:15"),
        ("duration", "36:00:00", "36:00"),
        ("duration", None, None),
        ("due_date", "2026-02-28", "2026-02-28"),
        ("due_date", None, None),
        ("done", True, True),
        ("done", False, False),
    ],
)
def test_activity_field_conversions(field: str, given: Any, expected: Any) -> None:
    out = shapes.activity(_with(ACTIVITY, **{field: given}), LOOKUPS)
    assert out[field] == expected
    assert_matches_schema(out, "ActivityResponse")


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"visible_to": 1}, "visible_to", "1"),
        ({"visible_to": 7}, "visible_to", "7"),
        ({"visible_to": None}, "visible_to", None),
        ({"status": "open"}, "active", True),
        ({"status": "won"}, "active", False),
        ({"status": "lost", "lost_reason": "Budget"}, "lost_reason", "Budget"),
        ({"status": "lost"}, "active", False),
        ({"status": None}, "active", None),
        ({"is_deleted": True, "status": "deleted"}, "deleted", True),
        ({"is_deleted": False}, "deleted", False),
        ({"value": 0}, "value", 0),
        ({"value": 200}, "value", 200),
        ({"expected_close_date": None}, "expected_close_date", None),
        ({"person_id": None}, "person_id", None),
        ({"org_id": None}, "org_id", None),
        ({"owner_id": None}, "user_id", None),
        ({"person_id": 404}, "person_id", {"name": None, "value": 404}),
        ({"org_id": 404}, "org_id", {"name": None, "value": 404}),
        ({"owner_id": 404}, "user_id", {"id": 404, "name": None, "email": None}),
        ({"creator_user_id": 404}, "creator_user_id", {"id": 404, "name": None, "email": None}),
        ({"last_activity_id": None}, "last_activity_date", None),
        ({"last_activity_id": 404}, "last_activity_date", None),
        ({"last_activity_id": 404}, "last_activity_id", 404),
    ],
)
def test_deal_field_conversions(changes: dict[str, Any], field: str, expected: Any) -> None:
    out = shapes.deal_v2(_with(DEAL, **changes), LOOKUPS)
    assert out[field] == expected
    assert_matches_schema(out, "DealResponseV2")


NEXT_FIELDS = [
    "next_activity_date",
    "next_activity_time",
    "next_activity_subject",
    "next_activity_type",
    "next_activity_duration",
    "next_activity_note",
]


@pytest.mark.parametrize(
    ("next_changes", "expected"),
    [
        (
            {},
            {
                "next_activity_date": "2026-11-25",
                "next_activity_time": "2026-11-25T15:00:00.000Z",
                "next_activity_subject": "Demo call",
                "next_activity_type": "call",
                "next_activity_duration": "01:30:00",
                "next_activity_note": "<p>Bring the contract</p>",
            },
        ),
        ({"due_time": "09:30"}, {"next_activity_time": "2026-11-25T09:30:00.000Z"}),
        # An all-day activity has no time: inventing midnight would move it.
        ({"due_time": None}, {"next_activity_date": "2026-11-25", "next_activity_time": None}),
        ({"due_date": None}, {"next_activity_date": None, "next_activity_time": None}),
        ({"duration": "00:30"}, {"next_activity_duration": "00:30:00"}),
        ({"duration": None}, {"next_activity_duration": None}),
        ({"note": None}, {"next_activity_note": None}),
    ],
)
def test_next_activity_fields_come_from_the_next_activity(
    next_changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    lookups = replace(LOOKUPS, activities={501: _with(ACTIVITY, **next_changes)})
    out = shapes.deal_v2(DEAL, lookups)
    assert {name: out[name] for name in expected} == expected
    assert_matches_schema(out, "DealResponseV2")


def test_next_activity_missing_from_lookups_gives_null_details_but_keeps_id() -> None:
    out = shapes.deal_v2(DEAL, replace(LOOKUPS, activities={}))
    assert out["next_activity_id"] == 501
    assert all(out[name] is None for name in NEXT_FIELDS)
    assert out["last_activity_date"] is None


def test_deal_fetched_without_include_fields_has_null_counts_and_activity_ids() -> None:
    bare = _without(DEAL, *shapes.DEAL_INCLUDE_FIELDS.split(","))
    out = shapes.deal_v2(bare, LOOKUPS)
    assert all(out[name] is None for name in shapes.DEAL_INCLUDE_FIELDS.split(","))
    assert_matches_schema(out, "DealResponseV2")


def test_missing_lookups_give_null_names_never_errors() -> None:
    deal = shapes.deal_legacy(DEAL, Lookups.empty())
    assert deal["user_id"] == {"id": 2, "name": None, "email": None}
    assert deal["person_id"] == {"name": None, "value": 7}
    assert deal["org_id"] == {"name": None, "value": 9}
    assert deal["stage_name"] is None
    act = shapes.activity(ACTIVITY, Lookups.empty())
    assert [act[k] for k in ("deal_title", "org_name", "person_name", "owner_name")] == [None] * 4
    assert (act["deal_id"], act["org_id"], act["person_id"]) == (42, 9, 7)
    assert_matches_schema(deal, "DealResponse")
    assert_matches_schema(act, "ActivityResponse")


def test_activity_without_links_has_null_ids_and_names() -> None:
    bare = _with(ACTIVITY, deal_id=None, org_id=None, person_id=None, participants=[])
    out = shapes.activity(bare, LOOKUPS)
    for key in ("deal_id", "deal_title", "org_id", "org_name", "person_id", "person_name"):
        assert out[key] is None, key


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "obj", "message"),
    [
        ("DealResponseV2", _without(DEAL, "id"), "deal: field 'id': missing"),
        ("DealResponseV2", _with(DEAL, id="42"), "deal: field 'id': expected an integer, got '42'"),
        ("DealResponseV2", _with(DEAL, id=True), "deal: field 'id': expected an integer, got True"),
        ("DealResponseV2", _without(DEAL, "add_time"), "deal 42: field 'add_time': missing"),
        ("DealResponseV2", _with(DEAL, add_time="yesterday"), "deal 42: field 'add_time': "),
        ("DealResponseV2", _with(DEAL, add_time="2026-11-24"), "deal 42: field 'add_time': "),
        ("DealResponseV2", _with(DEAL, add_time="2026-13-24T00:00:00Z"), "field 'add_time'"),
        ("DealResponseV2", _with(DEAL, update_time=5), "deal 42: field 'update_time': expected"),
        ("DealResponseV2", _with(DEAL, value="100"), "deal 42: field 'value': expected a number"),
        ("DealResponseV2", _with(DEAL, owner_id="2"), "deal 42: field 'owner_id': expected an"),
        ("DealResponseV2", _with(DEAL, visible_to="everyone"), "deal 42: field 'visible_to': "),
        ("DealResponseV2", _with(DEAL, is_deleted="no"), "deal 42: field 'is_deleted': expected"),
        ("DealResponseV2", _with(DEAL, expected_close_date="31/12/2026"), "'expected_close_date'"),
        ("DealResponseV2", _with(DEAL, products_count=1.5), "deal 42: field 'products_count'"),
        ("DealResponse", _with(DEAL, add_time=None), "deal 42: field 'add_time': missing"),
        ("ActivityResponse", _without(ACTIVITY, "id"), "activity: field 'id': missing"),
        ("ActivityResponse", _with(ACTIVITY, add_time="nope"), "activity 501: field 'add_time'"),
        ("ActivityResponse", _with(ACTIVITY, due_time="25:00"), "activity 501: field 'due_time'"),
        ("ActivityResponse", _with(ACTIVITY, due_time="3pm"), "activity 501: field 'due_time'"),
        ("ActivityResponse", _with(ACTIVITY, duration="1h"), "activity 501: field 'duration'"),
        ("ActivityResponse", _with(ACTIVITY, done=1), "activity 501: field 'done': expected a"),
        ("ActivityResponse", _with(ACTIVITY, due_date="2026-02-30"), "field 'due_date'"),
        ("StageResponse", {"name": "x"}, "stage: field 'id': missing"),
        ("StageResponse", {"id": 3, "name": 5}, "stage 3: field 'name': expected a string"),
    ],
)
def test_malformed_object_raises_payload_error_naming_object_and_field(
    schema: str, obj: dict[str, Any], message: str
) -> None:
    with pytest.raises(shapes.PayloadError) as caught:
        _map(schema, obj)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_payload_error_carries_its_data() -> None:
    with pytest.raises(shapes.PayloadError) as caught:
        shapes.deal_v2(_with(DEAL, add_time="soon"), LOOKUPS)
    error = caught.value
    assert (error.obj, error.field) == ("deal 42", "add_time")
    assert "'soon'" in error.problem


def test_malformed_related_object_is_named_with_its_role() -> None:
    bad_next = replace(LOOKUPS, activities={501: _with(ACTIVITY, due_time="x")})
    with pytest.raises(shapes.PayloadError, match=r"activity 501 \(next activity of deal 42\)"):
        shapes.deal_v2(DEAL, bad_next)
    bad_user = replace(LOOKUPS, users={2: {"id": 2, "name": ["Jane"]}})
    with pytest.raises(shapes.PayloadError, match=r"user 2 \(owner of deal 42\): field 'name'"):
        shapes.deal_v2(DEAL, bad_user)


# --- agreement with Pipedrive's own v2 spec ------------------------------------------------------


def test_include_fields_are_all_offered_by_get_deals() -> None:
    spec = _v2_spec()
    for path in ("/deals", "/deals/{id}"):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        offered = set(params["include_fields"]["schema"]["enum"])
        assert set(shapes.DEAL_INCLUDE_FIELDS.split(",")) <= offered, path


def test_fixtures_use_only_fields_the_v2_spec_defines() -> None:
    spec = _v2_spec()
    schemas = spec["components"]["schemas"]
    deals_get = spec["paths"]["/deals"]["get"]
    example = deals_get["responses"]["200"]["content"]["application/json"]["example"]["data"][0]
    include = {p["name"]: p for p in deals_get["parameters"]}["include_fields"]["schema"]["enum"]
    deal_fields = set(schemas["Deal"]["properties"]) | set(example) | set(include)
    assert set(DEAL) <= deal_fields
    assert set(ACTIVITY) <= set(schemas["ActivityItem"]["properties"])
    stages = spec["paths"]["/stages"]["get"]["responses"]["200"]["content"]["application/json"]
    assert set(STAGE) == set(stages["example"]["data"][0])


def test_fields_mapped_to_null_really_are_absent_from_api_v2() -> None:
    spec = _v2_spec()
    schemas = spec["components"]["schemas"]
    deals_get = spec["paths"]["/deals"]["get"]
    include = {p["name"]: p for p in deals_get["parameters"]}["include_fields"]["schema"]["enum"]
    assert "reference_activities_count" not in set(schemas["Deal"]["properties"]) | set(include)
    activity_fields = set(schemas["ActivityItem"]["properties"])
    assert {"gcal_event_id", "google_calendar_id"}.isdisjoint(activity_fields)


# --- the shared checker rejects what it should (end-to-end tests rely on it) -------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("title"), "missing title"),
        (lambda d: d.update(owner_name="Jane"), "unexpected owner_name"),
        (lambda d: d["user_id"].pop("email"), "missing user_id.email"),
        (lambda d: d["user_id"].update(pic_hash=None), "unexpected user_id.pic_hash"),
        (lambda d: d.update(person_id=7), "unexpected person_id"),
        (lambda d: d.update(visible_to=3), "visible_to: expected string"),
        (lambda d: d.update(active=1), "active: expected boolean"),
        (lambda d: d.update(id=True), "id: expected integer"),
        (lambda d: d.update(add_time="2026-11-24T06:36:08Z"), "add_time: expected format"),
        (lambda d: d.update(expected_close_date="2026-12-31T00:00:00Z"), "expected format"),
        (lambda d: d.update(next_activity_time="15:00:00"), "next_activity_time: expected format"),
    ],
)
def test_schema_check_rejects_departures(change: Any, problem: str) -> None:
    out = shapes.deal_v2(DEAL, LOOKUPS)
    change(out)
    with pytest.raises(AssertionError, match=problem):
        assert_matches_schema(out, "DealResponseV2")


def test_schema_check_rejects_activity_clock_with_seconds() -> None:
    out = _with(EXPECTED_ACTIVITY, due_time="15:00:00")
    with pytest.raises(AssertionError, match="due_time: expected format HH:MM"):
        assert_matches_schema(out, "ActivityResponse")
