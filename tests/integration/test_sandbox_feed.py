"""The sandbox as a change feed, over real HTTP: updated_since/until, update_time paging while
records change, deletions, status/stage/done times, late visibility, custom fields, v1 notes
and leads, and the faults a feed reader must survive."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox

TOKEN = "feed-token"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FEED = {"sort_by": "update_time", "sort_direction": "asc"}
ALL_DEALS = "open,won,lost,deleted"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Feed:
    sandbox: Sandbox
    http: httpx.Client

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ids(self, path: str, **params: Any) -> list[Any]:
        return [item["id"] for item in self.get(path, **params)["data"]]


class CurrentApp:
    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[CurrentApp, str]]:
    current = CurrentApp()
    with serve(current) as running:
        yield current, running.base_url


@pytest.fixture
def feed(server: tuple[CurrentApp, str]) -> Iterator[Feed]:
    current, base_url = server
    sandbox = Sandbox(token=TOKEN, seed=None)
    sandbox.set_time(T0)
    current.app = sandbox.app
    with httpx.Client(base_url=base_url, headers={"x-api-token": TOKEN}) as http:
        yield Feed(sandbox, http)


# -- updated_since / updated_until ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["deals", "activities", "persons", "organizations"])
def test_updated_since_and_until_filter_every_v2_feed(feed: Feed, kind: str) -> None:
    made = []
    for n in range(3):
        if kind == "deals":
            made.append(feed.sandbox.add_deal(f"D{n}")["id"])
        elif kind == "activities":
            made.append(feed.sandbox.add_activity(subject=f"A{n}")["id"])
        elif kind == "persons":
            made.append(feed.sandbox.add_person(f"P {n}")["id"])
        else:
            made.append(feed.sandbox.add_organization(f"O{n}")["id"])
        feed.sandbox.advance_time(10)
    path = f"/api/v2/{kind}"
    since, until = stamp(T0 + timedelta(seconds=10)), stamp(T0 + timedelta(seconds=20))
    assert feed.ids(path, updated_since=since, **FEED) == made[1:]
    assert feed.ids(path, updated_until=since, **FEED) == made[:1]
    assert feed.ids(path, updated_since=since, updated_until=until) == made[1:2]


@pytest.mark.parametrize("path", ["/api/v2/stages", "/api/v2/pipelines"])
def test_stages_and_pipelines_refuse_updated_since(feed: Feed, path: str) -> None:
    response = feed.http.get(path, params={"updated_since": stamp(T0)})
    assert response.status_code == 400


# -- paging while records change --------------------------------------------------------------


def test_update_time_paging_moves_a_record_updated_mid_walk_behind_the_cursor(feed: Feed) -> None:
    ids = []
    for n in range(6):
        ids.append(feed.sandbox.add_deal(f"Deal {n}")["id"])
        feed.sandbox.advance_time(1)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {**FEED, "limit": 2, "status": ALL_DEALS, **({"cursor": cursor} if cursor else {})}
        body = feed.get("/api/v2/deals", **params)
        seen += [deal["id"] for deal in body["data"]]
        cursor = body["additional_data"]["next_cursor"]
        pages += 1
        if pages == 1:
            # One seen and one unseen deal change while the client is between pages.
            feed.sandbox.update_deal(ids[0], title="Seen, then edited")
            feed.sandbox.update_deal(ids[3], title="Unseen, edited")
        if cursor is None:
            break
    assert set(ids) <= set(seen)
    assert seen == [ids[0], ids[1], ids[2], ids[4], ids[5], ids[0], ids[3]]


def test_same_second_edits_share_an_update_time_and_add_time_can_be_backdated(
    feed: Feed,
) -> None:
    old = feed.sandbox.add_deal("Backdated", add_time=T0 - timedelta(days=40))
    assert old["add_time"] == "2026-01-21T09:00:00Z"
    assert old["update_time"] == stamp(T0)
    first = feed.sandbox.update_deal(old["id"], value=10)
    second = feed.sandbox.update_deal(old["id"], value=20)
    assert first["update_time"] == second["update_time"] == stamp(T0)
    explicit = feed.sandbox.update_deal(old["id"], value=30, update_time="2026-03-02T08:00:00Z")
    assert explicit["update_time"] == "2026-03-02T08:00:00Z"
    feed.sandbox.release_time()
    assert abs(feed.sandbox.now - datetime.now(UTC)) < timedelta(seconds=5)


# -- deletion ---------------------------------------------------------------------------------


def test_deleted_deal_is_listed_only_with_status_deleted_for_30_days(feed: Feed) -> None:
    kept = feed.sandbox.add_deal("Kept")["id"]
    gone = feed.sandbox.add_deal("Gone")["id"]
    feed.sandbox.advance_time(60)
    answer = feed.http.delete(f"/api/v2/deals/{gone}")
    assert answer.json() == {"success": True, "data": {"id": gone}}
    assert feed.ids("/api/v2/deals", **FEED) == [kept]
    listed = feed.get("/api/v2/deals", status=ALL_DEALS, **FEED)["data"]
    assert [d["id"] for d in listed] == [kept, gone]
    assert (listed[1]["is_deleted"], listed[1]["status"], listed[1]["update_time"]) == (
        True,
        "deleted",
        stamp(T0 + timedelta(seconds=60)),
    )
    since = stamp(T0 + timedelta(seconds=30))
    assert feed.ids("/api/v2/deals", status=ALL_DEALS, updated_since=since) == [gone]
    assert feed.http.delete(f"/api/v2/deals/{gone}").status_code == 404
    assert feed.http.patch(f"/api/v2/deals/{gone}", json={"title": "x"}).status_code == 404
    feed.sandbox.advance_time(timedelta(days=31).total_seconds())
    assert feed.ids("/api/v2/deals", status=ALL_DEALS) == [kept]
    assert feed.http.get(f"/api/v2/deals/{gone}").status_code == 404


# -- stage, status and done times -------------------------------------------------------------


def test_deal_stage_won_reopen_lost_times(feed: Feed) -> None:
    deal_id = feed.sandbox.add_deal("Journey")["id"]

    def patch(**body: Any) -> dict[str, Any]:
        feed.sandbox.advance_time(60)
        response = feed.http.patch(f"/api/v2/deals/{deal_id}", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        assert data["update_time"] == stamp(feed.sandbox.now)
        return data

    moved = patch(stage_id=2)
    assert moved["stage_change_time"] == moved["update_time"]
    same = patch(stage_id=2, title="Same stage")
    assert same["stage_change_time"] == moved["stage_change_time"]
    won = patch(status="won")
    assert won["won_time"] == won["close_time"] == won["update_time"]
    reopened = patch(status="open")
    assert (reopened["status"], reopened["close_time"]) == ("open", None)
    lost = patch(status="lost", lost_reason="Budget")
    assert lost["lost_time"] == lost["close_time"] == lost["update_time"]
    assert lost["lost_reason"] == "Budget"
    assert feed.http.patch(f"/api/v2/deals/{deal_id}", json={"stage_id": 999}).status_code == 400


def test_activity_done_sets_and_clears_marked_as_done_time(feed: Feed) -> None:
    activity_id = feed.sandbox.add_activity(subject="Call back")["id"]
    feed.sandbox.advance_time(30)
    done = feed.http.patch(f"/api/v2/activities/{activity_id}", json={"done": True}).json()
    assert (
        done["data"]["marked_as_done_time"]
        == done["data"]["update_time"]
        == stamp(T0 + timedelta(seconds=30))
    )
    feed.sandbox.advance_time(30)
    again = feed.sandbox.update_activity(activity_id, done=True, note="still done")
    assert again["marked_as_done_time"] == done["data"]["marked_as_done_time"]
    undone = feed.http.patch(f"/api/v2/activities/{activity_id}", json={"done": False}).json()
    assert (undone["data"]["done"], undone["data"]["marked_as_done_time"]) == (False, None)
    assert undone["data"]["note"] == "still done"
    refused = feed.http.patch(f"/api/v2/activities/{activity_id}", json={"done": "yes"})
    assert refused.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"


def test_person_and_organization_writes_move_update_time(feed: Feed) -> None:
    org = feed.http.post("/api/v2/organizations", json={"name": "Acme"}).json()["data"]
    person = feed.http.post(
        "/api/v2/persons", json={"name": "Ada Lovelace", "org_id": org["id"]}
    ).json()["data"]
    assert (person["first_name"], person["last_name"], person["org_id"]) == (
        "Ada",
        "Lovelace",
        org["id"],
    )
    feed.sandbox.advance_time(5)
    renamed = feed.http.patch(f"/api/v2/persons/{person['id']}", json={"name": "Ada King"})
    assert renamed.json()["data"]["last_name"] == "King"
    assert renamed.json()["data"]["update_time"] == stamp(T0 + timedelta(seconds=5))
    moved = feed.sandbox.update_organization(org["id"], website="https://acme.example")
    assert moved["update_time"] == stamp(T0 + timedelta(seconds=5))
    assert feed.http.post("/api/v2/persons", json={"name": "x", "org_id": 99}).status_code == 400
    assert feed.http.patch("/api/v2/persons/99", json={"name": "x"}).status_code == 404


# -- late visibility ---------------------------------------------------------------------------


def test_hidden_record_appears_late_with_its_original_update_time(feed: Feed) -> None:
    late = feed.sandbox.add_deal("Committed late", visible_after=30)["id"]
    feed.sandbox.advance_time(1)
    early = feed.sandbox.add_deal("Committed on time")["id"]
    feed.sandbox.advance_time(5)
    assert feed.ids("/api/v2/deals", **FEED) == [early]
    assert feed.http.get(f"/api/v2/deals/{late}").status_code == 404
    feed.sandbox.advance_time(24)  # T0 + 30 s
    listed = feed.get("/api/v2/deals", **FEED)["data"]
    assert [d["id"] for d in listed] == [late, early]
    assert listed[0]["update_time"] == stamp(T0)
    person = feed.sandbox.add_person("Shy Person")
    feed.sandbox.hide("person", person["id"], 10)
    assert feed.ids("/api/v2/persons") == []
    feed.sandbox.advance_time(10)
    assert feed.ids("/api/v2/persons") == [person["id"]]


# -- custom fields ---------------------------------------------------------------------------


def test_custom_fields_are_defined_listed_and_typed(feed: Feed) -> None:
    size = feed.sandbox.define_field("deal", "Size", "enum", ["S", "M", "L"])
    budget = feed.sandbox.define_field("deal", "Budget", "monetary")
    code = size["field_code"]
    assert len(code) == 40 and all(c in "0123456789abcdef" for c in code)
    medium = size["options"][1]["id"]
    deal = feed.sandbox.add_deal("Sized", custom_fields={code: medium})
    assert deal["custom_fields"] == {code: medium, budget["field_code"]: None}
    money = {"value": 2300, "currency": "EUR"}
    patched = feed.http.patch(
        f"/api/v2/deals/{deal['id']}", json={"custom_fields": {budget["field_code"]: money}}
    )
    assert patched.json()["data"]["custom_fields"] == {code: medium, budget["field_code"]: money}
    labelled = feed.get(f"/api/v2/deals/{deal['id']}", include_option_labels="true")["data"]
    assert labelled["custom_fields"][code] == {"id": medium, "label": "M"}
    fields = feed.get("/api/v2/dealFields", limit=500)["data"]
    mine = next(f for f in fields if f["field_code"] == code)
    assert (mine["field_type"], mine["is_custom_field"]) == ("enum", True)
    assert [o["label"] for o in mine["options"]] == ["S", "M", "L"]
    for bad in ({code: 999}, {code: "M"}, {"0" * 40: 1}):
        answer = feed.http.patch(f"/api/v2/deals/{deal['id']}", json={"custom_fields": bad})
        assert answer.status_code == 400, bad
    tags = feed.sandbox.define_field("person", "Tags", "set", ["a", "b"])
    person = feed.sandbox.add_person("Tagged")
    both = [o["id"] for o in tags["options"]]
    assert feed.sandbox.set_custom_field("person", person["id"], tags["field_code"], both)[
        "custom_fields"
    ] == {tags["field_code"]: both}
    with pytest.raises(ValueError):
        feed.sandbox.set_custom_field("person", person["id"], tags["field_code"], [])


def test_field_lists_page_with_a_cursor(feed: Feed) -> None:
    for n in range(4):
        feed.sandbox.define_field("organization", f"Extra {n}", "varchar")
    expected = [f["field_code"] for f in feed.sandbox.fields("organization")]
    seen: list[str] = []
    cursor = None
    while True:
        body = feed.get(
            "/api/v2/organizationFields", limit=3, **({"cursor": cursor} if cursor else {})
        )
        seen += [f["field_code"] for f in body["data"]]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


# -- v1 notes and leads ------------------------------------------------------------------------


def test_notes_feed_pages_by_offset_with_updated_since(feed: Feed) -> None:
    deal = feed.sandbox.add_deal("Noted")["id"]
    for n in range(5):
        feed.sandbox.add_note(f"Note {n}", deal_id=deal)
        feed.sandbox.advance_time(10)
    posted = feed.http.post("/v1/notes", json={"content": "Via API", "deal_id": deal})
    assert posted.status_code == 200
    assert posted.json()["data"]["deal"] == {"title": "Noted"}
    assert posted.json()["data"]["update_time"] == "2026-03-02 09:00:50"
    since = "2026-03-02T09:00:20Z"
    params = {"updated_since": since, "sort": "update_time ASC", "limit": 2}
    first = feed.get("/api/v1/notes", **params)
    assert [n["content"] for n in first["data"]] == ["Note 2", "Note 3"]
    assert first["additional_data"]["pagination"] == {
        "start": 0,
        "limit": 2,
        "more_items_in_collection": True,
        "next_start": 2,
    }
    rest = feed.get("/v1/notes", start=2, **params)
    assert [n["content"] for n in rest["data"]] == ["Note 4", "Via API"]
    assert rest["additional_data"]["pagination"]["more_items_in_collection"] is False
    assert "next_start" not in rest["additional_data"]["pagination"]
    newest_first = feed.get("/v1/notes", sort="update_time DESC, id DESC", limit=1)
    assert newest_first["data"][0]["content"] == "Via API"


def test_leads_feed_has_uuid_ids_and_filters_by_updated_since(feed: Feed) -> None:
    person = feed.sandbox.add_person("Lead Person")["id"]
    early = feed.sandbox.add_lead("Early", person_id=person)
    feed.sandbox.advance_time(10)
    posted = feed.http.post("/v1/leads", json={"title": "Posted", "person_id": person})
    assert posted.status_code == 201
    later = posted.json()["data"]
    assert uuid.UUID(early["id"]) and uuid.UUID(later["id"])
    assert (later["origin"], later["source_name"]) == ("API", "API")
    assert later["add_time"] == "2026-03-02T09:00:10.000Z"
    assert feed.ids("/v1/leads") == [early["id"], later["id"]]
    params = {"updated_since": "2026-03-02T09:00:05Z", "sort": "update_time ASC"}
    assert feed.ids("/v1/leads", **params) == [later["id"]]
    hidden = feed.sandbox.add_lead("Late lead", person_id=person, visible_after=60)
    assert hidden["id"] not in feed.ids("/v1/leads")
    assert feed.http.post("/v1/leads", json={"title": "Unlinked"}).status_code == 400


# -- faults -----------------------------------------------------------------------------------


def test_repeat_cursor_fault_serves_the_same_cursor_forever(feed: Feed) -> None:
    for n in range(3):
        feed.sandbox.add_deal(f"D{n}")
    feed.sandbox.faults.add(repeat_cursor=True, count=5, path="/api/v2/deals")
    cursors = []
    cursor = None
    for _ in range(4):
        body = feed.get("/api/v2/deals", limit=1, **({"cursor": cursor} if cursor else {}))
        cursor = body["additional_data"]["next_cursor"]
        cursors.append(cursor)
    assert cursor is not None and cursors == [cursor] * 4
    single = feed.get("/api/v2/deals", limit=500)  # last use: even a one-page list repeats
    assert single["additional_data"]["next_cursor"] is not None
    assert feed.get("/api/v2/deals", limit=500)["additional_data"]["next_cursor"] is None
    feed.sandbox.add_note("n", deal_id=1)
    feed.sandbox.faults.add(repeat_cursor=True, count=2, path="/v1/notes")
    for _ in range(2):
        pagination = feed.get("/v1/notes", start=0)["additional_data"]["pagination"]
        assert (pagination["more_items_in_collection"], pagination["next_start"]) == (True, 0)


def test_rate_limit_fault_with_a_chosen_retry_after(feed: Feed) -> None:
    feed.sandbox.faults.add(status=429, retry_after=999999, path="/api/v2/deals")
    limited = feed.http.get("/api/v2/deals")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "999999")
    assert limited.json()["success"] is False
    assert feed.http.get("/api/v2/deals").status_code == 200


def test_server_error_on_the_third_page(feed: Feed) -> None:
    for n in range(5):
        feed.sandbox.add_deal(f"D{n}")
    feed.sandbox.faults.add(status=503, skip=2, path="/api/v2/deals")
    statuses = []
    cursor = None
    for _ in range(4):
        response = feed.http.get(
            "/api/v2/deals", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        statuses.append(response.status_code)
        if response.status_code == 200:
            cursor = response.json()["additional_data"]["next_cursor"]
    assert statuses == [200, 200, 503, 200]
    assert feed.sandbox.calls_to("GET", "/api/v2/deals") == 4
    assert feed.http.get("/api/v2/deals/1").status_code == 200  # exact path: not matched


def test_fault_arguments_are_checked(feed: Feed) -> None:
    with pytest.raises(ValueError):
        feed.sandbox.faults.add(retry_after=5)
    with pytest.raises(ValueError):
        feed.sandbox.faults.add(status=500, skip=-1)
    with pytest.raises(ValueError):
        feed.sandbox.hide("stage", 1, 5)
