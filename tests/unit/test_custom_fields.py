"""named_custom_fields: an item's hash-keyed custom fields under their Pipedrive names."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.pipedrive.custom_fields import (
    FieldCatalog,
    FieldDefinition,
    FieldOption,
    named_custom_fields,
    parse_field_definitions,
)

PRIORITY = "40characterhashforcustomfieldidentifier"  # the spec's example code
BUDGET = "d4de1c1518b4531717c676029a45911c340390a6"  # the v2 migration guide's monetary field
TAGS = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
VENUE = "b2c3d4e5f60718293a4b5c6d7e8f901234567890"
CAMPAIGN = "c3d4e5f60718293a4b5c6d7e8f90123456789012"
ACCOUNT_MANAGER = "d4e5f60718293a4b5c6d7e8f9012345678901234"
NEW_FIELD = "e5f60718293a4b5c6d7e8f901234567890123456"

# One page of `GET /api/v2/dealFields`, shaped like the spec's example (built-in fields too).
DEAL_FIELDS_PAGE: list[Any] = [
    {
        "field_name": "Deal Title",
        "field_code": "title",
        "description": "The title or name of the deal",
        "field_type": "varchar",
        "options": None,
        "subfields": None,
        "is_custom_field": False,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Value",
        "field_code": "value",
        "field_type": "monetary",
        "options": None,
        "subfields": [
            {"field_code": "value", "field_name": "Amount of Value", "field_type": "double"},
            {"field_code": "currency", "field_name": "Currency of Value", "field_type": "varchar"},
        ],
        "is_custom_field": False,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Priority",
        "field_code": PRIORITY,
        "description": "Priority level for the deal",
        "field_type": "enum",
        "options": [
            {"id": 1, "label": "Low", "color": "green"},
            {"id": 2, "label": "Medium", "color": "yellow"},
            {"id": 3, "label": "High", "color": "red"},
        ],
        "subfields": None,
        "is_custom_field": True,
        "is_optional_response_field": False,
        "ui_visibility": {"add_visible_flag": True, "details_visible_flag": True},
        "important_fields": {"enabled": True, "stage_ids": [5, 6]},
        "required_fields": {"enabled": True, "stage_ids": [5, 6], "statuses": {"1": ["won"]}},
    },
    {
        "field_name": "Budget",
        "field_code": BUDGET,
        "field_type": "monetary",
        "options": None,
        "subfields": [
            {"field_code": "value", "field_name": "Amount of Budget", "field_type": "double"},
            {"field_code": "currency", "field_name": "Currency of Budget", "field_type": "varchar"},
        ],
        "is_custom_field": True,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Tags",
        "field_code": TAGS,
        "field_type": "set",
        "options": [
            {"id": 11, "label": "Enterprise", "color": None, "add_time": None},
            {"id": 12, "label": "EU"},
            {"id": 13, "label": "Renewal"},
        ],
        "subfields": None,
        "is_custom_field": True,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Venue",
        "field_code": VENUE,
        "field_type": "address",
        "options": None,
        "subfields": [
            {
                "field_code": "value",
                "field_name": "Address value of Venue",
                "field_type": "varchar",
            },
            {
                "field_code": "formatted_address",
                "field_name": "Formatted address of Venue",
                "field_type": "varchar",
            },
        ],
        "is_custom_field": True,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Campaign",
        "field_code": CAMPAIGN,
        "field_type": "daterange",
        "options": None,
        "subfields": None,
        "is_custom_field": True,
        "is_optional_response_field": False,
    },
    {
        "field_name": "Account manager",
        "field_code": ACCOUNT_MANAGER,
        "field_type": "user",
        "options": None,
        "subfields": None,
        "is_custom_field": True,
        "is_optional_response_field": False,
    },
]


def catalog_of(page: list[Any]) -> FieldCatalog:
    return FieldCatalog.of(parse_field_definitions(page))


DEALS = catalog_of(DEAL_FIELDS_PAGE)


def test_parse_takes_the_spec_keys_and_ignores_the_rest() -> None:
    parsed = parse_field_definitions(DEAL_FIELDS_PAGE)
    assert [d.code for d in parsed] == [
        "title",
        "value",
        PRIORITY,
        BUDGET,
        TAGS,
        VENUE,
        CAMPAIGN,
        ACCOUNT_MANAGER,
    ]
    assert parsed[0] == FieldDefinition("title", "Deal Title", "varchar", (), is_custom=False)
    assert parsed[2] == FieldDefinition(
        PRIORITY,
        "Priority",
        "enum",
        (FieldOption(1, "Low"), FieldOption(2, "Medium"), FieldOption(3, "High")),
    )


@pytest.mark.parametrize(
    "malformed",
    [
        None,
        "Priority",
        [],
        {"field_name": "No code", "field_type": "varchar"},
        {"field_code": "", "field_name": "Empty code", "field_type": "varchar"},
        {"field_code": NEW_FIELD, "field_type": "varchar"},  # no name
        {"field_code": NEW_FIELD, "field_name": "No type"},
        {"field_code": NEW_FIELD, "field_name": 7, "field_type": "varchar"},
    ],
)
def test_a_malformed_definition_is_skipped(malformed: Any) -> None:
    parsed = parse_field_definitions([malformed, DEAL_FIELDS_PAGE[2]])
    assert [d.code for d in parsed] == [PRIORITY]


def test_malformed_options_are_dropped_one_by_one() -> None:
    (parsed,) = parse_field_definitions(
        [
            {
                "field_name": "Stage kind",
                "field_code": NEW_FIELD,
                "field_type": "enum",
                "options": [
                    {"id": 1, "label": "Kept"},
                    {"id": 2},  # no label
                    {"id": True, "label": "bool is no id"},
                    {"id": None, "label": "no id"},
                    "junk",
                    {"id": "won", "label": "Built-in string id"},
                ],
                "is_custom_field": True,
            }
        ]
    )
    assert parsed.options == (FieldOption(1, "Kept"), FieldOption("won", "Built-in string id"))


def test_missing_custom_flag_counts_as_custom() -> None:
    (parsed,) = parse_field_definitions(
        [{"field_code": NEW_FIELD, "field_name": "Region", "field_type": "varchar"}]
    )
    assert parsed.is_custom
    assert parsed.options == ()


def test_a_deal_with_every_kind_of_value() -> None:
    values = {
        PRIORITY: 3,
        BUDGET: {"value": 2300, "currency": "EUR"},
        TAGS: [11, 13],
        VENUE: {"value": "Main St 1, Tallinn", "formatted_address": "Main St 1, 10111 Tallinn"},
        CAMPAIGN: {"value": "2026-01-01", "until": "2026-01-31"},
        ACCOUNT_MANAGER: 1234,
    }
    assert named_custom_fields(values, DEALS) == {
        "Priority": "High",
        "Budget": {"value": 2300, "currency": "EUR"},
        "Tags": ["Enterprise", "Renewal"],
        "Venue": {"value": "Main St 1, Tallinn", "formatted_address": "Main St 1, 10111 Tallinn"},
        "Campaign": {"value": "2026-01-01", "until": "2026-01-31"},
        "Account manager": 1234,
    }


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        (PRIORITY, None, None),  # an empty field stays, as null
        (PRIORITY, 9, 9),  # an option deleted since the refresh keeps its id
        (PRIORITY, "2", "Medium"),  # v1-shaped id as a string
        (PRIORITY, {"id": 1, "label": "Low"}, "Low"),  # include_option_labels=true
        (PRIORITY, {"id": 9, "label": "Urgent"}, "Urgent"),  # newer than our definitions
        (PRIORITY, {"id": 9}, 9),
        (PRIORITY, True, True),  # a bool is not option id 1
        (TAGS, [12, 99], ["EU", 99]),
        (
            TAGS,
            [{"id": 11, "label": "Enterprise"}, {"id": 12, "label": "EU"}],
            ["Enterprise", "EU"],
        ),
        (TAGS, None, None),
        (BUDGET, {"value": None, "currency": "USD"}, {"value": None, "currency": "USD"}),
    ],
)
def test_option_ids_become_labels_and_other_values_stay(
    code: str, value: Any, expected: Any
) -> None:
    (named,) = named_custom_fields({code: value}, DEALS).values()
    assert named == expected


def test_an_unknown_field_keeps_its_hash() -> None:
    named = named_custom_fields({NEW_FIELD: "x", PRIORITY: 1}, DEALS)
    assert named == {NEW_FIELD: "x", "Priority": "Low"}


@pytest.mark.parametrize("values", [None, {}])
def test_no_custom_fields(values: Any) -> None:
    # Activities never return `custom_fields`.
    assert named_custom_fields(values, DEALS) == {}


def test_empty_catalog_keeps_everything_by_hash() -> None:
    assert named_custom_fields({PRIORITY: 2}, FieldCatalog()) == {PRIORITY: 2}


def test_a_custom_field_may_share_a_built_in_name() -> None:
    # Built-in "Value" never appears under custom_fields, so a custom "Value" needs no suffix.
    catalog = catalog_of(
        [
            *DEAL_FIELDS_PAGE,
            {
                "field_code": NEW_FIELD,
                "field_name": "Value",
                "field_type": "double",
                "is_custom_field": True,
            },
        ]
    )
    assert named_custom_fields({NEW_FIELD: 5}, catalog) == {"Value": 5}


def test_custom_fields_sharing_a_name_all_get_a_code_prefix() -> None:
    twin = "f00dfeed" + "0" * 32
    page = [
        *DEAL_FIELDS_PAGE,
        {
            "field_code": twin,
            "field_name": "Priority",
            "field_type": "varchar",
            "is_custom_field": True,
        },
    ]
    values = {PRIORITY: 2, twin: "asap", BUDGET: None}
    expected = {"Priority (40charac)": "Medium", "Priority (f00dfeed)": "asap", "Budget": None}
    assert named_custom_fields(values, catalog_of(page)) == expected
    # The same keys whatever order the definitions were listed in.
    assert named_custom_fields(values, catalog_of(page[::-1])) == expected


def test_shared_names_fall_back_to_the_full_code_when_the_prefix_is_not_unique() -> None:
    first, second = "abcdef12" + "1" * 32, "abcdef12" + "2" * 32
    catalog = catalog_of(
        [
            {"field_code": code, "field_name": "Region", "field_type": "varchar"}
            for code in (first, second)
        ]
    )
    assert catalog.keys == {first: f"Region ({first})", second: f"Region ({second})"}


def test_a_suffixed_name_never_takes_a_real_fields_name() -> None:
    literal, zone_a, zone_b = "1" * 40, "77777777" + "a" * 32, "88888888" + "b" * 32
    catalog = catalog_of(
        [
            {"field_code": literal, "field_name": "Zone (77777777)", "field_type": "varchar"},
            {"field_code": zone_a, "field_name": "Zone", "field_type": "varchar"},
            {"field_code": zone_b, "field_name": "Zone", "field_type": "varchar"},
        ]
    )
    assert catalog.keys == {
        literal: "Zone (77777777)",
        zone_a: f"Zone ({zone_a})",
        zone_b: "Zone (88888888)",
    }


def test_definitions_from_several_pages_combine() -> None:
    first_page, second_page = DEAL_FIELDS_PAGE[:4], DEAL_FIELDS_PAGE[4:]
    catalog = FieldCatalog.of(
        [*parse_field_definitions(first_page), *parse_field_definitions(second_page)]
    )
    assert catalog == DEALS
