"""Every request a poll cycle sends (probe, listings, cursors, lookups) fits Pipedrive's spec."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from openapi_core import OpenAPI
from pydantic import SecretStr

from daemon import config as config_module
from daemon.clock import FakeClock
from daemon.db import database
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.pipedrive.client import PipedriveClient
from daemon.pipedrive.lookups import LookupCache
from daemon.pipedrive.rate_limit import AccountRateLimiter
from daemon.polling import plan, poller
from tests.conftest import API_TOKEN, config_text
from tests.openapi_check import assert_requests_match_spec


async def test_poll_cycles_send_only_requests_the_spec_allows(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver, v2_spec: OpenAPI
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    database.upgrade(url)
    path = tmp_path / "c.toml"
    path.write_text(
        config_text(
            database_url=url,
            api_url=sandbox.base_url,
            callback_url=receiver.base_url,
            subscriptions=[
                {"name": "d", "trigger": "deal.added.legacy"},
                {"name": "a", "trigger": "activity.added"},
                {"name": "backfill", "trigger": "deal.added", "start": "2020-01-01T00:00:00Z"},
            ],
        ),
        encoding="utf-8",
    )
    config = config_module.load(path)
    person = sandbox.add_person("Grace Hopper")
    for n in range(3):
        sandbox.add_deal(title=f"before {n}", person_id=person["id"])
    sent: list[httpx.Request] = []

    async def capture(request: httpx.Request) -> None:
        sent.append(request)

    engine = database.create_engine(url)
    http = PipedriveClient.http_client(sandbox.base_url, lambda: SecretStr(API_TOKEN))
    http.event_hooks["request"].append(capture)
    clock = FakeClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    try:
        client = PipedriveClient(http, account="main", limiter=AccountRateLimiter(1000))
        poll = poller.Poller(engine, {"main": client}, {"main": LookupCache()}, clock=clock)
        feeds = plan.feeds(config)
        for feed in feeds:
            await poll.poll(feed)  # first run: the id probe, then the listing from the start
        deal = sandbox.add_deal(title="new", person_id=person["id"])
        sandbox.add_activity(subject="call", type="call", deal_id=deal["id"])
        clock.advance(5 * 60)
        for feed in feeds:
            await poll.poll(feed)  # listings from the watermarks, then lookups by ids
    finally:
        await http.aclose()
        await engine.dispose()
    paths = {(request.method, request.url.path) for request in sent}
    assert {
        ("GET", "/api/v2/deals"),
        ("GET", "/api/v2/activities"),
        ("GET", "/v1/users/1"),
    } <= paths
    # A handful of related objects: one GET each (1 token) rather than an `ids` listing (10).
    assert ("GET", f"/api/v2/persons/{person['id']}") in paths
    assert not any("ids" in request.url.params for request in sent)
    listings = [r for r in sent if r.url.params.get("sort_by") == "update_time"]
    assert len(listings) == 4 and all("updated_since" in r.url.params for r in listings)
    assert any(request.url.params.get("sort_by") == "id" for request in sent)  # the probe
    assert_requests_match_spec(v2_spec, sent)
