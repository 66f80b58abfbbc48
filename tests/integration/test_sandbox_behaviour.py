"""The sandbox's behaviour over real HTTP: paging, strictness, auth, limits, faults, call log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox

TOKEN = "behaviour-token"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeClock:
    """The sandbox's clock, moved by the test (so time-dependent rules are deterministic)."""

    def __init__(self, start: datetime = T0) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@dataclass
class Served:
    sandbox: Sandbox
    http: httpx.Client
    clock: FakeClock
    base_url: str

    def deals(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/api/v2/deals", params=params)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def walk(self, path: str, **params: Any) -> list[int]:
        seen: list[int] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            body = self.http.get(path, params=query).json()
            seen += [item["id"] for item in body["data"]]
            cursor = body["additional_data"]["next_cursor"]
            if cursor is None:
                return seen


class CurrentApp:
    """One server for the module; each test swaps in a fresh sandbox behind it."""

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
def served(server: tuple[CurrentApp, str]) -> Iterator[Served]:
    current, base_url = server
    clock = FakeClock()
    sandbox = Sandbox(token=TOKEN, seed=None, now=clock)
    current.app = sandbox.app
    with httpx.Client(base_url=base_url, headers={"x-api-token": TOKEN}) as http:
        yield Served(sandbox, http, clock, base_url)


# -- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort_by", "direction"),
    [("id", "asc"), ("id", "desc"), ("add_time", "asc"), ("add_time", "desc"),
     ("update_time", "desc")],
)  # fmt: skip
def test_cursor_walk_returns_every_deal_once_in_order(
    served: Served, sort_by: str, direction: str
) -> None:
    # Many deals share one add_time second, as Pipedrive's second precision allows.
    for n in range(11):
        served.sandbox.add_deal(f"Deal {n}", add_time=T0 - timedelta(seconds=n % 3))
        served.clock.advance(n % 2)
    expected = sorted(
        served.sandbox.deals, key=lambda d: (d[sort_by], d["id"]), reverse=direction == "desc"
    )
    walked = served.walk("/api/v2/deals", limit=2, sort_by=sort_by, sort_direction=direction)
    assert walked == [d["id"] for d in expected]


def test_cursor_walk_survives_inserts_and_deletes(served: Served) -> None:
    original = [served.sandbox.add_deal(f"Deal {n}")["id"] for n in range(9)]
    deleted: set[int] = set()
    seen: list[int] = []
    cursor = None
    while True:
        body = served.http.get(
            "/api/v2/deals", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [d["id"] for d in body["data"]]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            break
        served.sandbox.add_deal("Inserted while paging")
        unseen = [i for i in original if i not in seen and i not in deleted]
        if unseen:
            served.sandbox.delete_deal(unseen[-1])
            deleted.add(unseen[-1])
    assert len(seen) == len(set(seen))
    assert set(original) - deleted <= set(seen)
    assert not deleted & set(seen)


def test_stages_and_persons_page_with_cursor(served: Served) -> None:
    for n in range(5):
        served.sandbox.add_person(f"Person {n}")
    assert served.walk("/api/v2/persons", limit=2) == [p["id"] for p in served.sandbox.persons]
    assert served.walk("/api/v2/stages", limit=2) == [s["id"] for s in served.sandbox.stages]


def test_updated_since_is_inclusive_and_until_exclusive(served: Served) -> None:
    first = served.sandbox.add_deal("First")
    served.clock.advance(10)
    second = served.sandbox.add_deal("Second")
    since = second["update_time"]
    assert [d["id"] for d in served.deals(updated_since=since)] == [second["id"]]
    assert [d["id"] for d in served.deals(updated_until=since)] == [first["id"]]
    fractional = served.http.get(
        "/api/v2/deals", params={"updated_since": "2026-03-02T09:00:00.5Z"}
    )
    assert fractional.status_code == 400


# -- filters and visibility ------------------------------------------------------------------


def test_ids_accepts_100_and_rejects_101(served: Served) -> None:
    ids = [served.sandbox.add_deal(f"D{n}")["id"] for n in range(3)]
    hundred = ",".join(str(i) for i in [*ids, *range(1000, 1097)])
    assert [d["id"] for d in served.deals(ids=hundred)] == ids
    too_many = served.http.get("/api/v2/deals", params={"ids": hundred + ",5000"})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"


def test_archived_and_deleted_deals_are_not_listed_by_default(served: Served) -> None:
    kept = served.sandbox.add_deal("Kept")["id"]
    archived = served.sandbox.add_deal("Archived")["id"]
    deleted = served.sandbox.add_deal("Deleted")["id"]
    old = served.sandbox.add_deal("Deleted long ago")["id"]
    served.sandbox.archive_deal(archived)
    served.sandbox.delete_deal(deleted)
    served.sandbox.delete_deal(old, at=T0 - timedelta(days=31))
    assert [d["id"] for d in served.deals()] == [kept]
    assert [d["id"] for d in served.deals(status="deleted")] == [deleted]
    assert [d["id"] for d in served.deals(status="open,deleted")] == [kept, deleted]
    assert served.http.get(f"/api/v2/deals/{deleted}").json()["data"]["is_deleted"] is True
    assert served.http.get(f"/api/v2/deals/{archived}").status_code == 200
    gone = served.http.get(f"/api/v2/deals/{old}")
    assert gone.status_code == 404
    assert gone.json() == {
        "success": False,
        "error": "Deal not found",
        "error_info": "Please check developers.pipedrive.com",
        "data": None,
        "additional_data": None,
    }


def test_status_filter_takes_a_comma_list(served: Served) -> None:
    open_id = served.sandbox.add_deal("Open")["id"]
    won_id = served.sandbox.add_deal("Won", status="won")["id"]
    served.sandbox.add_deal("Lost", status="lost")
    assert [d["id"] for d in served.deals(status="open,won")] == [open_id, won_id]
    assert served.http.get("/api/v2/deals", params={"status": "closed"}).status_code == 400


def test_include_fields_alone_adds_counts(served: Served) -> None:
    deal = served.sandbox.add_deal("With activities")
    served.sandbox.add_activity(deal_id=deal["id"], due_date="2026-03-05")
    served.sandbox.add_activity(deal_id=deal["id"], done=True)
    plain = served.deals()[0]
    assert "activities_count" not in plain and "next_activity_id" not in plain
    rich = served.deals(include_fields="activities_count,next_activity_id,last_activity_id")[0]
    assert (rich["activities_count"], rich["next_activity_id"], rich["last_activity_id"]) == (
        2,
        1,
        2,
    )


def test_activities_filter_and_derive_person_from_primary_participant(served: Served) -> None:
    ann = served.sandbox.add_person("Ann Lee")["id"]
    bob = served.sandbox.add_person("Bob Ray")["id"]
    body = {"subject": "Demo", "participants": [{"person_id": bob, "primary": False},
                                                {"person_id": ann, "primary": True}]}  # fmt: skip
    made = served.http.post("/api/v2/activities", json=body).json()["data"]
    assert made["person_id"] == ann
    direct = served.http.post("/api/v2/activities", json={"person_id": bob, "done": True})
    assert direct.json()["data"]["participants"] == [{"person_id": bob, "primary": True}]
    listed = served.http.get("/api/v2/activities", params={"person_id": ann}).json()["data"]
    assert [a["id"] for a in listed] == [made["id"]]
    done = served.http.get("/api/v2/activities", params={"done": "true"}).json()["data"]
    assert [a["id"] for a in done] == [direct.json()["data"]["id"]]
    assert made["due_time"] is None
    timed = served.http.post("/api/v2/activities", json={"due_time": "09:30", "duration": "01:00"})
    assert (timed.json()["data"]["due_time"], timed.json()["data"]["duration"]) == (
        "09:30:00",
        "01:00:00",
    )


# -- writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"title": "x", "value": "100"}, "value"),
        ({"title": "x", "visible_to": "3"}, "visible_to"),
        ({"title": "x", "is_archived": 1}, "is_archived"),
        ({"title": "x", "owner_id": 1.0}, "owner_id"),
        ({"title": "x", "expected_close_date": "2026/01/01"}, "expected_close_date"),
        ({"title": "x", "label_ids": ["1"]}, "label_ids"),
        ({"title": "x", "user_id": 1}, "user_id"),
        ({"title": 5}, "title"),
        ({"value": 5}, "title"),
    ],
)
def test_post_deal_rejects_wrong_types_and_unknown_keys(
    served: Served, body: dict[str, Any], key: str
) -> None:
    response = served.http.post("/api/v2/deals", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
    assert response.json()["error"].startswith(f"Validation failed: {key}: ")
    assert served.sandbox.deals == []


def test_post_deal_places_it_by_stage_and_pipeline(served: Served) -> None:
    other = served.sandbox.add_pipeline("Partners", ["Intro", "Terms", "Signed"])
    stages = [s for s in served.sandbox.stages if s["pipeline_id"] == other["id"]]

    def post(**fields: Any) -> httpx.Response:
        return served.http.post("/api/v2/deals", json={"title": "Placed", **fields})

    by_stage = post(stage_id=stages[1]["id"]).json()["data"]
    assert (by_stage["pipeline_id"], by_stage["stage_id"]) == (other["id"], stages[1]["id"])
    by_pipeline = post(pipeline_id=other["id"]).json()["data"]
    assert by_pipeline["stage_id"] == stages[0]["id"]
    default = post().json()["data"]
    assert (default["pipeline_id"], default["status"], default["origin"]) == (1, "open", "API")
    mismatch = post(pipeline_id=1, stage_id=stages[0]["id"])
    assert mismatch.status_code == 400
    assert "does not belong to pipeline 1" in mismatch.json()["error"]
    assert post(lost_reason="Too pricey").status_code == 400
    lost = post(status="lost", lost_reason="Too pricey").json()["data"]
    assert (lost["lost_reason"], lost["lost_time"]) == ("Too pricey", lost["add_time"])
    assert post(is_deleted=True).status_code == 400


def test_patch_deal_tracks_stage_status_and_update_times(served: Served) -> None:
    deal = served.sandbox.add_deal("Moving")
    served.clock.advance(60)
    moved = served.http.patch(f"/api/v2/deals/{deal['id']}", json={"stage_id": 2}).json()["data"]
    assert moved["stage_change_time"] == moved["update_time"] == "2026-03-02T09:01:00Z"
    served.clock.advance(60)
    won = served.http.patch(f"/api/v2/deals/{deal['id']}", json={"status": "won"}).json()["data"]
    assert won["won_time"] == won["close_time"] == won["update_time"] == "2026-03-02T09:02:00Z"
    assert won["stage_change_time"] == "2026-03-02T09:01:00Z"
    served.clock.advance(60)
    retitled = served.http.patch(f"/api/v2/deals/{deal['id']}", json={"title": "Renamed"})
    assert retitled.json()["data"]["update_time"] == "2026-03-02T09:03:00Z"
    bad = served.http.patch(f"/api/v2/deals/{deal['id']}", json={"value": "12"})
    assert bad.status_code == 400
    served.sandbox.archive_deal(deal["id"])
    assert served.http.patch(f"/api/v2/deals/{deal['id']}", json={"title": "x"}).status_code == 400


# -- auth, routing ---------------------------------------------------------------------------


def test_missing_wrong_and_revoked_tokens_get_401_before_routing(served: Served) -> None:
    expected = {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": "Please check developers.pipedrive.com",
    }
    with httpx.Client(base_url=served.base_url) as anonymous:
        for response in (
            anonymous.get("/api/v2/deals"),
            anonymous.get("/api/v2/deals", headers={"x-api-token": "wrong"}),
            anonymous.get("/no/such/route"),
        ):
            assert (response.status_code, response.json()) == (401, expected)
        assert anonymous.get("/api/v2/deals", params={"api_token": TOKEN}).status_code == 200
    served.sandbox.token = "rotated"
    assert served.http.get("/api/v2/deals").status_code == 401
    assert [c.token_valid for c in served.sandbox.calls][-1] is False


def test_unknown_route_and_method_are_pipedrive_shaped(served: Served) -> None:
    missing = served.http.get("/api/v2/nothing")
    assert missing.status_code == 404 and missing.json()["success"] is False
    wrong_method = served.http.delete("/api/v2/stages/1")
    assert wrong_method.status_code == 405 and wrong_method.json()["success"] is False


def test_v1_users_and_alias(served: Served) -> None:
    me = served.http.get("/v1/users/me").json()["data"]
    assert (me["id"], me["is_you"], me["active_flag"]) == (1, True, True)
    served.sandbox.add_user("Second User", "second@example.com")
    users = served.http.get("/api/v1/users").json()["data"]
    assert [(u["id"], u["is_you"]) for u in users] == [(1, True), (2, False)]


# -- rate limits -----------------------------------------------------------------------------


def test_burst_limit_answers_429_with_headers_and_retry_after(served: Served) -> None:
    served.sandbox.set_limits(burst=3, window_s=0.5)
    statuses = [served.http.get("/api/v2/stages/1") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in statuses] == ["2", "1", "0", "0"]
    limited = statuses[-1]
    assert limited.headers["x-ratelimit-limit"] == "3"
    assert limited.headers["retry-after"] == limited.headers["x-ratelimit-reset"] == "1"
    assert limited.json()["success"] is False
    assert "x-daily-ratelimit-token-remaining" in limited.headers
    time.sleep(0.55)  # the burst window runs on the monotonic clock, not the sandbox's
    assert served.http.get("/api/v2/stages/1").status_code == 200


def test_daily_budget_spends_x_token_cost(served: Served) -> None:
    served.sandbox.set_limits(daily_tokens=15)
    first = served.http.get("/api/v2/deals")  # costs 10
    assert first.headers["x-daily-ratelimit-token-remaining"] == "5"
    assert served.http.get("/api/v2/deals/1").status_code == 404  # costs 1, still spent
    over = served.http.get("/api/v2/deals")
    assert over.status_code == 429
    assert over.headers["x-daily-ratelimit-token-remaining"] == "4"
    assert 0 < int(over.headers["retry-after"]) <= 86_400


# -- faults and call log ---------------------------------------------------------------------


def test_faults_fail_the_next_matching_requests(served: Served) -> None:
    served.sandbox.faults.add(status=503, count=2, path_prefix="/api/v2/deals")
    assert served.http.get("/api/v2/stages").status_code == 200
    assert [served.http.get("/api/v2/deals").status_code for _ in range(3)] == [503, 503, 200]
    served.sandbox.faults.add(malformed=True, path_prefix="/api/v2/deals")
    broken = served.http.get("/api/v2/deals")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    served.sandbox.faults.add(delay_s=0.3, path_prefix="/api/v2/deals")
    with pytest.raises(httpx.ReadTimeout):
        served.http.get("/api/v2/deals", timeout=0.05)
    assert served.sandbox.faults.pending == 0


def test_call_log_records_every_request(served: Served) -> None:
    served.http.get("/api/v2/deals", params={"limit": 2, "sort_by": "id"})
    served.http.get("/api/v2/deals")
    served.http.get("/api/v2/deals/99")
    with httpx.Client(base_url=served.base_url) as anonymous:
        anonymous.get("/api/v2/deals")
    assert served.sandbox.calls_to("GET", "/api/v2/deals") == 3
    first, *_, last = served.sandbox.calls
    assert (first.method, first.path, first.query, first.status, first.token_valid) == (
        "GET",
        "/api/v2/deals",
        {"limit": "2", "sort_by": "id"},
        200,
        True,
    )
    assert (last.status, last.token_valid, last.time) == (401, False, last.time)
    served.sandbox.clear_calls()
    assert served.sandbox.calls == []


# -- seed -----------------------------------------------------------------------------------


def test_seed_is_deterministic_and_minimum_is_minimal() -> None:
    one, two, other = Sandbox(seed=5), Sandbox(seed=5), Sandbox(seed=6)
    assert one.deals == two.deals and one.activities == two.activities
    assert one.persons == two.persons
    assert one.deals != other.deals
    assert len(one.users) >= 3 and len(one.pipelines) == 2 and len(one.persons) == 20
    assert all(4 <= len([s for s in one.stages if s["pipeline_id"] == p["id"]]) <= 6
               for p in one.pipelines)  # fmt: skip
    bare = Sandbox(seed=None)
    assert (len(bare.users), len(bare.pipelines), bare.deals) == (1, 1, [])
    assert bare.me["id"] == 1
