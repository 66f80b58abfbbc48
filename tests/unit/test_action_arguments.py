"""The actions' argument checks: every bad value is refused, by name, before any request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from daemon.actions import connector
from daemon.actions.connector import Connector
from daemon.errors import ArgumentError
from daemon.pipedrive.lookups import LookupCache

Parser = Callable[[str, Any], Any]

VALID: list[tuple[Parser, Any, Any]] = [
    (connector.parse_id, 1, 1),
    (connector.parse_id, "42", 42),
    (connector.parse_id, " 7 ", 7),
    (connector.parse_optional_id, None, None),
    (connector.parse_optional_id, "3", 3),
    (connector.parse_day, "2026-12-31", "2026-12-31"),
    (connector.parse_day, "2028-02-29", "2028-02-29"),
    (connector.parse_day, date(2026, 1, 2), "2026-01-02"),
    (connector.parse_day, None, None),
    (connector.parse_time, "00:00", "00:00"),
    (connector.parse_time, "23:59", "23:59"),
    (connector.parse_time, None, None),
    (connector.parse_duration, "00:45", "00:45"),
    (connector.parse_duration, "36:00", "36:00"),
    (connector.parse_duration, None, None),
    (connector.parse_status, "open", "open"),
    (connector.parse_status, "won", "won"),
    (connector.parse_status, "lost", "lost"),
    (connector.parse_status, None, None),
    (connector.parse_visible_to, 1, 1),
    (connector.parse_visible_to, "3", 3),
    (connector.parse_visible_to, "5", 5),
    (connector.parse_visible_to, 7, 7),
    (connector.parse_visible_to, "owner", 1),
    (connector.parse_visible_to, "Followers", 1),
    (connector.parse_visible_to, "entire company", 3),
    (connector.parse_visible_to, "Entire_Company", 3),
    (connector.parse_visible_to, "entire-company", 3),
    (connector.parse_visible_to, None, None),
    (connector.parse_value, "1200", 1200),
    (connector.parse_value, "1200.50", 1200.5),
    (connector.parse_value, "1e3", 1000),
    (connector.parse_value, 0, 0),
    (connector.parse_value, 99.5, 99.5),
    (connector.parse_value, "-5", -5),
    (connector.parse_value, None, None),
    (connector.parse_currency, "EUR", "EUR"),
    (connector.parse_currency, "usd", "USD"),
    (connector.parse_currency, None, None),
    (connector.parse_text, "Call", "Call"),
]


@pytest.mark.parametrize(
    ("parse", "given", "expected"),
    VALID,
    ids=[f"{parse.__name__}-{given!r}" for parse, given, _ in VALID],
)
def test_valid_values_are_normalised(parse: Parser, given: Any, expected: Any) -> None:
    result = parse("--x", given)
    assert result == expected
    assert type(result) is type(expected)


INVALID: list[tuple[Parser, str, Any, str]] = [
    (connector.parse_id, "ID", "abc", "ID: expected a positive integer id, got 'abc'"),
    (connector.parse_id, "ID", "0", "ID: expected a positive integer id, got '0'"),
    (connector.parse_id, "ID", -3, "ID: expected a positive integer id, got '-3'"),
    (connector.parse_id, "ID", "1.5", "ID: expected a positive integer id, got '1.5'"),
    (connector.parse_id, "ID", "", "ID: expected a positive integer id, got ''"),
    (connector.parse_id, "ID", True, "ID: expected a positive integer id, got 'True'"),
    (
        connector.parse_optional_id,
        "--stage-id",
        "two",
        "--stage-id: expected a positive integer id",
    ),
    (
        connector.parse_day,
        "--due-date",
        "2026-13-01",
        "--due-date: expected yyyy-MM-dd, got '2026-13-01'",
    ),
    (
        connector.parse_day,
        "--due-date",
        "2026-02-30",
        "--due-date: expected yyyy-MM-dd, got '2026-02-30'",
    ),
    (connector.parse_day, "--due-date", "2027-02-29", "--due-date: expected yyyy-MM-dd"),
    (connector.parse_day, "--due-date", "26-01-01", "--due-date: expected yyyy-MM-dd"),
    (connector.parse_day, "--due-date", "2026-1-1", "--due-date: expected yyyy-MM-dd"),
    (connector.parse_day, "--due-date", "2026-01-01T10:00", "--due-date: expected yyyy-MM-dd"),
    (connector.parse_day, "--due-date", "01/02/2026", "--due-date: expected yyyy-MM-dd"),
    (connector.parse_time, "--due-time", "24:00", "--due-time: expected HH:MM, got '24:00'"),
    (connector.parse_time, "--due-time", "09:60", "--due-time: expected HH:MM, got '09:60'"),
    (connector.parse_time, "--due-time", "9:30", "--due-time: expected HH:MM, got '9:30'"),
    (connector.parse_time, "--due-time", "09:30:00", "--due-time: expected HH:MM"),
    (connector.parse_time, "--due-time", "9.30", "--due-time: expected HH:MM"),
    (connector.parse_duration, "--duration", "0:45", "--duration: expected HH:MM, got '0:45'"),
    (connector.parse_duration, "--duration", "01:75", "--duration: expected HH:MM"),
    (connector.parse_duration, "--duration", "45", "--duration: expected HH:MM"),
    (connector.parse_duration, "--duration", "100:00", "--duration: expected HH:MM"),
    (
        connector.parse_status,
        "--status",
        "deleted",
        "--status: expected open | won | lost, got 'deleted'",
    ),
    (connector.parse_status, "--status", "Won", "--status: expected open | won | lost"),
    (connector.parse_status, "--status", "", "--status: expected open | won | lost"),
    (
        connector.parse_visible_to,
        "--visible-to",
        "2",
        "--visible-to: expected 1, 3, 5, 7, owner, followers or entire company, got '2'",
    ),
    (connector.parse_visible_to, "--visible-to", "everyone", "--visible-to: expected 1, 3, 5, 7"),
    (connector.parse_visible_to, "--visible-to", 0, "--visible-to: expected 1, 3, 5, 7"),
    (connector.parse_visible_to, "--visible-to", True, "--visible-to: expected 1, 3, 5, 7"),
    (connector.parse_value, "--value", "ten", "--value: expected a number, got 'ten'"),
    (connector.parse_value, "--value", "nan", "--value: expected a number, got 'nan'"),
    (connector.parse_value, "--value", "inf", "--value: expected a number"),
    (connector.parse_value, "--value", "", "--value: expected a number"),
    (connector.parse_value, "--value", True, "--value: expected a number"),
    (
        connector.parse_currency,
        "--currency",
        "EURO",
        "--currency: expected a 3-letter currency code, got 'EURO'",
    ),
    (
        connector.parse_currency,
        "--currency",
        "E1R",
        "--currency: expected a 3-letter currency code",
    ),
    (
        connector.parse_currency,
        "--currency",
        "€UR",
        "--currency: expected a 3-letter currency code",
    ),
    (connector.parse_currency, "--currency", "", "--currency: expected a 3-letter currency code"),
    (connector.parse_text, "--title", None, "--title: required"),
    (connector.parse_text, "--title", "  ", "--title: expected non-empty text, got '  '"),
]


@pytest.mark.parametrize(
    ("parse", "name", "given", "message"),
    INVALID,
    ids=[f"{parse.__name__}-{given!r}" for parse, _, given, _ in INVALID],
)
def test_invalid_values_name_the_argument(
    parse: Parser, name: str, given: Any, message: str
) -> None:
    with pytest.raises(ArgumentError) as caught:
        parse(name, given)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_lost_reason_only_with_lost() -> None:
    assert connector.parse_lost_reason("--lost-reason", "Too pricey", "lost") == "Too pricey"
    assert connector.parse_lost_reason("--lost-reason", None, "won") is None
    with pytest.raises(ArgumentError, match=r"^--lost-reason: only allowed with status lost"):
        connector.parse_lost_reason("--lost-reason", "Too pricey", "won")


class _NoCalls:
    """A client stand-in that fails the test if the connector sends anything."""

    account = "unit"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the connector called client.{name} before refusing")


def _connector() -> Connector:
    return Connector(_NoCalls(), LookupCache())  # type: ignore[arg-type]


# Checks that span several arguments, or that depend on legacy vs V2.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("get_deal", {"deal_id": "x"}, "ID: expected a positive integer id"),
    ("get_stage", {"stage_id": 0}, "ID: expected a positive integer id"),
    ("add_deal", {"title": None}, "--title: required"),
    (
        "add_deal",
        {"title": "T", "expected_close_date": "2026-02-30"},
        "--expected-close-date: expected yyyy-MM-dd",
    ),
    (
        "add_deal",
        {"title": "T", "pipeline_id": 1, "legacy": True},
        "--pipeline-id: not a parameter of the legacy Add deal action",
    ),
    ("add_deal", {"title": "T", "status": "deleted"}, "--status: expected open | won | lost"),
    (
        "update_deal_stage",
        {"deal_id": 1, "stage_id": 2},
        "--pipeline-id: required by Update deal stage (V2)",
    ),
    (
        "update_deal_stage",
        {"deal_id": 1, "stage_id": None, "pipeline_id": 1},
        "--stage-id: required",
    ),
    (
        "update_deal_stage",
        {"deal_id": 1, "stage_id": 2, "pipeline_id": 1, "legacy": True},
        "--pipeline-id: not a parameter of the legacy Update deal stage action",
    ),
    (
        "update_deal_stage",
        {"deal_id": 1, "stage_id": 2, "pipeline_id": 1, "expected_close_date": "2026-13-01"},
        "--expected-close-date: expected yyyy-MM-dd, got '2026-13-01'",
    ),
    ("update_deal_status", {"deal_id": 1, "status": None}, "--status: required"),
    (
        "update_deal_status",
        {"deal_id": 1, "status": "won", "lost_reason": "price"},
        "--lost-reason: only allowed with status lost (status is 'won')",
    ),
    ("add_activity", {"type": "call", "subject": None}, "--subject: required"),
    ("add_activity", {"type": "", "subject": "S"}, "--type: expected non-empty text"),
    (
        "add_activity",
        {"type": "call", "subject": "S", "due_time": "25:00"},
        "--due-time: expected HH:MM, got '25:00'",
    ),
    (
        "add_activity",
        {"type": "call", "subject": "S", "user_id": "me"},
        "--user-id: expected a positive integer id, got 'me'",
    ),
]


@pytest.mark.parametrize(
    ("method", "arguments", "message"), REFUSED, ids=[f"{m}-{msg}" for m, _, msg in REFUSED]
)
async def test_connector_refuses_before_any_request(
    method: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArgumentError) as caught:
        await getattr(_connector(), method)(**arguments)
    assert str(caught.value).startswith(message)
