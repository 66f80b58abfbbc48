"""Persons and organizations through the v2 write routes: links checked, names split, custom
fields typed, update_time moved on every write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.dev.sandbox import changes, clock, custom_fields, errors
from daemon.dev.sandbox.state import Store

_PERSON_KEYS = (
    "owner_id", "org_id", "emails", "phones", "visible_to", "label_ids", "postal_address",
    "notes", "im", "birthday", "job_title",
)  # fmt: skip
_ORGANIZATION_KEYS = (
    "owner_id", "visible_to", "label_ids", "address", "website", "linkedin", "industry",
    "annual_revenue", "employee_count",
)  # fmt: skip


def _name(fields: dict[str, Any], required: bool) -> str | None:
    name = fields.get("name")
    if name is None and not required:
        return None
    if name is None or not name.strip():
        raise errors.schema_error("name", "Parameter 'name' must not be empty")
    return str(name)


def _check_links(store: Store, fields: dict[str, Any]) -> None:
    if fields.get("owner_id") is not None and fields["owner_id"] not in store.users:
        raise errors.bad_request(f"User with id {fields['owner_id']} does not exist (owner_id)")
    org_id = fields.get("org_id")
    if org_id is not None and org_id not in store.organizations:
        raise errors.bad_request(f"Organization with id {org_id} does not exist (org_id)")


def _split(person: dict[str, Any], name: str) -> None:
    first, _, last = name.partition(" ")
    person.update(name=name, first_name=first, last_name=last)


def create_person(
    store: Store, fields: dict[str, Any], update_time: datetime | None = None
) -> dict[str, Any]:
    """`fields` already passed `bodies.validate(..., PERSON_FIELDS)`; add_time may backdate."""
    with store.lock:
        name = _name(fields, required=True)
        if name is None:  # unreachable: required
            raise errors.schema_error("name", "Parameter 'name' is required")
        _check_links(store, fields)
        values = custom_fields.initial(store, "person", fields.get("custom_fields"))
        person = store.add_person(name, add_time=fields.get("add_time"))
        for key in _PERSON_KEYS:
            if key in fields:
                person[key] = fields[key]
        person["custom_fields"] = values
        person["update_time"] = clock.rfc3339(update_time or fields.get("add_time") or store.now())
        store.emit(changes.CREATE, "person", person)
        return person


def update_person(
    store: Store, person_id: int, fields: dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    with store.lock:
        person = store.persons.get(person_id)
        if person is None or person["is_deleted"]:
            raise errors.not_found("Person not found")
        name = _name(fields, required=False)
        _check_links(store, fields)
        before = store.snapshot(person)
        values = custom_fields.merged(
            store, "person", person["custom_fields"], fields.get("custom_fields")
        )
        if name is not None:
            _split(person, name)
        for key in _PERSON_KEYS:
            if key in fields:
                person[key] = fields[key]
        person["custom_fields"] = values
        person["update_time"] = clock.rfc3339(at or store.now())
        store.emit(changes.CHANGE, "person", person, before)
        return person


def create_organization(
    store: Store, fields: dict[str, Any], update_time: datetime | None = None
) -> dict[str, Any]:
    """`fields` already passed `bodies.validate(..., ORGANIZATION_FIELDS, ("name",))`."""
    with store.lock:
        name = _name(fields, required=True)
        if name is None:
            raise errors.schema_error("name", "Parameter 'name' is required")
        _check_links(store, fields)
        values = custom_fields.initial(store, "organization", fields.get("custom_fields"))
        org = store.add_organization(name, add_time=fields.get("add_time"))
        for key in _ORGANIZATION_KEYS:
            if key in fields:
                org[key] = fields[key]
        org["custom_fields"] = values
        org["update_time"] = clock.rfc3339(update_time or fields.get("add_time") or store.now())
        store.emit(changes.CREATE, "organization", org)
        return org


def update_organization(
    store: Store, org_id: int, fields: dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    with store.lock:
        org = store.organizations.get(org_id)
        if org is None or org["is_deleted"]:
            raise errors.not_found("Organization not found")
        name = _name(fields, required=False)
        _check_links(store, fields)
        before = store.snapshot(org)
        values = custom_fields.merged(
            store, "organization", org["custom_fields"], fields.get("custom_fields")
        )
        if name is not None:
            org["name"] = name
        for key in _ORGANIZATION_KEYS:
            if key in fields:
                org[key] = fields[key]
        org["custom_fields"] = values
        org["update_time"] = clock.rfc3339(at or store.now())
        store.emit(changes.CHANGE, "organization", org, before)
        return org
