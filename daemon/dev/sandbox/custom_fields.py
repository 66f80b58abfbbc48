"""Field definitions (`GET /api/v2/{deal,person,organization,activity}Fields`) and custom field
values: 40-character hash keys under `custom_fields`, checked by the field's type on write."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from daemon.dev.sandbox import clock, errors


class Store(Protocol):
    """What field definitions need of the sandbox's state (`state.Store`), named here so the
    two modules do not import each other."""

    lock: threading.RLock
    custom_fields: dict[str, list[dict[str, Any]]]
    now: Callable[[], datetime]

    def next_id(self, kind: str) -> int: ...

    def table(self, kind: str) -> dict[Any, dict[str, Any]]: ...


ENTITIES = ("deal", "person", "organization", "activity")
# Entities whose records carry `custom_fields` (Airbyte: "activities never return custom_fields").
WITH_VALUES = ("deal", "person", "organization")
OPTION_TYPES = ("enum", "set")
FIELD_TYPES = (
    "int", "double", "boolean", "varchar", "text", "phone", "varchar_options", "varchar_auto",
    "date", "daterange", "time", "timerange", "enum", "set", "address", "monetary", "deal",
    "deals", "lead", "org", "people", "project", "stage", "user", "activity", "json",
    "picture", "status", "visible_to", "price_list", "billing_frequency", "projects_board",
    "projects_phase",
)  # fmt: skip
MAX_CUSTOM_FIELD_KEYS = 15
INCLUDE_FIELDS = {
    "deal": ("ui_visibility", "important_fields", "required_fields"),
    "person": ("ui_visibility", "important_fields", "required_fields"),
    "organization": ("ui_visibility", "important_fields", "required_fields"),
    "activity": ("ui_visibility",),
}
_STATUS_OPTIONS = [
    {"id": status, "label": status.capitalize()} for status in ("open", "won", "lost", "deleted")
]
_MONEY_PARTS = [
    {"field_code": "value", "field_name": "Amount", "field_type": "double"},
    {"field_code": "currency", "field_name": "Currency", "field_type": "varchar"},
]
# Built-in fields: (code, name, type, options, subfields); a representative subset.
_BUILT_IN: dict[str, list[tuple[str, str, str, Any, Any]]] = {
    "deal": [
        ("title", "Title", "varchar", None, None),
        ("value", "Value", "monetary", None, _MONEY_PARTS),
        ("status", "Status", "status", _STATUS_OPTIONS, None),
        ("owner_id", "Owner", "user", None, None),
        ("person_id", "Contact person", "people", None, None),
        ("org_id", "Organization", "org", None, None),
        ("pipeline_id", "Pipeline", "double", None, None),
        ("stage_id", "Stage", "stage", None, None),
        ("expected_close_date", "Expected close date", "date", None, None),
        ("probability", "Probability", "double", None, None),
        ("lost_reason", "Lost reason", "varchar_options", None, None),
        ("visible_to", "Visible to", "visible_to", None, None),
        ("add_time", "Deal created", "date", None, None),
        ("update_time", "Update time", "date", None, None),
    ],
    "person": [
        ("name", "Name", "varchar", None, None),
        ("owner_id", "Owner", "user", None, None),
        ("org_id", "Organization", "org", None, None),
        ("emails", "Email", "varchar", None, None),
        ("phones", "Phone", "phone", None, None),
        ("job_title", "Job title", "varchar", None, None),
        ("visible_to", "Visible to", "visible_to", None, None),
        ("add_time", "Person created", "date", None, None),
        ("update_time", "Update time", "date", None, None),
    ],
    "organization": [
        ("name", "Name", "varchar", None, None),
        ("owner_id", "Owner", "user", None, None),
        ("address", "Address", "address", None, None),
        ("website", "Website", "varchar", None, None),
        ("visible_to", "Visible to", "visible_to", None, None),
        ("add_time", "Organization created", "date", None, None),
        ("update_time", "Update time", "date", None, None),
    ],
    "activity": [
        ("subject", "Subject", "varchar", None, None),
        ("type", "Type", "varchar_options", None, None),
        ("owner_id", "Assigned to user", "user", None, None),
        ("due_date", "Due date", "date", None, None),
        ("due_time", "Due time", "time", None, None),
        ("duration", "Duration", "time", None, None),
        ("done", "Done", "boolean", None, None),
        ("deal_id", "Deal", "deal", None, None),
        ("person_id", "Contact person", "people", None, None),
        ("org_id", "Organization", "org", None, None),
        ("location", "Location", "address", None, None),
        ("note", "Note", "text", None, None),
    ],
}


def _definition(
    entity: str,
    code: str,
    name: str,
    field_type: str,
    options: Any,
    subfields: Any,
    custom: bool,
) -> dict[str, Any]:
    field: dict[str, Any] = {"field_name": name, "field_code": code}
    if entity != "organization":  # the organizationFields schema and example have none
        field["description"] = f"{name} of the {entity}"
    field.update(
        field_type=field_type,
        options=options,
        subfields=subfields,
        is_custom_field=custom,
        is_optional_response_field=False,
        # include_fields only; stripped by `definitions` unless asked for
        ui_visibility={
            "add_visible_flag": True,
            "details_visible_flag": True,
            "projects_detail_visible_flag": False,
            "show_in_pipelines": {"show_in_all": True, "pipeline_ids": []},
        },
        important_fields={"enabled": False, "stage_ids": []},
        required_fields={"enabled": False, "stage_ids": [], "statuses": {}},
    )
    return field


BUILT_IN: dict[str, list[dict[str, Any]]] = {
    entity: [_definition(entity, *spec, custom=False) for spec in specs]
    for entity, specs in _BUILT_IN.items()
}


def check_entity(entity: str) -> None:
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r} (one of {', '.join(ENTITIES)})")


def define(
    store: Store,
    entity: str,
    name: str,
    field_type: str,
    options: Sequence[str] = (),
    code: str | None = None,
) -> dict[str, Any]:
    """A new custom field: its 40-hex code (sha1, deterministic per store, unless `code` is
    given), option ids unique across the account; existing records get the key as null."""
    check_entity(entity)
    if code is not None and (len(code) != 40 or any(c not in "0123456789abcdef" for c in code)):
        raise ValueError("a field code is 40 lowercase hex characters")
    if field_type not in FIELD_TYPES:
        raise ValueError(f"unknown field type {field_type!r}")
    if (field_type in OPTION_TYPES) != bool(options):
        raise ValueError("enum and set fields need options; other types take none")
    with store.lock:
        serial = store.next_id("field")
        code = code or hashlib.sha1(f"{entity}:{name}:{serial}".encode()).hexdigest()
        if any(field["field_code"] == code for field in store.custom_fields[entity]):
            raise ValueError(f"{entity} field {code} exists already")
        stamp = clock.rfc3339(store.now())
        made = [
            {"id": store.next_id("option"), "label": label, "add_time": stamp, "update_time": stamp}
            for label in options
        ]
        subfields = _MONEY_PARTS if field_type == "monetary" else None
        field = _definition(entity, code, name, field_type, made or None, subfields, custom=True)
        store.custom_fields[entity].append(field)
        if entity in WITH_VALUES:
            for record in store.table(entity).values():
                record["custom_fields"][code] = None
        return field


def definitions(store: Store, entity: str, include: Sequence[str] = ()) -> list[dict[str, Any]]:
    hidden = {"ui_visibility", "important_fields", "required_fields"} - set(include)
    everything = [*BUILT_IN[entity], *store.custom_fields[entity]]
    return [{k: v for k, v in field.items() if k not in hidden} for field in everything]


def _by_code(store: Store, entity: str) -> dict[str, dict[str, Any]]:
    return {field["field_code"]: field for field in store.custom_fields[entity]}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _converted(field: Mapping[str, Any], key: str, value: Any) -> Any:
    """The stored value of one custom field, or a schema error naming `custom_fields.<key>`."""
    name = f"custom_fields.{key}"
    kind = field["field_type"]
    if value is None:
        return None
    option_ids = {option["id"] for option in field["options"] or ()}
    if kind in ("int", "double"):
        ok = _is_number(value)
    elif kind == "monetary":
        ok = (
            isinstance(value, dict)
            and set(value) <= {"value", "currency"}
            and _is_number(value.get("value"))
            and isinstance(value.get("currency", ""), str)
        )
        if ok:
            value = {"value": value["value"], "currency": value.get("currency", "EUR")}
    elif kind == "enum":
        ok = isinstance(value, int) and not isinstance(value, bool) and value in option_ids
    elif kind == "set":
        if value == []:
            raise errors.schema_error(name, f"Parameter '{name}' must not be an empty array")
        ok = isinstance(value, list) and all(
            isinstance(item, int) and not isinstance(item, bool) and item in option_ids
            for item in value
        )
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        ok = isinstance(value, str) and clock.parse_date(value) is not None
    elif kind == "time":
        converted = clock.parse_clock_time(value) if isinstance(value, str) else None
        ok, value = converted is not None, converted
    elif kind in ("user", "org", "people", "deal", "stage", "project"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in ("address", "json", "daterange", "timerange"):
        ok = isinstance(value, dict | str)
    else:  # varchar, text, phone, varchar_auto, ...
        ok = isinstance(value, str)
    if not ok:
        raise errors.schema_error(name, f"Parameter '{name}' is not a valid {kind} value")
    return value


def _checked(store: Store, entity: str, values: Mapping[str, Any]) -> dict[str, Any]:
    known = _by_code(store, entity)
    result = {}
    for key, value in values.items():
        field = known.get(key)
        if field is None:
            name = f"custom_fields.{key}"
            raise errors.schema_error(name, f"Parameter '{name}' is not allowed for this request")
        result[key] = _converted(field, key, value)
    return result


def initial(store: Store, entity: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new record's custom_fields: every defined key, null unless `values` sets it."""
    start: dict[str, Any] = dict.fromkeys(_by_code(store, entity))
    return {**start, **_checked(store, entity, values or {})}


def merged(
    store: Store, entity: str, current: Mapping[str, Any], values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """PATCH: only the keys sent change (null clears)."""
    return {**current, **_checked(store, entity, values or {})}


def keys_param(params: Mapping[str, str]) -> list[str] | None:
    """The `custom_fields` list parameter: which keys to serve (at most 15)."""
    text = params.get("custom_fields")
    if not text:
        return None
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if len(keys) > MAX_CUSTOM_FIELD_KEYS:
        raise errors.schema_error(
            "custom_fields", f"A maximum of {MAX_CUSTOM_FIELD_KEYS} custom fields is allowed"
        )
    return keys


def shown(
    store: Store,
    entity: str,
    values: Mapping[str, Any],
    keys: Sequence[str] | None,
    option_labels: bool,
) -> dict[str, Any]:
    """Served custom_fields: optionally only `keys`, option ids as {id, label} on request."""
    chosen = {k: v for k, v in values.items() if keys is None or k in keys}
    if not option_labels:
        return chosen
    fields = _by_code(store, entity)
    for key, value in chosen.items():
        field = fields.get(key)
        if field is None or value is None or field["field_type"] not in OPTION_TYPES:
            continue
        labels = {option["id"]: option["label"] for option in field["options"]}
        pick = [value] if field["field_type"] == "enum" else value
        labelled = [{"id": option, "label": labels[option]} for option in pick]
        chosen[key] = labelled[0] if field["field_type"] == "enum" else labelled
    return chosen
