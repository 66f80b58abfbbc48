"""The sandbox against Pipedrive's own OpenAPI files: real HTTP calls, validated by openapi-core.

The spec is patched only where it contradicts the real API; each patch says why (see also
daemon/dev/sandbox/README.md, "Spec quirks"):
- properties the API leaves null (unlinked person, never-won deal, end of list) are not marked
  `nullable` in the spec;
- the v2 operations document only 200, so 400/401/404/429/500 borrow the spec's own error
  schemas (v2 `GetConvertResponse`, v1 `unathorizedResponse`), with success/error required;
- each operation also allows OAuth, which openapi-core warns about; we authenticate by token.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox, costs, gateway, seed
from daemon.dev.sandbox.v1_records import lead_uuid
from daemon.pipedrive import costs as pipedrive_costs
from tests.openapi_check import SPEC_HOST, V1_FILE, V2_FILE, each_object

TOKEN = "conformance-token"

# Properties the real API returns as null although the spec does not say `nullable`.
NULL_WHEN_UNSET = frozenset(
    {
        # deals
        "person_id", "org_id", "stage_change_time", "won_time", "lost_time",
        "expected_close_date", "first_won_time",
        # activities
        "deal_id", "lead_id", "project_id", "due_date", "due_time", "duration",
        "marked_as_done_time", "location", "conference_meeting_client",
        "conference_meeting_url", "conference_meeting_id", "public_description", "priority",
        "note",
        # persons, organizations
        "picture_id", "postal_address", "notes", "birthday", "job_title", "address",
        # lists: "will be `null` if you have reached the end of the dataset"
        "next_cursor",
        # v1 notes: the linked objects of links the note does not have
        "deal", "organization", "person", "project", "task", "task_id", "icon_url",
    }
)  # fmt: skip
# Keys served only through include_fields (the spec lists source_lead_id in the schema).
_FIELD_NAMESPACES = {"ui_visibility", "important_fields", "required_fields"}
INCLUDE_ONLY = {
    "/deals": {"source_lead_id"},
    "/activities": {"attendees"},
    "/dealFields": _FIELD_NAMESPACES,
    "/personFields": _FIELD_NAMESPACES,
    "/organizationFields": _FIELD_NAMESPACES,
    "/activityFields": {"ui_visibility"},
}
# Fixed custom field codes, so the cases' bodies can name them.
DEAL_PRIORITY = "d" * 40
DEAL_BUDGET = "b" * 40
PERSON_TIER = "e" * 40
ORG_REGION = "f" * 40
# Option ids are account-wide and in creation order: the seed's own fields take the first ones.
_SEEDED_OPTIONS = sum(len(o) for fs in seed.CUSTOM_FIELDS.values() for _, _, o in fs)
PRIORITY_LOW, PRIORITY_HIGH, TIER_GOLD, TIER_SILVER = range(
    _SEEDED_OPTIONS + 1, _SEEDED_OPTIONS + 5
)
BORROWED_STATUSES = ("400", "401", "404", "429", "500")


def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=yaml.CSafeLoader)
    return loaded


def _allow_nulls(schema: Any) -> None:
    for node in each_object(schema):
        properties = node.get("properties")
        for name, prop in properties.items() if isinstance(properties, dict) else ():
            if name in NULL_WHEN_UNSET and isinstance(prop, dict) and "$ref" not in prop:
                prop["nullable"] = True


def _required_error(schema: dict[str, Any]) -> dict[str, Any]:
    patched = copy.deepcopy(schema)
    patched["required"] = ["success", "error"]
    patched["properties"]["success"] = {"type": "boolean", "enum": [False]}
    return patched


@dataclass(frozen=True)
class Specs:
    v2: OpenAPI
    v1: OpenAPI
    raw_v2: dict[str, Any]
    raw_v1: dict[str, Any]

    def pick(self, path: str) -> tuple[OpenAPI, dict[str, Any], str]:
        """(validator, raw spec, spec path) for a sandbox path."""
        if path.startswith("/api/v2/"):
            return self.v2, self.raw_v2, path.removeprefix("/api/v2")
        return self.v1, self.raw_v1, path.removeprefix("/api/v1").removeprefix("/v1")


def _patched(raw: dict[str, Any], served: set[tuple[str, str]], errors: dict[str, Any]) -> None:
    for method, path in served:
        operation = raw["paths"][path][method]
        operation["security"] = [{"api_key": []}]
        responses = operation["responses"]
        _allow_nulls(responses)
        for status in BORROWED_STATUSES:
            if status not in responses:
                schema = errors["401" if status == "401" else "other"]
                responses[status] = {
                    "description": "borrowed",
                    "content": {"application/json": {"schema": schema}},
                }


@pytest.fixture(scope="session")
def specs() -> Specs:
    raw_v2, raw_v1 = _load(V2_FILE), _load(V1_FILE)
    originals = (copy.deepcopy(raw_v2), copy.deepcopy(raw_v1))
    error_schemas = {
        "other": _required_error(
            raw_v2["paths"]["/deals/{id}/convert/lead"]["post"]["responses"]["404"]["content"][
                "application/json"
            ]["schema"]
        ),
        "401": _required_error(
            raw_v1["paths"]["/users/me"]["get"]["responses"]["401"]["content"]["application/json"][
                "schema"
            ]
        ),
    }
    served_v2 = {
        (m.lower(), t.removeprefix("/api/v2")) for m, t in costs.TOKEN_COSTS if "/api/v2" in t
    }
    served_v1 = {(m.lower(), t.removeprefix("/v1")) for m, t in costs.TOKEN_COSTS if "/v1/" in t}
    _patched(raw_v2, served_v2, error_schemas)
    _patched(raw_v1, served_v1, error_schemas)
    config = Config(spec_validator_cls=None)
    return Specs(
        OpenAPI.from_dict(raw_v2, config=config),
        OpenAPI.from_dict(raw_v1, config=config),
        originals[0],
        originals[1],
    )


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    made = Sandbox(token=TOKEN, seed=42)
    priority = made.define_field(
        "deal", "Priority", "enum", ["Low", "High"], field_code=DEAL_PRIORITY
    )
    made.define_field("deal", "Budget", "monetary", field_code=DEAL_BUDGET)
    tier = made.define_field("person", "Tier", "set", ["Gold", "Silver"], field_code=PERSON_TIER)
    ids = [option["id"] for option in priority["options"] + tier["options"]]
    assert ids == [PRIORITY_LOW, PRIORITY_HIGH, TIER_GOLD, TIER_SILVER]
    made.define_field("organization", "Region", "varchar", field_code=ORG_REGION)
    made.define_field("activity", "Outcome", "varchar")
    made.set_custom_field("deal", 1, DEAL_PRIORITY, PRIORITY_HIGH)
    made.set_custom_field("deal", 1, DEAL_BUDGET, {"value": 2300, "currency": "EUR"})
    made.add_note("Called, <b>keen</b>", deal_id=1, person_id=1, pinned_to_deal_flag=1)
    made.add_note("Lead follow-up", org_id=2)
    made.add_lead("Inbound from web", person_id=1, value={"amount": 999, "currency": "EUR"})
    made.add_lead("Trade fair contact", organization_id=2)
    return made


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with (
        serve(sandbox.app) as server,
        httpx.Client(base_url=server.base_url, headers={"x-api-token": TOKEN}) as http,
    ):
        yield http


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # False when the request breaks the spec on purpose (a 400 case) or the spec's own
    # parameter schema contradicts its description (comma lists under an enum).
    request_valid: bool = True
    prepare: Callable[[Sandbox], None] | None = None

    @property
    def template(self) -> str:
        return pipedrive_costs.route(self.path)  # digits or a lead's UUID: `{id}`


def _low_burst(sandbox: Sandbox) -> None:
    sandbox.set_limits(burst=0)


def _fault_500(sandbox: Sandbox) -> None:
    sandbox.faults.add(status=500, count=1, path_prefix="/api/v2/")


def _delete_deal_3(sandbox: Sandbox) -> None:
    sandbox.delete_deal(3)


def _a_webhook(sandbox: Sandbox) -> None:
    """Cases may run on another worker than the one that POSTed: each makes what it needs."""
    sandbox.add_webhook("https://hooks.example.com/pd", event_object="deal", http_auth_user="u")


def _webhook_3(sandbox: Sandbox) -> None:
    while not any(hook["id"] == 3 for hook in sandbox.webhooks):
        sandbox.add_webhook("https://hooks.example.com/pd")


_MAKE: dict[str, Callable[[Sandbox], Any]] = {
    "person": lambda sandbox: sandbox.add_person("Made for a case"),
    "organization": lambda sandbox: sandbox.add_organization("Made for a case"),
    "activity": lambda sandbox: sandbox.add_activity(subject="Made for a case"),
    "note": lambda sandbox: sandbox.add_note("Made for a case", person_id=1),
}


def _live(kind: str, record_id: int) -> Callable[[Sandbox], None]:
    """Records of `kind` are made until `record_id` exists (any worker may run the case)."""

    def prepare(sandbox: Sandbox) -> None:
        while _MAKE[kind](sandbox)["id"] < record_id:
            pass

    return prepare


def _live_lead(serial: int, *, deleted: bool = False) -> Callable[[Sandbox], None]:
    """Leads are made until the `serial`-th exists (then deleted, if asked): their ids are
    UUIDs made of the serial (`v1_records.lead_uuid`)."""

    def prepare(sandbox: Sandbox) -> None:
        with sandbox.store.lock:
            made = sandbox.store._last_id["lead"]
        while made < serial:
            made = int(sandbox.add_lead("Made for a case", person_id=1)["id"][-12:], 16)
        if deleted:
            with contextlib.suppress(ValueError):  # deleted already
                sandbox.delete_lead(lead_uuid(serial))

    return prepare


def _gone(kind: str, record_id: int) -> Callable[[Sandbox], None]:
    """`record_id` exists and is deleted."""

    def prepare(sandbox: Sandbox) -> None:
        with sandbox.store.lock:
            exists = record_id in sandbox.store.table(kind)
        if not exists:
            _live(kind, record_id)(sandbox)
        with contextlib.suppress(ValueError):  # deleted already
            getattr(sandbox, f"delete_{kind}")(record_id)

    return prepare


NEW_DEAL = {
    "title": "Conformance deal",
    "value": 1200.5,
    "currency": "EUR",
    "person_id": 1,
    "org_id": 1,
    "pipeline_id": 2,
    "visible_to": 3,
    "expected_close_date": "2026-12-31",
    "label_ids": [],
}
NEW_ACTIVITY = {
    "subject": "Kickoff call",
    "type": "call",
    "deal_id": 1,
    "participants": [{"person_id": 2, "primary": True}],
    "due_date": "2026-12-01",
    "due_time": "09:30",
    "duration": "00:45",
    "done": False,
    "location": {"value": "Narva mnt 5, Tallinn", "country": "Estonia"},
}

CASES = [
    Case("deals list", "GET", "/api/v2/deals", 200, {"limit": 5}),
    Case(
        "deals list sorted, filtered, with include_fields",
        "GET",
        "/api/v2/deals",
        200,
        {
            "sort_by": "update_time",
            "sort_direction": "desc",
            "pipeline_id": 1,
            "updated_since": "2026-01-01T00:00:00Z",
            "include_fields": "activities_count",
        },
    ),
    Case(
        "deals list deleted",
        "GET",
        "/api/v2/deals",
        200,
        {"status": "deleted"},
        prepare=_delete_deal_3,
    ),
    Case("deals list by ids", "GET", "/api/v2/deals", 200, {"ids": "1,2,3"}),
    Case(
        "deals list limit > 500", "GET", "/api/v2/deals", 400, {"limit": 501}, request_valid=False
    ),
    Case("deals list bad cursor", "GET", "/api/v2/deals", 400, {"cursor": "nope"}),
    Case(
        "deals list no token",
        "GET",
        "/api/v2/deals",
        401,
        headers={"x-api-token": ""},
        request_valid=False,
    ),
    Case("deals list rate limited", "GET", "/api/v2/deals", 429, prepare=_low_burst),
    Case("deals list 500 fault", "GET", "/api/v2/deals", 500, prepare=_fault_500),
    Case("deal by id", "GET", "/api/v2/deals/1", 200),
    Case(
        "deal by id include", "GET", "/api/v2/deals/1", 200, {"include_fields": "next_activity_id"}
    ),
    Case("deal unknown", "GET", "/api/v2/deals/999999", 404),
    Case("deal add", "POST", "/api/v2/deals", 200, body=NEW_DEAL),
    Case("deal add won", "POST", "/api/v2/deals", 200, body={"title": "Won", "status": "won"}),
    Case(
        "deal add string value",
        "POST",
        "/api/v2/deals",
        400,
        body={"title": "x", "value": "100"},
        request_valid=False,
    ),
    Case("deal add no title", "POST", "/api/v2/deals", 400, body={"value": 1}, request_valid=False),
    Case("deal add unknown key", "POST", "/api/v2/deals", 400, body={"title": "x", "user_id": 1}),
    Case("deal update", "PATCH", "/api/v2/deals/2", 200, body={"status": "won", "stage_id": 3}),
    Case(
        "deal update bool as int",
        "PATCH",
        "/api/v2/deals/2",
        400,
        body={"is_archived": 1},
        request_valid=False,
    ),
    Case("deal update unknown", "PATCH", "/api/v2/deals/999999", 404, body={"title": "x"}),
    Case("activities list", "GET", "/api/v2/activities", 200, {"limit": 5}),
    Case(
        "activities list filtered",
        "GET",
        "/api/v2/activities",
        200,
        {"done": "false", "sort_by": "due_date", "include_fields": "attendees"},
    ),
    Case(
        "activities list bad owner",
        "GET",
        "/api/v2/activities",
        400,
        {"owner_id": "me"},
        request_valid=False,
    ),
    Case("activity by id", "GET", "/api/v2/activities/1", 200),
    Case("activity unknown", "GET", "/api/v2/activities/999999", 404),
    Case("activity add", "POST", "/api/v2/activities", 200, body=NEW_ACTIVITY),
    Case(
        "activity add person_id",
        "POST",
        "/api/v2/activities",
        200,
        body={"subject": "Lunch", "person_id": 3, "busy": True},
    ),
    Case("activity add bad time", "POST", "/api/v2/activities", 400, body={"due_time": "9.30"}),
    Case("stages list", "GET", "/api/v2/stages", 200, {"pipeline_id": 1, "limit": 2}),
    Case("stages list by order", "GET", "/api/v2/stages", 200, {"sort_by": "order_nr"}),
    Case("stages list bad limit", "GET", "/api/v2/stages", 400, {"limit": 0}),
    Case("stage by id", "GET", "/api/v2/stages/1", 200),
    Case("stage unknown", "GET", "/api/v2/stages/999999", 404),
    Case("pipelines list", "GET", "/api/v2/pipelines", 200),
    Case(
        "pipelines list bad sort",
        "GET",
        "/api/v2/pipelines",
        400,
        {"sort_by": "name"},
        request_valid=False,
    ),
    Case("pipeline by id", "GET", "/api/v2/pipelines/1", 200),
    Case("pipeline unknown", "GET", "/api/v2/pipelines/999999", 404),
    Case("persons list", "GET", "/api/v2/persons", 200, {"limit": 3, "org_id": 1}),
    Case("persons by ids", "GET", "/api/v2/persons", 200, {"ids": "1,2,3,4"}),
    Case(
        "persons too many ids",
        "GET",
        "/api/v2/persons",
        400,
        {"ids": ",".join(str(i) for i in range(1, 102))},
    ),
    Case("person by id", "GET", "/api/v2/persons/1", 200),
    Case("person unknown", "GET", "/api/v2/persons/999999", 404),
    Case("organizations list", "GET", "/api/v2/organizations", 200, {"limit": 3}),
    Case(
        "organizations bad since",
        "GET",
        "/api/v2/organizations",
        400,
        {"updated_since": "2026-01-01 00:00:00"},
    ),
    Case("organization by id", "GET", "/api/v2/organizations/1", 200),
    Case("organization unknown", "GET", "/api/v2/organizations/999999", 404),
    Case(
        "deals change feed",
        "GET",
        "/api/v2/deals",
        200,
        {
            "updated_since": "2026-01-01T00:00:00Z",
            "updated_until": "2030-01-01T00:00:00Z",
            "sort_by": "update_time",
            "sort_direction": "asc",
            "status": "open,won,lost,deleted",
            "limit": 500,
        },
        request_valid=False,  # status comma list under a single-value enum
    ),
    Case(
        "deal by id with option labels and chosen custom fields",
        "GET",
        "/api/v2/deals/1",
        200,
        {"include_option_labels": "true", "custom_fields": DEAL_PRIORITY},
    ),
    Case(
        "deal update custom fields",
        "PATCH",
        "/api/v2/deals/1",
        200,
        body={
            "custom_fields": {
                DEAL_PRIORITY: PRIORITY_LOW,
                DEAL_BUDGET: {"value": 10, "currency": "USD"},
            }
        },
    ),
    Case(
        "deal update unknown custom field",
        "PATCH",
        "/api/v2/deals/1",
        400,
        body={"custom_fields": {"a" * 40: 1}},
    ),
    Case("deal delete", "DELETE", "/api/v2/deals/5", 200),
    Case("deal delete again", "DELETE", "/api/v2/deals/5", 404),
    Case("deal delete unknown", "DELETE", "/api/v2/deals/999999", 404),
    Case(
        "activities change feed",
        "GET",
        "/api/v2/activities",
        200,
        {"updated_since": "2026-01-01T00:00:00Z", "sort_by": "update_time", "limit": 500},
    ),
    Case("activity mark done", "PATCH", "/api/v2/activities/2", 200, body={"done": True}),
    Case(
        "activity update",
        "PATCH",
        "/api/v2/activities/3",
        200,
        body={"subject": "Moved", "due_time": "10:00", "participants": [{"person_id": 4}]},
    ),
    Case(
        "activity update done as int",
        "PATCH",
        "/api/v2/activities/2",
        400,
        body={"done": 1},
        request_valid=False,
    ),
    Case("activity update unknown", "PATCH", "/api/v2/activities/999999", 404, body={}),
    Case("activity delete", "DELETE", "/api/v2/activities/60", 200, prepare=_live("activity", 60)),
    Case(
        "activity delete again",
        "DELETE",
        "/api/v2/activities/61",
        404,
        prepare=_gone("activity", 61),
    ),
    Case("activity delete unknown", "DELETE", "/api/v2/activities/999999", 404),
    Case("activity deleted", "GET", "/api/v2/activities/61", 404, prepare=_gone("activity", 61)),
    Case(
        "persons change feed",
        "GET",
        "/api/v2/persons",
        200,
        {"updated_since": "2026-01-01T00:00:00Z", "sort_by": "update_time", "limit": 500},
    ),
    Case(
        "person add",
        "POST",
        "/api/v2/persons",
        200,
        body={
            "name": "Mari Maasikas",
            "org_id": 1,
            "emails": [{"value": "mari@example.ee", "primary": True, "label": "work"}],
            "job_title": "CTO",
            "custom_fields": {PERSON_TIER: [TIER_GOLD, TIER_SILVER]},
        },
    ),
    Case("person add without name", "POST", "/api/v2/persons", 400, body={"org_id": 1}),
    Case(
        "person add empty set",
        "POST",
        "/api/v2/persons",
        400,
        body={"name": "x", "custom_fields": {PERSON_TIER: []}},
    ),
    Case(
        "person update",
        "PATCH",
        "/api/v2/persons/2",
        200,
        body={"name": "Renamed Person", "custom_fields": {PERSON_TIER: None}},
    ),
    Case("person update unknown", "PATCH", "/api/v2/persons/999999", 404, body={"name": "x"}),
    Case("person delete", "DELETE", "/api/v2/persons/30", 200, prepare=_live("person", 30)),
    Case("person delete again", "DELETE", "/api/v2/persons/31", 404, prepare=_gone("person", 31)),
    Case("person delete unknown", "DELETE", "/api/v2/persons/999999", 404),
    Case("person deleted", "GET", "/api/v2/persons/31", 404, prepare=_gone("person", 31)),
    Case(
        "organization add",
        "POST",
        "/api/v2/organizations",
        200,
        body={"name": "Kalev AS", "website": None, "custom_fields": {ORG_REGION: "Baltics"}},
    ),
    Case(
        "organization add without name",
        "POST",
        "/api/v2/organizations",
        400,
        body={"website": "x"},
        request_valid=False,
    ),
    Case(
        "organization update",
        "PATCH",
        "/api/v2/organizations/3",
        200,
        body={"name": "Renamed Org", "employee_count": 12},
    ),
    Case(
        "organization update unknown",
        "PATCH",
        "/api/v2/organizations/999999",
        404,
        body={"name": "x"},
    ),
    Case(
        "organization delete",
        "DELETE",
        "/api/v2/organizations/30",
        200,
        prepare=_live("organization", 30),
    ),
    Case(
        "organization delete again",
        "DELETE",
        "/api/v2/organizations/31",
        404,
        prepare=_gone("organization", 31),
    ),
    Case("organization delete unknown", "DELETE", "/api/v2/organizations/999999", 404),
    Case(
        "organization deleted",
        "GET",
        "/api/v2/organizations/31",
        404,
        prepare=_gone("organization", 31),
    ),
    Case("deal fields", "GET", "/api/v2/dealFields", 200),
    Case(
        "deal fields with namespaces",
        "GET",
        "/api/v2/dealFields",
        200,
        {"include_fields": "ui_visibility,important_fields,required_fields", "limit": 5},
    ),
    Case("deal fields bad limit", "GET", "/api/v2/dealFields", 400, {"limit": 0}),
    Case("person fields", "GET", "/api/v2/personFields", 200),
    Case(
        "person fields bad include",
        "GET",
        "/api/v2/personFields",
        400,
        {"include_fields": "nope"},
        request_valid=False,
    ),
    Case("organization fields", "GET", "/api/v2/organizationFields", 200, {"limit": 3}),
    Case(
        "organization fields bad cursor", "GET", "/api/v2/organizationFields", 400, {"cursor": "x"}
    ),
    Case(
        "activity fields", "GET", "/api/v2/activityFields", 200, {"include_fields": "ui_visibility"}
    ),
    Case("activity fields bad limit", "GET", "/api/v2/activityFields", 400, {"limit": 501}),
    Case("notes", "GET", "/v1/notes", 200),
    Case(
        "notes change feed",
        "GET",
        "/api/v1/notes",
        200,
        {
            "updated_since": "2026-01-01T00:00:00Z",
            "sort": "update_time ASC",
            "start": 0,
            "limit": 1,
        },
    ),
    Case("notes of a deal", "GET", "/v1/notes", 200, {"deal_id": 1, "pinned_to_deal_flag": 1}),
    Case("notes bad sort", "GET", "/v1/notes", 400, {"sort": "colour ASC"}),
    Case("note add", "POST", "/v1/notes", 200, body={"content": "Met at the fair", "person_id": 2}),
    Case("note add nothing linked", "POST", "/v1/notes", 400, body={"content": "Orphan"}),
    Case("note by id", "GET", "/v1/notes/1", 200),
    Case("note unknown", "GET", "/v1/notes/999999", 404),
    Case("note delete", "DELETE", "/v1/notes/30", 200, prepare=_live("note", 30)),
    Case("note delete again", "DELETE", "/v1/notes/31", 404, prepare=_gone("note", 31)),
    Case("note deleted", "GET", "/v1/notes/31", 404, prepare=_gone("note", 31)),
    Case(
        "note add without content",
        "POST",
        "/v1/notes",
        400,
        body={"deal_id": 1},
        request_valid=False,
    ),
    Case("leads", "GET", "/v1/leads", 200, {"limit": 1}),
    Case(
        "leads change feed",
        "GET",
        "/api/v1/leads",
        200,
        {"updated_since": "2026-01-01T00:00:00Z", "sort": "update_time ASC", "limit": 500},
        request_valid=False,  # `sort` is an enum of bare field names in the spec
    ),
    Case("leads bad since", "GET", "/v1/leads", 400, {"updated_since": "yesterday"}),
    Case(
        "lead add",
        "POST",
        "/v1/leads",
        201,
        body={"title": "Webinar signup", "organization_id": 1, "visible_to": "3"},
    ),
    Case("lead add unlinked", "POST", "/v1/leads", 400, body={"title": "Nobody"}),
    Case("lead by id", "GET", f"/v1/leads/{lead_uuid(1)}", 200, prepare=_live_lead(1)),
    Case("lead unknown", "GET", f"/v1/leads/{lead_uuid(999999)}", 404),
    Case("lead delete", "DELETE", f"/v1/leads/{lead_uuid(40)}", 200, prepare=_live_lead(40)),
    Case(
        "lead delete again",
        "DELETE",
        f"/v1/leads/{lead_uuid(41)}",
        404,
        prepare=_live_lead(41, deleted=True),
    ),
    Case(
        "lead deleted",
        "GET",
        f"/v1/leads/{lead_uuid(41)}",
        404,
        prepare=_live_lead(41, deleted=True),
    ),
    Case(
        "lead add visible_to as int",
        "POST",
        "/v1/leads",
        400,
        body={"title": "x", "person_id": 1, "visible_to": 3},
        request_valid=False,
    ),
    Case(
        "webhook add",
        "POST",
        "/v1/webhooks",
        201,
        body={
            "subscription_url": "https://hooks.example.com/pd",
            "event_action": "*",
            "event_object": "deal",
            "name": "Instant mode",
            "http_auth_user": "pd",
            "http_auth_password": "secret",
            "version": "2.0",
        },
    ),
    Case(
        "webhook add via /api/v1, v1 action",
        "POST",
        "/api/v1/webhooks",
        400,
        body={"subscription_url": "https://hooks.example.com/pd", "event_action": "added"},
        request_valid=False,
    ),
    Case(
        "webhook add without name",
        "POST",
        "/v1/webhooks",
        400,
        body={
            "subscription_url": "https://hooks.example.com/pd",
            "event_action": "change",
            "event_object": "person",
        },
        request_valid=False,
    ),
    Case("webhooks", "GET", "/v1/webhooks", 200, prepare=_a_webhook),
    Case("webhooks wrong token", "GET", "/v1/webhooks", 401, headers={"x-api-token": "revoked"}),
    Case("webhook delete", "DELETE", "/v1/webhooks/3", 200, prepare=_webhook_3),
    Case("webhook delete unknown", "DELETE", "/v1/webhooks/999999", 404),
    Case("users", "GET", "/v1/users", 200),
    Case("users via /api/v1", "GET", "/api/v1/users", 200),
    Case("users wrong token", "GET", "/v1/users", 401, headers={"x-api-token": "revoked"}),
    Case("me", "GET", "/v1/users/me", 200),
    Case("me wrong token", "GET", "/v1/users/me", 401, headers={"x-api-token": "revoked"}),
    Case("me rate limited", "GET", "/v1/users/me", 429, prepare=_low_burst),
    Case("user", "GET", "/v1/users/2", 200),
    Case("user via /api/v1", "GET", "/api/v1/users/1", 200),
    Case("user unknown", "GET", "/v1/users/999999", 404),
    Case("user wrong token", "GET", "/v1/users/1", 401, headers={"x-api-token": "revoked"}),
    Case("activity types", "GET", "/v1/activityTypes", 200),
    Case("activity types via /api/v1", "GET", "/api/v1/activityTypes", 200),
    Case(
        "activity types wrong token",
        "GET",
        "/v1/activityTypes",
        401,
        headers={"x-api-token": "revoked"},
    ),
]


def _documented_keys(
    raw: dict[str, Any], spec_path: str, method: str, status: int
) -> tuple[set[str], set[str]]:
    """(schema properties, schema + example keys) of one operation's success `data` object."""
    responses = raw["paths"][spec_path][method]["responses"]
    content = responses[str(status)]["content"]["application/json"]
    schema, example = content["schema"], content["example"]
    parts = schema.get("allOf", [schema])
    with_data = [p["properties"]["data"] for p in parts if "data" in p.get("properties", {})]
    if not with_data:  # e.g. DELETE /v1/webhooks/{id}: `{status, success}` only
        return set(), set()
    data_schema = with_data[0]
    if data_schema.get("type") == "boolean":  # DELETE /v1/notes/{id}: `data: true`
        return set(), set()
    if data_schema.get("type") == "array":
        data_schema = data_schema["items"]
    if "allOf" in data_schema:  # v1 /users/me: the user plus company fields
        props = {k for p in data_schema["allOf"] for k in p.get("properties", {})}
    else:
        props = set(data_schema["properties"])
    sample = example["data"][0] if isinstance(example["data"], list) else example["data"]
    return props, props | set(sample)


def _check_keys(specs: Specs, case: Case, body: dict[str, Any]) -> None:
    """Same keys as the spec: every schema property served, nothing undocumented added."""
    _, raw, spec_path = specs.pick(case.template)
    schema_keys, known = _documented_keys(raw, spec_path, case.method.lower(), case.status)
    if not known:
        assert not isinstance(body.get("data"), dict | list), case.name
        return
    collection = spec_path.split("/{")[0]
    include_only = INCLUDE_ONLY.get(collection, set())
    requested = set(str(case.params.get("include_fields", "")).split(",")) - {""}
    items = body["data"] if isinstance(body["data"], list) else [body["data"]]
    assert items, f"{case.name}: no data to check"
    for item in items:
        assert schema_keys - include_only - set(item) == set(), case.name
        assert set(item) - known - requested == set(), case.name
        assert requested <= set(item), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_conforms_to_spec(case: Case, specs: Specs, sandbox: Sandbox, client: httpx.Client) -> None:
    if case.prepare is not None:
        case.prepare(sandbox)
    try:
        response = client.request(
            case.method, case.path, params=case.params, json=case.body, headers=case.headers
        )
    finally:
        sandbox.set_limits()
        sandbox.faults.clear()
    assert response.status_code == case.status, response.text
    validator, _, spec_path = specs.pick(case.path)
    sent = response.request
    request = MockRequest(
        SPEC_HOST,
        case.method,
        ("/api/v2" if case.path.startswith("/api/v2") else "/v1") + spec_path,
        args=dict(httpx.QueryParams(sent.url.query)),
        headers=dict(sent.headers),
        data=sent.content or None,
    )
    if case.request_valid:
        validator.validate_request(request)
    validator.validate_response(
        request, MockResponse(response.content, status_code=response.status_code)
    )
    if response.status_code in (200, 201):
        _check_keys(specs, case, response.json())
    if case.body is not None and case.request_valid:
        assert json.loads(sent.content) == case.body


def test_every_served_route_has_success_and_error_cases(sandbox: Sandbox) -> None:
    served = {
        (method, gateway.route_template(route))
        for route in sandbox.routes
        for method in route.methods or ()
        if method != "HEAD"
    }
    covered = {(case.method, case.template.replace("/api/v1/", "/v1/")) for case in CASES}
    assert served == set(costs.TOKEN_COSTS)
    assert served <= covered
    for route in served:
        statuses = {c.status for c in CASES if (c.method, c.template) == route}
        success = statuses & {200, 201}
        assert success and statuses - success, f"{route}: needs a success and an error case"


def test_token_costs_match_the_spec(specs: Specs) -> None:
    for (method, template), cost in costs.TOKEN_COSTS.items():
        _, raw, spec_path = specs.pick(template)
        assert raw["paths"][spec_path][method.lower()]["x-token-cost"] == cost, template
