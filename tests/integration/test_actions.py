"""The connector's actions against the served sandbox: real HTTP, schema-checked answers, and
every request our client sends validated against Pipedrive's own v2 OpenAPI file.

The spec and its patches are in `tests/openapi_check.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from pydantic import SecretStr

from daemon.actions.connector import Connector
from daemon.dev.local_server import LocalServer, serve
from daemon.dev.sandbox import Sandbox
from daemon.errors import PipedriveBadRequest, PipedriveNotFound
from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.pipedrive.lookups import LookupCache
from daemon.pipedrive.rate_limit import AccountRateLimiter
from tests.openapi_check import assert_requests_match_spec
from tests.schema_check import assert_matches_schema

TOKEN = "actions-integration-token"
TEST_BURST = 10_000


@dataclass
class World:
    """What the tests add to the sandbox, by name."""

    sandbox: Sandbox
    server: LocalServer
    person: dict[str, Any]
    org: dict[str, Any]
    colleague: dict[str, Any]
    sales: dict[str, Any]  # the default pipeline
    partners: dict[str, Any]

    def stage(self, pipeline: dict[str, Any], name: str) -> dict[str, Any]:
        return next(
            s
            for s in self.sandbox.stages
            if s["pipeline_id"] == pipeline["id"] and s["name"] == name
        )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    sandbox = Sandbox(token=TOKEN)
    # Each action makes several calls (write, re-read, lookups); back to back, the tests would
    # pass the plan's burst of 40 per 2 s, which the daemon's own limiter does not model.
    sandbox.set_limits(burst=TEST_BURST)
    org = sandbox.add_organization("Analytical Engines Ltd")
    person = sandbox.add_person("Ada Lovelace", org_id=org["id"])
    colleague = sandbox.add_user("Charles Babbage", "charles@sandbox.example")
    partners = sandbox.add_pipeline("Partnerships", ["Prospect", "Signed"])
    with serve(sandbox.app) as server:
        yield World(sandbox, server, person, org, colleague, sandbox.pipelines[0], partners)


@dataclass
class Harness:
    connector: Connector
    sent: list[httpx.Request]


@pytest.fixture
async def harness(world: World, v2_spec: OpenAPI) -> AsyncIterator[Harness]:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    world.sandbox.clear_calls()
    async with PipedriveClient.http_client(world.server.base_url, lambda: SecretStr(TOKEN)) as http:
        http.event_hooks["request"].append(record)
        client = PipedriveClient(
            http,
            account="main",
            limiter=AccountRateLimiter(1000),
            retry=RetryOptions(attempts=1),
        )
        yield Harness(Connector(client, LookupCache()), sent)
    assert_requests_match_spec(v2_spec, sent)


def _writes(sent: list[httpx.Request]) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in sent if r.method != "GET"]


async def test_add_deal_v2(world: World, harness: Harness) -> None:
    signed = world.stage(world.partners, "Signed")
    deal = await harness.connector.add_deal(
        "Difference engine",
        pipeline_id=world.partners["id"],
        stage_id=str(signed["id"]),
        value="1200.50",
        currency="gbp",
        person_id=world.person["id"],
        org_id=world.org["id"],
        expected_close_date="2026-12-31",
        visible_to="entire company",
    )
    assert_matches_schema(deal, "DealResponseV2")
    assert deal["title"] == "Difference engine"
    assert (deal["value"], deal["currency"]) == (1200.5, "GBP")
    assert (deal["pipeline_id"], deal["stage_id"]) == (world.partners["id"], signed["id"])
    assert deal["person_id"] == {"name": "Ada Lovelace", "value": world.person["id"]}
    assert deal["org_id"] == {"name": "Analytical Engines Ltd", "value": world.org["id"]}
    assert deal["user_id"]["name"] == world.sandbox.me["name"]
    assert (deal["expected_close_date"], deal["visible_to"]) == ("2026-12-31", "3")
    assert (deal["status"], deal["active"], deal["activities_count"]) == ("open", True, 0)
    stored = world.sandbox.deal(deal["id"])
    assert (stored["value"], stored["visible_to"]) == (1200.5, 3)


async def test_add_deal_legacy_defaults_to_the_default_pipeline(
    world: World, harness: Harness
) -> None:
    deal = await harness.connector.add_deal(
        "Legacy deal", status="won", value=300, visible_to=1, legacy=True
    )
    assert_matches_schema(deal, "DealResponse")
    first = world.stage(world.sales, "Qualified")
    assert (deal["stage_id"], deal["stage_name"], deal["pipeline_id"]) == (
        first["id"],
        "Qualified",
        world.sales["id"],
    )
    assert (deal["status"], deal["active"], deal["value"], deal["visible_to"]) == (
        "won",
        False,
        300,
        "1",
    )
    assert deal["close_time"] is not None
    assert deal["person_id"] is None


async def test_add_deal_v2_refuses_a_stage_of_another_pipeline(
    world: World, harness: Harness
) -> None:
    signed = world.stage(world.partners, "Signed")
    with pytest.raises(PipedriveBadRequest) as caught:
        await harness.connector.add_deal(
            "Mismatch", pipeline_id=world.sales["id"], stage_id=signed["id"]
        )
    assert str(caught.value) == (
        f"account 'main': stage {signed['id']} is not in pipeline {world.sales['id']} "
        f"(it belongs to pipeline {world.partners['id']})"
    )
    assert _writes(harness.sent) == []


async def test_add_deal_with_an_unknown_person_is_pipedrives_400(
    world: World, harness: Harness
) -> None:
    with pytest.raises(PipedriveBadRequest, match="Person with id 9999 does not exist"):
        await harness.connector.add_deal("Ghost", person_id=9999)


async def test_update_deal_stage_v2_moves_across_pipelines(world: World, harness: Harness) -> None:
    added = world.sandbox.add_deal("To move", person_id=world.person["id"])
    prospect = world.stage(world.partners, "Prospect")
    deal = await harness.connector.update_deal_stage(
        added["id"],
        str(prospect["id"]),
        pipeline_id=str(world.partners["id"]),
        expected_close_date="2027-01-15",
    )
    assert_matches_schema(deal, "DealResponseV2")
    assert "stage_name" not in deal
    assert (deal["stage_id"], deal["pipeline_id"]) == (prospect["id"], world.partners["id"])
    assert deal["expected_close_date"] == "2027-01-15"
    assert deal["stage_change_time"] is not None
    assert deal["person_id"]["name"] == "Ada Lovelace"
    assert _writes(harness.sent) == [f"PATCH /api/v2/deals/{added['id']}"]


async def test_update_deal_stage_v2_refuses_a_stage_of_another_pipeline(
    world: World, harness: Harness
) -> None:
    added = world.sandbox.add_deal("Stays put")
    signed = world.stage(world.partners, "Signed")
    with pytest.raises(PipedriveBadRequest) as caught:
        await harness.connector.update_deal_stage(
            added["id"], signed["id"], pipeline_id=world.sales["id"]
        )
    message = str(caught.value)
    assert f"stage {signed['id']} is not in pipeline {world.sales['id']}" in message
    assert _writes(harness.sent) == []
    assert world.sandbox.deal(added["id"])["stage_id"] == added["stage_id"]


async def test_update_deal_stage_v2_with_an_unknown_stage(world: World, harness: Harness) -> None:
    added = world.sandbox.add_deal("Unknown stage")
    with pytest.raises(PipedriveNotFound, match="Stage not found"):
        await harness.connector.update_deal_stage(added["id"], 9999, pipeline_id=world.sales["id"])
    assert _writes(harness.sent) == []


async def test_update_deal_stage_legacy_lets_the_stage_imply_the_pipeline(
    world: World, harness: Harness
) -> None:
    added = world.sandbox.add_deal("Legacy move")
    signed = world.stage(world.partners, "Signed")
    deal = await harness.connector.update_deal_stage(added["id"], signed["id"], legacy=True)
    assert_matches_schema(deal, "DealResponse")
    assert (deal["stage_id"], deal["stage_name"], deal["pipeline_id"]) == (
        signed["id"],
        "Signed",
        world.partners["id"],
    )
    sent_bodies = [r.content for r in harness.sent if r.method == "PATCH"]
    assert sent_bodies == [f'{{"stage_id":{signed["id"]}}}'.encode()]


async def test_update_deal_status_lost_won_and_reopened(world: World, harness: Harness) -> None:
    added = world.sandbox.add_deal("Status changes")
    lost = await harness.connector.update_deal_status(
        added["id"], "lost", lost_reason="Too expensive"
    )
    assert_matches_schema(lost, "DealResponse")
    assert (lost["status"], lost["lost_reason"], lost["active"]) == (
        "lost",
        "Too expensive",
        False,
    )
    assert lost["close_time"] is not None
    assert lost["stage_name"] == "Qualified"
    won = await harness.connector.update_deal_status(added["id"], "won")
    assert (won["status"], won["lost_reason"]) == ("won", None)
    reopened = await harness.connector.update_deal_status(str(added["id"]), "open")
    assert_matches_schema(reopened, "DealResponse")
    assert (reopened["status"], reopened["active"], reopened["close_time"]) == (
        "open",
        True,
        None,
    )


async def test_update_deal_status_of_an_unknown_deal(harness: Harness) -> None:
    with pytest.raises(PipedriveNotFound, match="Deal not found"):
        await harness.connector.update_deal_status(999_999, "won")


async def test_add_activity_links_and_names_everything(world: World, harness: Harness) -> None:
    added = world.sandbox.add_deal("With activity")
    activity = await harness.connector.add_activity(
        "meeting",
        "Demo of the engine",
        due_date="2026-12-01",
        due_time="09:30",
        duration="01:15",
        note="<p>Bring punch cards</p>",
        user_id=str(world.colleague["id"]),
        deal_id=added["id"],
        person_id=world.person["id"],
        org_id=world.org["id"],
    )
    assert_matches_schema(activity, "ActivityResponse")
    assert (activity["type"], activity["subject"], activity["done"]) == (
        "meeting",
        "Demo of the engine",
        False,
    )
    assert (activity["due_date"], activity["due_time"], activity["duration"]) == (
        "2026-12-01",
        "09:30",
        "01:15",
    )
    assert activity["user_id"] == activity["assigned_to_user_id"] == world.colleague["id"]
    assert activity["owner_name"] == "Charles Babbage"
    assert activity["created_by_user_id"] == world.sandbox.me["id"]
    assert (activity["deal_id"], activity["deal_title"]) == (added["id"], "With activity")
    assert (activity["person_id"], activity["person_name"]) == (world.person["id"], "Ada Lovelace")
    assert activity["org_name"] == "Analytical Engines Ltd"
    assert activity["note"] == "<p>Bring punch cards</p>"
    # The deal's next activity is now this one, as the connector's deal schema shows it.
    deal = await harness.connector.get_deal(added["id"])
    assert_matches_schema(deal, "DealResponse")
    assert (deal["next_activity_id"], deal["next_activity_subject"]) == (
        activity["id"],
        "Demo of the engine",
    )
    assert deal["next_activity_time"] == "2026-12-01T09:30:00.000Z"
    assert (deal["activities_count"], deal["undone_activities_count"]) == (1, 1)


async def test_add_activity_minimal(harness: Harness) -> None:
    activity = await harness.connector.add_activity("call", "Quick call")
    assert_matches_schema(activity, "ActivityResponse")
    assert (activity["deal_id"], activity["person_id"], activity["due_date"]) == (None, None, None)
    body = next(r.content for r in harness.sent if r.method == "POST")
    assert body == b'{"type":"call","subject":"Quick call"}'


async def test_get_deal(world: World, harness: Harness) -> None:
    added = world.sandbox.add_deal("Fetched", org_id=world.org["id"], value=10)
    deal = await harness.connector.get_deal(str(added["id"]))
    assert_matches_schema(deal, "DealResponse")
    assert (deal["id"], deal["title"], deal["stage_name"]) == (added["id"], "Fetched", "Qualified")
    assert deal["org_id"]["name"] == "Analytical Engines Ltd"
    with pytest.raises(PipedriveNotFound, match="Deal not found"):
        await harness.connector.get_deal(999_999)


async def test_get_stage(world: World, harness: Harness) -> None:
    signed = world.stage(world.partners, "Signed")
    stage = await harness.connector.get_stage(signed["id"])
    assert_matches_schema(stage, "StageResponse")
    assert stage == {"id": signed["id"], "name": "Signed"}
    with pytest.raises(PipedriveNotFound, match="Stage not found"):
        await harness.connector.get_stage(999_999)
