"""The webhook's id, body and Standard Webhooks headers, checked with the reference verifier."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from daemon.delivery.signing import Signer
from daemon.payloads import envelope
from tests.conftest import SIGNING_SECRET


def test_event_id_is_stable_and_distinct() -> None:
    origin = envelope.Origin(7700001, "a" * 32)
    one = origin.addition("new-deals", "deal.added", 42)
    assert one == envelope.Origin(7700001, "b" * 32).addition("new-deals", "deal.added", 42)
    others = {
        origin.addition("new-deals", "deal.added.legacy", 42),
        origin.addition("other", "deal.added", 42),
        origin.addition("new-deals", "deal.added", 43),
        envelope.Origin(7700002, "a" * 32).addition("new-deals", "deal.added", 42),
    }
    assert one not in others and len(others) == 4
    assert one.startswith("msg_") and len(one) == len("msg_") + 32


def test_a_change_id_names_the_company_the_database_and_the_lineage() -> None:
    origin = envelope.Origin(7700001, "a" * 32)
    one = origin.change("orgs", "organization.updated", "5", "l1")
    assert one == envelope.Origin(7700001, "a" * 32).change(
        "orgs", "organization.updated", "5", "l1"
    )
    others = {
        origin.change("orgs", "organization.updated", "5", "l2"),  # other content seen
        origin.change("orgs", "organization.updated", "6", "l1"),
        origin.change("other", "organization.updated", "5", "l1"),
        envelope.Origin(7700002, "a" * 32).change("orgs", "organization.updated", "5", "l1"),
        envelope.Origin(7700001, "b" * 32).change("orgs", "organization.updated", "5", "l1"),
    }
    assert one not in others and len(others) == 5
    assert one.startswith("msg_") and len(one) == len("msg_") + 32


def test_body_is_the_documented_envelope() -> None:
    moment = datetime(2026, 11, 24, 6, 36, 8, 123456, tzinfo=UTC)
    body = json.loads(envelope.body("deal.added", "new-deals", {"id": 1}, moment))
    assert body == {
        "type": "deal.added",
        "timestamp": "2026-11-24T06:36:08.123Z",
        "subscription": "new-deals",
        "data": {"id": 1},
    }


def test_signature_verifies_and_tampering_is_caught() -> None:
    now = datetime.now(UTC)
    body = envelope.body("deal.added", "s", {"id": 1, "title": "Zoë"}, now)
    headers = Signer(SecretStr(SIGNING_SECRET)).headers("msg_1", body, now)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(SIGNING_SECRET).verify(body, headers)["data"]["title"] == "Zoë"
    with pytest.raises(WebhookVerificationError):
        Webhook(SIGNING_SECRET).verify(body.replace("Zoë", "Zoe"), headers)


def test_unsigned_subscription_sends_no_signature() -> None:
    headers = Signer(None).headers("msg_1", "{}", datetime.now(UTC))
    assert "webhook-signature" not in headers
    assert headers["content-type"] == "application/json"
