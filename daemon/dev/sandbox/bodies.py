"""Strict validation of v2 write bodies: JSON types are never coerced and unknown keys fail.

Field tables follow the spec's request schemas: v2 `POST/PATCH` of deals, activities, persons
and organizations, v1 `POST /notes` and `POST /leads`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.dev.sandbox import clock, errors


@dataclass(frozen=True)
class Field:
    kind: str  # string, integer, number, boolean, date, timestamp, clock, ints, object, ...
    nullable: bool = False
    choices: tuple[Any, ...] = ()


_ADDRESS_KEYS = (
    "value",
    "country",
    "admin_area_level_1",
    "admin_area_level_2",
    "locality",
    "sublocality",
    "route",
    "street_number",
    "subpremise",
    "postal_code",
)

DEAL_FIELDS: Mapping[str, Field] = {
    "title": Field("string"),
    "owner_id": Field("integer"),
    "person_id": Field("integer"),
    "org_id": Field("integer"),
    "pipeline_id": Field("integer"),
    "stage_id": Field("integer"),
    "value": Field("number"),
    "currency": Field("string"),
    "is_deleted": Field("boolean"),
    "is_archived": Field("boolean"),
    "archive_time": Field("timestamp"),
    "status": Field("string", choices=("open", "won", "lost", "deleted")),
    "probability": Field("number", nullable=True),
    "lost_reason": Field("string", nullable=True),
    "visible_to": Field("integer", choices=(1, 3, 5, 7)),
    "close_time": Field("timestamp", nullable=True),
    "won_time": Field("timestamp"),
    "lost_time": Field("timestamp"),
    "expected_close_date": Field("date"),
    "label_ids": Field("ints"),
    "custom_fields": Field("object"),
}

ACTIVITY_FIELDS: Mapping[str, Field] = {
    "subject": Field("string"),
    "type": Field("string"),
    "owner_id": Field("integer"),
    "deal_id": Field("integer"),
    "lead_id": Field("string"),
    "person_id": Field("integer"),
    "org_id": Field("integer"),
    "project_id": Field("integer"),
    "due_date": Field("date"),
    "due_time": Field("clock"),
    "duration": Field("clock"),
    "busy": Field("boolean"),
    "done": Field("boolean"),
    "location": Field("address"),
    "participants": Field("participants"),
    "attendees": Field("attendees"),
    "public_description": Field("string"),
    "priority": Field("integer"),
    "note": Field("string"),
}

PERSON_FIELDS: Mapping[str, Field] = {
    "name": Field("string"),
    "owner_id": Field("integer"),
    "org_id": Field("integer"),
    "add_time": Field("timestamp"),
    "emails": Field("contacts"),
    "phones": Field("contacts"),
    "visible_to": Field("integer", choices=(1, 3, 5, 7)),
    "label_ids": Field("ints"),
    "postal_address": Field("address"),
    "notes": Field("string"),
    "im": Field("contacts"),
    "birthday": Field("date"),
    "job_title": Field("string"),
    "marketing_status": Field(
        "string", choices=("no_consent", "unsubscribed", "subscribed", "archived")
    ),
    "custom_fields": Field("object"),
}
# PATCH /persons/{id} and /organizations/{id}: as POST minus add_time.
PERSON_UPDATE_FIELDS: Mapping[str, Field] = {
    k: v for k, v in PERSON_FIELDS.items() if k != "add_time"
}

ORGANIZATION_FIELDS: Mapping[str, Field] = {
    "name": Field("string"),
    "owner_id": Field("integer"),
    "add_time": Field("timestamp"),
    "visible_to": Field("integer", choices=(1, 3, 5, 7)),
    "label_ids": Field("ints"),
    "address": Field("address"),
    "website": Field("string", nullable=True),
    "linkedin": Field("string", nullable=True),
    "industry": Field("integer", nullable=True),
    "annual_revenue": Field("integer", nullable=True),
    "employee_count": Field("integer", nullable=True),
    "custom_fields": Field("object"),
}
ORGANIZATION_UPDATE_FIELDS: Mapping[str, Field] = {
    k: v for k, v in ORGANIZATION_FIELDS.items() if k != "add_time"
}

# v1 POST /notes and POST /leads (strict here too; see the README).
NOTE_FIELDS: Mapping[str, Field] = {
    "content": Field("string"),
    "lead_id": Field("string"),
    "deal_id": Field("integer"),
    "person_id": Field("integer"),
    "org_id": Field("integer"),
    "project_id": Field("integer"),
    "task_id": Field("integer"),
    "user_id": Field("integer"),
    "add_time": Field("timestamp"),
    "pinned_to_lead_flag": Field("flag"),
    "pinned_to_deal_flag": Field("flag"),
    "pinned_to_organization_flag": Field("flag"),
    "pinned_to_person_flag": Field("flag"),
    "pinned_to_project_flag": Field("flag"),
    "pinned_to_task_flag": Field("flag"),
}
LEAD_FIELDS: Mapping[str, Field] = {
    "title": Field("string"),
    "owner_id": Field("integer"),
    "label_ids": Field("strings"),
    "person_id": Field("integer"),
    "organization_id": Field("integer"),
    "value": Field("money", nullable=True),
    "expected_close_date": Field("date"),
    "visible_to": Field("string", choices=("1", "3", "5", "7")),
    "was_seen": Field("boolean"),
    "origin_id": Field("string", nullable=True),
    "channel": Field("integer", nullable=True),
    "channel_id": Field("string", nullable=True),
}

_ATTENDEE_FIELDS: Mapping[str, Field] = {
    "email": Field("string"),
    "name": Field("string"),
    "status": Field("string"),
    "is_organizer": Field("boolean"),
    "person_id": Field("integer"),
    "user_id": Field("integer"),
}
_PARTICIPANT_FIELDS: Mapping[str, Field] = {
    "person_id": Field("integer"),
    "primary": Field("boolean"),
}
_ADDRESS_FIELDS: Mapping[str, Field] = {key: Field("string") for key in _ADDRESS_KEYS}
_CONTACT_FIELDS: Mapping[str, Field] = {
    "value": Field("string"),
    "primary": Field("boolean"),
    "label": Field("string"),
}
_MONEY_FIELDS: Mapping[str, Field] = {"amount": Field("number"), "currency": Field("string")}

_EXPECTED = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "date": "a date in YYYY-MM-DD format",
    "timestamp": "a date and time in YYYY-MM-DD HH:MM:SS or RFC3339 format",
    "clock": "a time in HH:MM or HH:MM:SS format",
    "ints": "an array of integers",
    "object": "object",
    "address": "object",
    "participants": "an array of objects",
    "attendees": "an array of objects",
    "contacts": "an array of objects",
    "strings": "an array of strings",
    "money": "an object with amount and currency",
    "flag": "0 or 1",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _convert(key: str, spec: Field, value: Any) -> Any:
    """The validated value (timestamps as datetimes, clock times as HH:MM:SS) or raise."""
    problem = f"Parameter '{key}' must be {_EXPECTED[spec.kind]}"
    if value is None:
        if spec.nullable:
            return None
        raise errors.schema_error(key, f"Parameter '{key}' must not be null")
    kind = spec.kind
    result: Any = value
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = _is_int(value)
    elif kind == "number":
        ok = _is_int(value) or isinstance(value, float)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        ok = isinstance(value, str) and clock.parse_date(value) is not None
    elif kind == "timestamp":
        result = clock.parse_timestamp(value) if isinstance(value, str) else None
        ok = result is not None
    elif kind == "clock":
        result = clock.parse_clock_time(value) if isinstance(value, str) else None
        ok = result is not None
    elif kind == "ints":
        ok = isinstance(value, list) and all(_is_int(item) for item in value)
    elif kind == "object":
        ok = isinstance(value, dict)
    elif kind == "address":
        ok = isinstance(value, dict)
        result = validate(value, _ADDRESS_FIELDS, prefix=f"{key}.") if ok else None
    elif kind == "money":
        ok = isinstance(value, dict)
        if ok:
            result = validate(value, _MONEY_FIELDS, ("amount", "currency"), prefix=f"{key}.")
    elif kind == "strings":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind == "flag":
        ok = _is_int(value) and value in (0, 1)
    else:
        fields = {
            "participants": _PARTICIPANT_FIELDS,
            "attendees": _ATTENDEE_FIELDS,
            "contacts": _CONTACT_FIELDS,
        }[kind]
        ok = isinstance(value, list) and all(isinstance(item, dict) for item in value)
        if ok:
            result = [validate(item, fields, prefix=f"{key}.") for item in value]
    if not ok:
        raise errors.schema_error(key, problem)
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(str(choice) for choice in spec.choices)
        raise errors.schema_error(key, f"Parameter '{key}' must be one of {allowed}")
    return result


def validate(
    body: Any,
    fields: Mapping[str, Field],
    required: Sequence[str] = (),
    prefix: str = "",
) -> dict[str, Any]:
    """Check a decoded JSON body against a field table; return the converted values."""
    if not isinstance(body, dict):
        raise errors.schema_error(prefix.rstrip(".") or "body", "must be a JSON object")
    for key in body:
        if key not in fields:
            name = f"{prefix}{key}"
            raise errors.schema_error(name, f"Parameter '{name}' is not allowed for this request")
    for key in required:
        if key not in body:
            name = f"{prefix}{key}"
            raise errors.schema_error(name, f"Parameter '{name}' is required")
    return {key: _convert(f"{prefix}{key}", fields[key], value) for key, value in body.items()}
