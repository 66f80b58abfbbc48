"""The sandbox's Pipedrive webhooks over real loopback HTTP: `/v1/webhooks` registers, the
sandbox's writes arrive at a real receiver as webhooks v2 bodies, and failures are retried,
banned and finally deleted as Pipedrive does, on delays scaled down to milliseconds."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from daemon.dev.receiver import Received, WebhookReceiver
from daemon.dev.sandbox import Sandbox
from daemon.dev.sandbox.webhooks import policy
from tests.conftest import API_TOKEN
from tests.mounted import Mount
from tests.waiting import HANG_S

# Pipedrive's delays at 1/1000 (retries after 3, 30, 150 ms), with a timeout a loaded
# machine's loopback always meets.
FAST = dataclasses.replace(policy.Timings().scaled(0.001), timeout_s=5.0)
MS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def bodies(items: list[Received]) -> list[dict[str, Any]]:
    return [item.json() for item in items]


@pytest.fixture
def hooked(_sandbox_server: tuple[Mount, str]) -> Iterator[Sandbox]:
    """A sandbox sending webhooks on FAST timings, served on loopback."""
    mount, base_url = _sandbox_server
    with Sandbox(token=API_TOKEN, webhook_timings=FAST) as fake, mount.mounted(fake.app):
        fake.base_url = base_url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def api(hooked: Sandbox) -> Iterator[httpx.Client]:
    base_url = hooked.base_url  # type: ignore[attr-defined]
    with httpx.Client(base_url=base_url, headers={"x-api-token": API_TOKEN}) as client:
        yield client


def hook_url(consumer: WebhookReceiver) -> str:
    return consumer.base_url + "/pipedrive"  # type: ignore[attr-defined,no-any-return]


def with_timings(sandbox: Sandbox, **changes: Any) -> None:
    sandbox.webhook_timings = dataclasses.replace(FAST, **changes)


def test_a_deal_created_through_the_api_arrives_as_a_v2_body_with_basic_auth(
    hooked: Sandbox, api: httpx.Client, consumer: WebhookReceiver
) -> None:
    made = api.post(
        "/v1/webhooks",
        json={
            "subscription_url": hook_url(consumer),
            "event_action": "create",
            "event_object": "deal",
            "name": "instant mode",
            "http_auth_user": "pd",
            "http_auth_password": "s3cret",
        },
    )
    assert made.status_code == 201, made.text
    webhook = made.json()["data"]
    assert (webhook["version"], webhook["is_active"], webhook["type"]) == ("2.0", 1, "general")
    consumer.reply(200, delay_s=0.3)  # a slow consumer must not slow the write

    started = time.monotonic()
    deal = api.post("/api/v2/deals", json={"title": "Big one", "value": 5000}).json()["data"]
    assert time.monotonic() - started < 0.3

    # The receiver records a request before it answers: wait for the sandbox's outcome.
    until(lambda: len(hooked.webhook_deliveries) == 1, "the create webhook's outcome")
    item = consumer.received[0]
    expected = "Basic " + base64.b64encode(b"pd:s3cret").decode()
    assert item.headers["authorization"] == expected
    assert item.headers["content-type"] == "application/json"
    body = item.json()
    meta = body["meta"]
    assert {k: meta[k] for k in ("action", "entity", "entity_id", "attempt", "version")} == {
        "action": "create",
        "entity": "deal",
        "entity_id": str(deal["id"]),
        "attempt": 1,
        "version": "2.0",
    }
    assert meta["webhook_id"] == str(webhook["id"])
    assert meta["webhook_owner_id"] == meta["user_id"] == str(hooked.me["id"])
    assert meta["company_id"] == str(hooked.store.company_id)
    assert meta["permitted_user_ids"] == [str(hooked.me["id"])]
    assert (meta["change_source"], meta["is_bulk_edit"], meta["type"]) == ("api", False, "general")
    assert meta["host"] == "sandbox.pipedrive.com"
    assert MS_TIMESTAMP.match(meta["timestamp"])
    assert meta["timestamp"].replace(".000Z", "Z") == deal["update_time"]
    uuid.UUID(meta["id"])
    uuid.UUID(meta["correlation_id"])
    assert body["data"]["id"] == deal["id"]
    assert (body["data"]["title"], body["data"]["value"]) == ("Big one", 5000)
    assert body["previous"] is None

    listed = api.get("/api/v1/webhooks").json()["data"]
    assert listed[0]["last_http_status"] == 200
    assert MS_TIMESTAMP.match(listed[0]["last_delivery_time"])
    assert [(d.attempt, d.status, d.event_id) for d in hooked.webhook_deliveries] == [
        (1, 200, meta["id"])
    ]


def test_each_webhook_gets_the_actions_and_objects_it_asked_for(
    hooked: Sandbox, consumer: WebhookReceiver
) -> None:
    changes = hooked.add_webhook(hook_url(consumer), event_action="change", event_object="deal")
    deletes = hooked.add_webhook(hook_url(consumer), event_action="delete", event_object="deal")
    everything = hooked.add_webhook(hook_url(consumer))  # *.*
    deal = hooked.add_deal("Helper deal", value=10)
    hooked.update_deal(deal["id"], value=20, title="Renamed")
    hooked.delete_deal(deal["id"])
    person = hooked.add_person("Mari Maasikas")
    org = hooked.add_organization("Kalev AS")
    hooked.update_person(person["id"], org_id=org["id"])
    hooked.add_activity(subject="Call", person_id=person["id"])
    hooked.add_note("Met", person_id=person["id"])
    lead = hooked.add_lead("Inbound", person_id=person["id"])
    until(lambda: len(consumer.received) == 11, "11 deliveries")

    by_hook: dict[str, list[dict[str, Any]]] = {}
    for body in bodies(consumer.received):
        by_hook.setdefault(body["meta"]["webhook_id"], []).append(body)
    (change,) = by_hook[str(changes["id"])]
    assert change["meta"]["action"] == "change"
    assert change["previous"] == {"value": 10, "title": "Helper deal"}
    assert (change["data"]["value"], change["data"]["title"]) == (20, "Renamed")
    (delete,) = by_hook[str(deletes["id"])]
    assert delete["data"] is None
    assert (delete["previous"]["id"], delete["previous"]["title"]) == (deal["id"], "Renamed")
    seen = [(b["meta"]["action"], b["meta"]["entity"]) for b in by_hook[str(everything["id"])]]
    assert seen == [
        ("create", "deal"),
        ("change", "deal"),
        ("delete", "deal"),
        ("create", "person"),
        ("create", "organization"),
        ("change", "person"),
        ("create", "activity"),
        ("create", "note"),
        ("create", "lead"),
    ]
    person_change = by_hook[str(everything["id"])][5]
    assert person_change["previous"] == {"org_id": None}
    assert by_hook[str(everything["id"])][-1]["meta"]["entity_id"] == lead["id"]
    # One change, one correlation id across the webhooks it went to; one event id each.
    deal_changes = [b for b in bodies(consumer.received) if b["meta"]["action"] == "change"][:2]
    assert len({b["meta"]["correlation_id"] for b in deal_changes}) == 1
    assert len({b["meta"]["id"] for b in deal_changes}) == 2


def test_deleting_persons_organizations_activities_and_notes_sends_delete_webhooks(
    hooked: Sandbox, api: httpx.Client, consumer: WebhookReceiver
) -> None:
    hooked.add_webhook(hook_url(consumer), event_action="delete")
    person = hooked.add_person("Mari Maasikas")
    org = hooked.add_organization("Kalev AS")
    call = hooked.add_activity(subject="Call", person_id=person["id"])
    note = hooked.add_note("Met", person_id=person["id"])
    for path in (
        f"/api/v2/persons/{person['id']}",
        f"/api/v2/organizations/{org['id']}",
        f"/api/v2/activities/{call['id']}",
        f"/v1/notes/{note['id']}",
    ):
        assert api.delete(path).status_code == 200, path
        assert api.get(path).status_code == 404, path  # gone, as Pipedrive answers
        assert api.delete(path).status_code == 404, path
    until(lambda: len(consumer.received) == 4, "4 deliveries")
    got = [
        (b["meta"]["action"], b["meta"]["entity"], b["meta"]["entity_id"], b["data"])
        for b in bodies(consumer.received)
    ]
    assert got == [
        ("delete", "person", str(person["id"]), None),
        ("delete", "organization", str(org["id"]), None),
        ("delete", "activity", str(call["id"]), None),
        ("delete", "note", str(note["id"]), None),
    ]
    assert bodies(consumer.received)[0]["previous"]["name"] == "Mari Maasikas"
    listed = api.get("/api/v2/persons").json()["data"]
    assert person["id"] not in [p["id"] for p in listed]


def test_failures_are_retried_as_attempts_2_to_4_then_dropped(
    hooked: Sandbox, consumer: WebhookReceiver
) -> None:
    hooked.add_webhook(hook_url(consumer))
    consumer.reply(500, times=4)
    hooked.add_deal("Unlucky")
    until(lambda: len(consumer.attempts) == 4, "four attempts")
    time.sleep(0.2)  # longer than the last retry delay: a fifth attempt would have come

    sent = bodies(consumer.attempts)
    assert [b["meta"]["attempt"] for b in sent] == [1, 2, 3, 4]
    assert len({b["meta"]["id"] for b in sent}) == 1
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(consumer.attempts)]
    assert [g >= d for g, d in zip(gaps, FAST.retry_delays_s, strict=True)] == [True] * 3
    assert [(d.attempt, d.status, d.error) for d in hooked.webhook_deliveries] == [
        (n, 500, "HTTP 500") for n in (1, 2, 3, 4)
    ]
    assert hooked.webhooks[0]["last_http_status"] == 500

    consumer.reply(503)  # one failure, then a retry that succeeds ends the event
    hooked.add_deal("Second try")
    until(lambda: len(consumer.received) == 1, "the retried delivery")
    assert consumer.received[0].json()["meta"]["attempt"] == 2


def test_ten_failed_first_attempts_ban_the_webhook_and_its_events_are_lost(
    hooked: Sandbox, consumer: WebhookReceiver
) -> None:
    # No retries within the test: only first attempts count toward the ban.
    with_timings(hooked, retry_delays_s=(60.0, 60.0, 60.0), ban_s=0.3)
    hooked.add_webhook(hook_url(consumer))
    consumer.reply(500, times=10)
    for n in range(12):
        hooked.add_deal(f"Deal {n}")
    until(lambda: len(hooked.webhook_deliveries) == 12, "twelve outcomes")

    outcomes = [d.error for d in hooked.webhook_deliveries]
    assert outcomes == ["HTTP 500"] * 10 + ["dropped: webhook banned"] * 2
    assert len(consumer.attempts) == 10
    time.sleep(0.3)  # the (scaled) 30 minutes
    hooked.add_deal("After the ban")
    until(lambda: len(consumer.received) == 1, "a delivery after the ban")
    assert consumer.received[0].json()["data"]["title"] == "After the ban"


def test_three_days_without_a_success_delete_the_webhook(
    hooked: Sandbox, api: httpx.Client, consumer: WebhookReceiver
) -> None:
    with_timings(hooked, retry_delays_s=(0.1, 0.1, 0.1), delete_after_s=0.2)
    webhook = hooked.add_webhook(hook_url(consumer))
    consumer.reply(500, times=100)
    hooked.add_deal("Never delivered")
    until(lambda: hooked.webhooks[0]["remove_time"] is not None, "the webhook's removal")

    removed = hooked.webhooks[0]
    assert removed["remove_reason"] == "no successful delivery for 3 days"
    assert removed["is_active"] == 0
    assert api.get("/v1/webhooks").json()["data"] == []
    # The third attempt, 0.2 s after the first failure, was the last one.
    assert [d.attempt for d in hooked.webhook_deliveries] == [1, 2, 3]
    assert api.delete(f"/v1/webhooks/{webhook['id']}").status_code == 404
    hooked.add_deal("Nobody listens")
    time.sleep(0.05)
    assert len(consumer.attempts) == 3


def test_forty_webhooks_per_user_then_422_and_delete_frees_one(
    hooked: Sandbox, api: httpx.Client, consumer: WebhookReceiver
) -> None:
    for n in range(40):
        hooked.add_webhook(hook_url(consumer), name=f"hook {n}")
    body = {
        "subscription_url": hook_url(consumer),
        "event_action": "*",
        "event_object": "*",
        "name": "one too many",
    }
    refused = api.post("/v1/webhooks", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"] == "Webhooks limit reached"

    deleted = api.delete("/v1/webhooks/1")
    assert (deleted.status_code, deleted.json()) == (200, {"status": "ok", "success": True})
    assert [w["id"] for w in api.get("/v1/webhooks").json()["data"]] == list(range(2, 41))
    assert api.post("/api/v1/webhooks", json=body).status_code == 201
    assert api.delete("/v1/webhooks/1").status_code == 404
    assert hooked.calls_to("DELETE", "/v1/webhooks/1") == 2


def test_refused_bodies_name_their_fields(api: httpx.Client) -> None:
    refused = api.post(
        "/v1/webhooks",
        json={
            "subscription_url": "https://acme.pipedrive.com/api/v2/deals",
            "event_action": "updated",
            "event_object": "deal",
            "name": "x" * 256,
            "version": "3.0",
        },
    )
    assert refused.status_code == 400
    assert refused.json()["success"] is False
    assert set(refused.json()["errors"]) == {"subscription_url", "event_action", "name", "version"}


def test_deactivated_and_deleted_webhooks_get_nothing(
    hooked: Sandbox, api: httpx.Client, consumer: WebhookReceiver
) -> None:
    off = hooked.add_webhook(hook_url(consumer))
    gone = hooked.add_webhook(hook_url(consumer))
    on = hooked.add_webhook(hook_url(consumer))
    v1 = hooked.add_webhook(hook_url(consumer), version="1.0")
    hooked.deactivate_webhook(off["id"])
    hooked.delete_webhook(gone["id"], "user deleted")
    hooked.add_deal("Only for the active one")
    until(lambda: len(consumer.received) == 1, "one delivery")
    time.sleep(0.05)

    assert [b["meta"]["webhook_id"] for b in bodies(consumer.received)] == [str(on["id"])]
    listed = {w["id"]: w["is_active"] for w in api.get("/v1/webhooks").json()["data"]}
    assert listed == {off["id"]: 0, on["id"]: 1, v1["id"]: 1}
    assert hooked.webhooks[1]["remove_reason"] == "user deleted"


def test_dropped_deliveries_are_lost(hooked: Sandbox, consumer: WebhookReceiver) -> None:
    hooked.add_webhook(hook_url(consumer))
    hooked.webhooks_faults.add(drop=True, count=2)
    for title in ("one", "two", "three"):
        hooked.add_deal(title)
    until(lambda: len(hooked.webhook_deliveries) == 3, "three outcomes")

    assert [b["data"]["title"] for b in bodies(consumer.attempts)] == ["three"]
    errors = [d.error for d in hooked.webhook_deliveries]
    assert errors == ["dropped: fault", "dropped: fault", None]


@pytest.mark.parametrize("fault", [{"delay_s": 0.25}, {"reorder": True}])
def test_a_delayed_or_held_delivery_arrives_after_the_next_one(
    hooked: Sandbox, consumer: WebhookReceiver, fault: dict[str, Any]
) -> None:
    hooked.add_webhook(hook_url(consumer))
    hooked.webhooks_faults.add(**fault)
    hooked.add_deal("first")
    hooked.add_deal("second")
    until(lambda: len(consumer.received) == 2, "both deliveries")
    assert [b["data"]["title"] for b in bodies(consumer.received)] == ["second", "first"]


def test_a_duplicated_delivery_arrives_twice_with_one_event_id(
    hooked: Sandbox, consumer: WebhookReceiver
) -> None:
    hooked.add_webhook(hook_url(consumer))
    hooked.webhooks_faults.add(duplicate=True)
    hooked.add_deal("twice")
    until(lambda: len(consumer.received) == 2, "the duplicate")
    time.sleep(0.05)

    first, second = bodies(consumer.attempts)
    assert first == second
    assert first["meta"]["attempt"] == 1
    assert hooked.webhooks_faults.pending == 0
