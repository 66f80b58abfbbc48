"""The pure parts of confirming a deletion: who watches it, what an entity id means, what
Pipedrive's answer says, and when a subscription fires; and the config's refusal of deletion
triggers outside instant mode."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon import config as config_module
from daemon import triggers
from daemon.errors import ConfigError
from daemon.instant import deletions

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INSTANT = {"listen": "127.0.0.1:9466", "public_url": "https://hooks.example.com/pd"}


def config(subscriptions: list[dict[str, Any]], **top: Any) -> config_module.Config:
    raw = {
        "database": {"url": "sqlite:///:memory:"},
        "accounts": [
            {"name": "main", "api_token": "t" * 40},
            {"name": "quiet", "api_token": "q" * 40, "instant": False},
        ],
        "subscriptions": [
            {"account": "main", "callback_url": "https://consumer.example.com/h", **s}
            for s in subscriptions
        ],
        **top,
    }
    return config_module.parse(raw, "config.toml", Path("."))


def test_deletion_triggers_need_instant_mode_and_say_so() -> None:
    subs = [{"name": "gone", "trigger": "person.deleted"}]
    with pytest.raises(ConfigError) as refused:
        config(subs)
    expected = "subscriptions[0] (\"gone\").trigger: 'person.deleted' needs instant mode"
    assert expected in str(refused.value)
    assert "[instant]" in str(refused.value)
    with pytest.raises(ConfigError) as opted_out:
        config([{**subs[0], "account": "quiet"}], instant=INSTANT)
    assert "account 'quiet' sets instant = false" in str(opted_out.value)
    assert config(subs, instant=INSTANT).subscriptions[0].trigger == "person.deleted"
    config([{"name": "new", "trigger": "person.added"}])  # listing triggers need nothing


def test_watchers_are_the_deletion_subscriptions_of_that_object_and_account() -> None:
    loaded = config(
        [
            {"name": "people-gone", "trigger": "person.deleted"},
            {"name": "people-new", "trigger": "person.added"},
            {"name": "calls-gone", "trigger": "activity.deleted"},
        ],
        instant=INSTANT,
    )
    assert [s.name for s in deletions.watchers(loaded, "main", "persons")] == ["people-gone"]
    assert [s.name for s in deletions.watchers(loaded, "main", "activities")] == ["calls-gone"]
    assert deletions.watchers(loaded, "main", "deals") == []
    assert deletions.watchers(loaded, "quiet", "persons") == []


@pytest.mark.parametrize(
    ("object_type", "entity_id", "expected"),
    [
        ("persons", "42", "42"),
        ("persons", "0", None),
        ("persons", "-3", None),
        ("persons", "4.2", None),
        ("persons", "٤٢", None),  # Arabic-Indic digits: str.isdigit, but not an id
        ("persons", "9" * 25, None),
        ("persons", None, None),
        ("leads", "ADF21080-0E10-11EB-879B-05D71FB426EC", "adf21080-0e10-11eb-879b-05d71fb426ec"),
        ("leads", "42", None),
    ],
)
def test_an_entity_id_is_an_item_key_or_nothing(
    object_type: str, entity_id: str | None, expected: str | None
) -> None:
    assert deletions.item_id(triggers.OBJECT_TYPES[object_type], entity_id) == expected


def test_the_single_get_of_each_object() -> None:
    paths = {name: deletions.path(obj, "7") for name, obj in triggers.OBJECT_TYPES.items()}
    assert paths["persons"] == "/api/v2/persons/7"
    assert paths["organizations"] == "/api/v2/organizations/7"
    assert paths["activities"] == "/api/v2/activities/7"
    assert paths["notes"] == "/v1/notes/7"
    assert paths["leads"] == "/v1/leads/7"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, True),  # 404
        ({"id": 1, "is_deleted": True}, True),
        ({"id": 1, "active_flag": False}, True),
        ({"id": 1, "is_deleted": False}, False),
        ({"id": 1, "active_flag": True}, False),
        ({"id": 1}, False),
    ],
)
def test_gone_is_a_404_or_a_deleted_object(answer: Any, expected: bool) -> None:
    assert deletions.gone(answer) is expected


def test_gone_refuses_an_answer_that_is_no_object() -> None:
    with pytest.raises(ValueError, match="without an object"):
        deletions.gone([1])


def test_a_subscription_fires_on_its_filter_of_the_stored_state_and_after_its_start() -> None:
    loaded = config(
        [
            {"name": "mine", "trigger": "person.deleted", "filter": {"owner_id": 7}},
            {"name": "later", "trigger": "person.deleted", "start": "2027-01-01T00:00:00Z"},
        ],
        instant=INSTANT,
    )
    mine, later = loaded.subscriptions
    assert deletions.fires(mine, {"id": 1, "owner_id": 7}, NOW)
    assert not deletions.fires(mine, {"id": 1, "owner_id": 8}, NOW)
    assert not deletions.fires(later, {"id": 1}, NOW)
    assert deletions.fires(later, {"id": 1}, datetime(2027, 1, 2, tzinfo=UTC))
