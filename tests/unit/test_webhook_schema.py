"""The printed schemas reject what consumers must not receive (the suite also validates real
deliveries of every trigger against them, in test_change_feed)."""

from __future__ import annotations

import jsonschema

from daemon import triggers
from daemon.triggers import webhook_schema

DEAL = {
    "type": "deal.added",
    "timestamp": "2026-11-24T06:36:08.000Z",
    "subscription": "s",
}


def errors(name: str, body: dict[str, object]) -> list[str]:
    validator = jsonschema.Draft202012Validator(webhook_schema.webhook_schema(name))
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(body)]


def test_every_trigger_has_a_valid_2020_12_schema() -> None:
    for name in triggers.REGISTRY:
        schema = webhook_schema.webhook_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
        assert ("previous" in schema["required"]) == (triggers.get(name).kind == "change")


def test_a_wrong_body_fails() -> None:
    data_fields = webhook_schema.data_schema(triggers.get("deal.added"))["properties"]
    good = {key: None for key in data_fields if key != "custom_fields"}
    assert errors("deal.added", {**DEAL, "data": good}) == []
    assert errors("deal.added", {**DEAL, "data": {**good, "value": "lots"}})
    assert errors("deal.added", {**DEAL, "data": {**good, "surprise": 1}})
    missing = dict(good)
    del missing["title"]
    assert errors("deal.added", {**DEAL, "data": missing})
    assert errors("deal.added", {**DEAL, "timestamp": "2026-11-24 06:36", "data": good})
    assert errors("deal.added", {**DEAL, "type": "deal.won", "data": good})
    person = {"id": 1, "name": "Ada", "emails": [{"value": "a@b", "primary": True}]}
    assert errors("person.added", {**DEAL, "type": "person.added", "data": person}) == []
    assert errors("person.added", {**DEAL, "type": "person.added", "data": {"id": "one"}})
