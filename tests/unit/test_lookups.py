"""Lookups name the right related objects and fetch them in batches, caching users and stages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from daemon.clock import FakeClock
from daemon.dev.sandbox import Sandbox
from daemon.payloads import shapes
from daemon.pipedrive import lookups
from daemon.pipedrive.lookups import LookupCache, LookupRequest, Lookups
from tests.schema_check import assert_matches_schema


class FakeSource:
    """Stands in for the Pipedrive API client; records every call it gets."""

    def __init__(self) -> None:
        self.users: list[dict[str, Any]] = [
            {"id": 1, "name": "John Doe", "email": "john@example.com"},
            {"id": 2, "name": "Jane Roe", "email": "jane@example.com"},
        ]
        self.stages: list[dict[str, Any]] = [{"id": 3, "name": "Proposal made", "pipeline_id": 1}]
        self.objects: dict[str, dict[int, dict[str, Any]]] = {
            "persons": {i: {"id": i, "name": f"Person {i}"} for i in range(1, 301)},
            "organizations": {9: {"id": 9, "name": "Acme Ltd"}},
            "deals": {42: {"id": 42, "title": "Acme rollout"}},
            "activities": {
                500: {"id": 500, "due_date": "2026-11-20", "subject": "Intro"},
                501: {"id": 501, "due_date": "2026-11-25", "due_time": "15:00:00"},
            },
        }
        self.calls: list[tuple[Any, ...]] = []

    async def find(self, path: str) -> dict[str, Any] | None:
        self.calls.append(("find", path))
        await asyncio.sleep(0)
        resource, ident = path.split("/")[-2:]
        table = {
            "users": {u["id"]: u for u in self.users},
            "stages": {s["id"]: s for s in self.stages},
            **self.objects,
        }[resource]
        return table.get(int(ident))

    async def list_users(self) -> list[dict[str, Any]]:
        self.calls.append(("list_users",))
        await asyncio.sleep(0)
        return list(self.users)

    async def list_stages(self) -> list[dict[str, Any]]:
        self.calls.append(("list_stages",))
        await asyncio.sleep(0)
        return list(self.stages)

    async def get_many(self, resource: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        self.calls.append(("get_many", resource, tuple(ids)))
        await asyncio.sleep(0)
        table = self.objects[resource]
        return [table[i] for i in ids if i in table]

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


DEALS: list[dict[str, Any]] = [
    {
        "id": 42,
        "owner_id": 2,
        "creator_user_id": 1,
        "person_id": 7,
        "org_id": 9,
        "stage_id": 3,
        "next_activity_id": 501,
        "last_activity_id": 500,
        "add_time": "2026-11-24T06:36:08Z",
        "status": "open",
        "visible_to": 3,
    },
    {
        "id": 43,
        "owner_id": 2,
        "creator_user_id": 2,
        "person_id": None,
        "org_id": None,
        "stage_id": 3,
        "next_activity_id": None,
        "last_activity_id": None,
        "add_time": "2026-11-24T06:37:00Z",
    },
]

ACTIVITIES: list[dict[str, Any]] = [
    {"id": 501, "owner_id": 2, "creator_user_id": 1, "deal_id": 42, "person_id": 7, "org_id": 9},
    {"id": 502, "owner_id": 1, "deal_id": None, "person_id": None, "org_id": None},
]


# --- which objects a batch needs (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("deals", "expected"),
    [
        ([], LookupRequest()),
        (
            DEALS,
            LookupRequest(
                users=frozenset({1, 2}),
                stages=frozenset({3}),
                persons=frozenset({7}),
                organizations=frozenset({9}),
                activities=frozenset({500, 501}),
            ),
        ),
        ([DEALS[1]], LookupRequest(users=frozenset({2}), stages=frozenset({3}))),
        # A malformed id is left for the payload mapping to report by name.
        ([{"id": 1, "owner_id": "2", "person_id": True}], LookupRequest()),
        # Fetched without include_fields: no activity ids to look up.
        ([{"id": 1, "owner_id": 5}], LookupRequest(users=frozenset({5}))),
    ],
)
def test_needed_for_deals(deals: list[dict[str, Any]], expected: LookupRequest) -> None:
    assert lookups.needed_for_deals(deals) == expected


@pytest.mark.parametrize(
    ("activities", "expected"),
    [
        ([], LookupRequest()),
        (
            ACTIVITIES,
            LookupRequest(
                users=frozenset({1, 2}),
                persons=frozenset({7}),
                organizations=frozenset({9}),
                deals=frozenset({42}),
            ),
        ),
        ([ACTIVITIES[1]], LookupRequest(users=frozenset({1}))),
    ],
)
def test_needed_for_activities(activities: list[dict[str, Any]], expected: LookupRequest) -> None:
    assert lookups.needed_for_activities(activities) == expected


def test_needed_for_accepts_a_generator() -> None:
    assert lookups.needed_for_deals(d for d in DEALS) == lookups.needed_for_deals(DEALS)


def test_requests_merge() -> None:
    merged = lookups.needed_for_deals(DEALS) | lookups.needed_for_activities(ACTIVITIES)
    assert merged.deals == frozenset({42})
    assert merged.activities == frozenset({500, 501})
    assert merged.users == frozenset({1, 2})


def test_empty_lookups_have_nothing() -> None:
    empty = Lookups.empty()
    assert [empty.users, empty.persons, empty.organizations] == [{}, {}, {}]
    assert [empty.stages, empty.deals, empty.activities] == [{}, {}, {}]


# --- resolving against the API: batching and caching ---------------------------------------------


def _count(source: FakeSource, resource: str) -> tuple[int, int]:
    """(listings, by-id calls) of `resource` that `source` got."""
    listings = sum(
        1
        for call in source.calls
        if call == (f"list_{resource}",) or (call[0] == "get_many" and call[1] == resource)
    )
    by_id = sum(1 for c in source.calls if c[0] == "find" and c[1].split("/")[-2] == resource)
    return listings, by_id


async def test_many_ids_are_listed_and_a_few_fetched_one_by_one() -> None:
    source = FakeSource()
    request = LookupRequest(
        users=frozenset({1}),
        stages=frozenset({3}),
        persons=frozenset(range(1, 251)),
        organizations=frozenset({9}),
        deals=frozenset({42}),
        activities=frozenset({500, 501}),
    )
    result = await LookupCache().resolve(source, request)
    assert source.calls == [
        ("find", "/v1/users/1"),
        ("find", "/api/v2/stages/3"),
        ("get_many", "persons", tuple(range(1, 251))),
        ("find", "/api/v2/organizations/9"),
        ("find", "/api/v2/deals/42"),
        ("find", "/api/v2/activities/500"),
        ("find", "/api/v2/activities/501"),
    ]
    assert set(result.persons) == set(range(1, 251))
    assert result.organizations[9]["name"] == "Acme Ltd"
    assert result.deals[42]["title"] == "Acme rollout"
    assert set(result.activities) == {500, 501}
    assert result.users[1]["name"] == "John Doe"
    assert result.stages[3]["name"] == "Proposal made"


@pytest.mark.parametrize(
    ("resource", "count", "by_id"),
    [
        ("persons", 5, True),  # 5 tokens against one listing's 10
        ("persons", 6, False),  # a handful at most: calls stay few
        ("users", 5, True),  # 10 against 20
        ("stages", 4, True),  # 4 against 5
        ("stages", 5, False),  # as dear as the whole list, which brings every stage
        ("activities", 1, True),
    ],
)
def test_by_id_only_where_it_costs_fewer_tokens(resource: str, count: int, by_id: bool) -> None:
    assert lookups.by_id_is_cheaper(resource, count) is by_id


async def test_a_whole_list_is_kept_whole() -> None:
    source = FakeSource()
    source.users += [{"id": n, "name": f"User {n}"} for n in range(10, 20)]
    cache = LookupCache()
    await cache.resolve(source, LookupRequest(users=frozenset(range(10, 16))))  # 6: listed
    result = await cache.resolve(source, LookupRequest(users=frozenset({1, 2, 19})))
    assert _count(source, "users") == (1, 0)  # the list brought the others too
    assert result.users[19]["name"] == "User 19"


async def test_resolve_skips_resources_with_no_ids() -> None:
    source = FakeSource()
    result = await LookupCache().resolve(source, LookupRequest(users=frozenset({1})))
    assert source.calls == [("find", "/v1/users/1")]
    assert result.persons == {} and result.deals == {}


async def test_nothing_is_fetched_when_nothing_is_needed_even_past_the_ttl() -> None:
    source = FakeSource()
    clock = FakeClock()
    cache = LookupCache(ttl_s=10, clock=clock)
    await cache.resolve(source, LookupRequest(users=frozenset({1}), stages=frozenset({3})))
    source.calls.clear()
    for _ in range(30):  # an idle hour of polls: no batch needs a name
        clock.advance(120)
        await cache.resolve(source, LookupRequest())
    assert source.calls == []


async def test_ids_pipedrive_does_not_return_are_absent_not_errors() -> None:
    source = FakeSource()
    request = LookupRequest(persons=frozenset({7, 9999}), deals=frozenset({404}))
    result = await LookupCache().resolve(source, request)
    assert set(result.persons) == {7}
    assert result.deals == {}


async def test_users_and_stages_are_cached_within_the_ttl() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    request = LookupRequest(users=frozenset({1, 2}), stages=frozenset({3}), persons=frozenset({7}))
    await cache.resolve(source, request)
    clock.advance(lookups.LOOKUP_CACHE_TTL_S - 1)
    second = await cache.resolve(source, request)
    assert _count(source, "users") == (0, 2)
    assert _count(source, "stages") == (0, 1)
    # Persons are reused for one poll interval only: an hour later they are fetched again.
    assert _count(source, "persons") == (0, 2)
    assert set(second.users) == {1, 2}


async def test_related_objects_are_reused_for_one_poll_interval() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    await cache.resolve(source, LookupRequest(persons=frozenset(range(1, 151))))
    clock.advance(lookups.RELATED_CACHE_TTL_S - 1)
    second = await cache.resolve(source, LookupRequest(persons=frozenset(range(100, 251))))
    assert source.calls[-1] == ("get_many", "persons", tuple(range(151, 251)))  # only the new
    assert set(second.persons) == set(range(100, 251))
    clock.advance(1)  # the first batch's are a poll interval old now
    await cache.resolve(source, LookupRequest(persons=frozenset({1, 200})))
    assert source.calls[-1] == ("find", "/api/v2/persons/1")


async def test_while_the_webhook_is_healthy_related_objects_are_kept_until_a_nudge() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    cache.rely_on_webhooks(True)
    request = LookupRequest(persons=frozenset({7, 8}), organizations=frozenset({9}))
    await cache.resolve(source, request)
    clock.advance(lookups.LOOKUP_CACHE_TTL_S - 1)  # far past one interval
    await cache.resolve(source, request)
    assert len(source.calls) == 3  # nothing fetched again
    source.objects["persons"][7] = {"id": 7, "name": "Renamed"}
    cache.forget("persons", 7)  # person 7 changed
    cache.forget("organizations", None)  # some organization changed (a relayed nudge)
    result = await cache.resolve(source, request)
    assert source.calls[3:] == [("find", "/api/v2/persons/7"), ("find", "/api/v2/organizations/9")]
    assert result.persons[7]["name"] == "Renamed"
    cache.rely_on_webhooks(False)  # unhealthy: back to one interval
    clock.advance(lookups.RELATED_CACHE_TTL_S)
    await cache.resolve(source, request)
    assert _count(source, "persons") == (0, 5)


async def test_an_id_pipedrive_does_not_return_is_not_asked_again_within_the_interval() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    for _ in range(3):
        result = await cache.resolve(source, LookupRequest(organizations=frozenset({9, 404})))
        assert set(result.organizations) == {9}  # 404 was deleted
    assert source.calls == [
        ("find", "/api/v2/organizations/9"),
        ("find", "/api/v2/organizations/404"),
    ]


async def test_expired_objects_are_forgotten_not_only_ignored() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    await cache.resolve(source, LookupRequest(persons=frozenset(range(1, 101))))
    clock.advance(lookups.RELATED_CACHE_TTL_S / 2)
    await cache.resolve(source, LookupRequest(persons=frozenset({200})))
    clock.advance(lookups.RELATED_CACHE_TTL_S / 2)
    cache.forget_expired()  # the poller does, after every cycle
    assert list(cache._kept["persons"]._items) == [200]


async def test_the_related_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookups, "RELATED_CACHE_MAX", 100)
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    await cache.resolve(source, LookupRequest(persons=frozenset(range(1, 101))))
    await cache.resolve(source, LookupRequest(persons=frozenset(range(101, 151))))
    await cache.resolve(source, LookupRequest(persons=frozenset(range(1, 151))))
    # 1-50 were dropped to make room for 101-150, so only they are fetched again.
    assert source.calls[-1] == ("get_many", "persons", tuple(range(1, 51)))


async def test_users_and_stages_are_refetched_after_the_ttl() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    request = LookupRequest(users=frozenset({1}), stages=frozenset({3}))
    await cache.resolve(source, request)
    source.users[0] = {"id": 1, "name": "John Renamed", "email": "john@example.com"}
    clock.advance(lookups.LOOKUP_CACHE_TTL_S)
    result = await cache.resolve(source, request)
    assert _count(source, "users") == (0, 2)
    assert _count(source, "stages") == (0, 2)
    assert result.users[1]["name"] == "John Renamed"


async def test_ttl_is_configurable() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(ttl_s=10, clock=clock)
    await cache.resolve(source, LookupRequest(users=frozenset({1})))
    clock.advance(9)
    await cache.resolve(source, LookupRequest(users=frozenset({1})))
    assert _count(source, "users") == (0, 1)
    clock.advance(1)
    await cache.resolve(source, LookupRequest(users=frozenset({1})))
    assert _count(source, "users") == (0, 2)


async def test_a_new_user_or_stage_is_fetched_at_once() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    await cache.resolve(source, LookupRequest(users=frozenset({1}), stages=frozenset({3})))
    source.users.append({"id": 3, "name": "New Hire", "email": "new@example.com"})
    source.stages.append({"id": 4, "name": "Negotiation", "pipeline_id": 1})
    clock.advance(1)
    result = await cache.resolve(source, LookupRequest(users=frozenset({3}), stages=frozenset({4})))
    assert result.users[3]["name"] == "New Hire"
    assert result.stages[4]["name"] == "Negotiation"
    assert source.calls[-2:] == [("find", "/v1/users/3"), ("find", "/api/v2/stages/4")]


async def test_an_id_still_missing_is_not_asked_again_within_the_ttl() -> None:
    source, clock = FakeSource(), FakeClock()
    cache = LookupCache(clock=clock)
    gone = LookupRequest(users=frozenset({1, 77}))
    await cache.resolve(source, gone)
    await cache.resolve(source, gone)  # 77 unknown: remembered, not asked again
    assert _count(source, "users") == (0, 2)
    clock.advance(lookups.LOOKUP_CACHE_TTL_S)
    await cache.resolve(source, gone)  # the TTL forgets what was missing
    assert _count(source, "users") == (0, 4)


async def test_concurrent_batches_share_one_fetch() -> None:
    source = FakeSource()
    cache = LookupCache()
    request = LookupRequest(users=frozenset({1}), stages=frozenset({3}))
    await asyncio.gather(*(cache.resolve(source, request) for _ in range(5)))
    assert _count(source, "users") == (0, 1)
    assert _count(source, "stages") == (0, 1)


async def test_a_failed_fetch_propagates_and_is_retried_next_time() -> None:
    class Failing(FakeSource):
        fail = True

        async def find(self, path: str) -> dict[str, Any] | None:
            if self.fail:
                raise ConnectionError("pipedrive down")
            return await super().find(path)

    source = Failing()
    cache = LookupCache()
    with pytest.raises(ConnectionError):
        await cache.resolve(source, LookupRequest(users=frozenset({1})))
    source.fail = False
    result = await cache.resolve(source, LookupRequest(users=frozenset({1})))
    assert result.users[1]["name"] == "John Doe"


# --- lookups and payloads together -------------------------------------------------------------


async def test_resolved_lookups_fill_deal_and_activity_payloads() -> None:
    source = FakeSource()
    cache = LookupCache()
    deal_lookups = await cache.resolve(source, lookups.needed_for_deals(DEALS))
    full, bare = (shapes.deal_legacy(d, deal_lookups) for d in DEALS)
    assert full["user_id"] == {"id": 2, "name": "Jane Roe", "email": "jane@example.com"}
    assert full["person_id"] == {"name": "Person 7", "value": 7}
    assert full["stage_name"] == "Proposal made"
    assert full["next_activity_time"] == "2026-11-25T15:00:00.000Z"
    assert full["last_activity_date"] == "2026-11-20"
    assert bare["person_id"] is None and bare["org_id"] is None
    assert_matches_schema(full, "DealResponse")
    assert_matches_schema(bare, "DealResponse")

    act_lookups = await cache.resolve(source, lookups.needed_for_activities(ACTIVITIES))
    act = shapes.activity({**ACTIVITIES[0], "add_time": "2026-11-24T06:50:00Z"}, act_lookups)
    assert (act["deal_title"], act["org_name"], act["person_name"], act["owner_name"]) == (
        "Acme rollout",
        "Acme Ltd",
        "Person 7",
        "Jane Roe",
    )
    assert_matches_schema(act, "ActivityResponse")


async def test_deleted_person_gives_null_name_in_the_payload() -> None:
    source = FakeSource()
    del source.objects["persons"][7]
    resolved = await LookupCache().resolve(source, lookups.needed_for_deals(DEALS[:1]))
    out = shapes.deal_v2(DEALS[0], resolved)
    assert out["person_id"] == {"name": None, "value": 7}
    assert_matches_schema(out, "DealResponseV2")


def test_payloads_read_nothing_of_a_reused_object_but_what_is_kept() -> None:
    # Whole v2 objects as Pipedrive serves them (the sandbox's), against what the cache keeps.
    sandbox = Sandbox(token="t" * 40)
    org = sandbox.add_organization("Northwind Logistics")
    person = sandbox.add_person("Maria Tamm", org_id=org["id"], email="maria@northwind.io")
    deal = sandbox.add_deal("Helio pilot", person_id=person["id"], org_id=org["id"], value=500)
    act = sandbox.add_activity(
        subject="Intro", type="call", deal_id=deal["id"], person_id=person["id"], org_id=org["id"]
    )
    assert len(person) > 10 and len(org) > 10 and len(deal) > 10, "whole objects"
    whole = Lookups(
        persons={person["id"]: person},
        organizations={org["id"]: org},
        deals={deal["id"]: deal},
    )
    kept = Lookups(
        persons={person["id"]: lookups.reused_part("persons", person)},
        organizations={org["id"]: lookups.reused_part("organizations", org)},
        deals={deal["id"]: lookups.reused_part("deals", deal)},
    )
    for build, item in (
        (shapes.deal_v2, deal),
        (shapes.deal_legacy, deal),
        (shapes.activity, act),
    ):
        made = build(item, kept)
        assert made == build(item, whole), build.__name__
    assert shapes.activity(act, kept)["person_name"] == "Maria Tamm"
    assert shapes.deal_legacy(deal, kept)["org_id"] == {"name": "Northwind Logistics", "value": 1}
