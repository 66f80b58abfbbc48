"""The sandbox's v1 routes: users and activity types (v2 has none), notes and leads (v1
only, not deprecated).
The gateway maps `/api/v1/...` onto these `/v1/...` paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from daemon.dev.sandbox import bodies, clock, envelope, errors, queries, render, seed, v1_records
from daemon.dev.sandbox.envelope import Endpoint, ok_v1
from daemon.dev.sandbox.state import Store


def _equals(params: Mapping[str, str], names: tuple[str, ...]) -> dict[str, int]:
    chosen = {}
    for name in names:
        value = queries.int_param(params, name)
        if value is not None:
            chosen[name] = value
    return chosen


def _flags(params: Mapping[str, str]) -> dict[str, bool]:
    chosen = {}
    for pin in ("lead", "deal", "organization", "person", "project", "task"):
        name = f"pinned_to_{pin}_flag"
        text = params.get(name)
        if text:
            if text not in ("0", "1"):
                raise errors.bad_request(f"{name} must be 0 or 1")
            chosen[name] = text == "1"
    return chosen


def table(store: Store) -> list[tuple[str, str, Endpoint]]:
    async def list_users(request: Request) -> Response:
        with store.lock:
            users = sorted(store.users.values(), key=lambda u: u["id"])
            return ok_v1([render.user_v1(u, store.me_id) for u in users])

    async def get_me(request: Request) -> Response:
        with store.lock:
            me = render.user_v1(store.users[store.me_id], store.me_id, with_company=True)
            return ok_v1({**me, "company_id": store.company_id})

    async def get_user(request: Request) -> Response:
        with store.lock:
            user = store.users.get(request.path_params["id"])
            if user is None:
                raise errors.not_found("User not found or not accessible.")
            return ok_v1(render.user_v1(user, store.me_id))

    async def list_activity_types(request: Request) -> Response:
        # The company's types exist since its first user did. The schema says date-time
        # (its example shows the v1 "YYYY-MM-DD hh:mm:ss"): the schema is followed.
        with store.lock:
            since = clock.rfc3339(min(u["created"] for u in store.users.values()))
        return ok_v1(
            [
                {
                    "id": number,
                    "order_nr": number,
                    "name": label,
                    "key_string": key,
                    "icon_key": key,
                    "active_flag": True,
                    "color": "FFFFFF",
                    "is_custom_flag": False,
                    "add_time": since,
                    "update_time": since,
                }
                for number, (key, label) in enumerate(seed.ACTIVITY_TYPES, start=1)
            ]
        )

    async def list_notes(request: Request) -> Response:
        params = envelope.params(request)
        sort = v1_records.parse_sort(params.get("sort"), v1_records.NOTE_SORTS, "id ASC")
        equals: dict[str, Any] = _equals(
            params, ("user_id", "deal_id", "person_id", "org_id", "project_id", "task_id")
        )
        if params.get("lead_id"):
            equals["lead_id"] = params["lead_id"]
        equals.update(_flags(params))
        first = clock.parse_date(params["start_date"]) if params.get("start_date") else None
        last = clock.parse_date(params["end_date"]) if params.get("end_date") else None
        if (params.get("start_date") and first is None) or (params.get("end_date") and not last):
            raise errors.bad_request("start_date and end_date must be YYYY-MM-DD")

        def keep(note: dict[str, Any]) -> bool:
            day = clock.parse_any(note["add_time"]).date()
            return (
                all(note.get(key) == value for key, value in equals.items())
                and (first is None or day >= first)
                and (last is None or day <= last)
            )

        with store.lock:
            notes = [
                n
                for n in store.notes.values()
                if n["active_flag"] and store.visible("note", n["id"])
            ]
            page, extra = v1_records.offset_page(notes, params, sort, keep)
            return ok_v1([v1_records.render_note(store, n) for n in page], extra)

    async def add_note(request: Request) -> Response:
        body = await envelope.json_body(request)
        fields = bodies.validate(body, bodies.NOTE_FIELDS, ("content",))
        with store.lock:
            return ok_v1(v1_records.render_note(store, v1_records.add_note(store, fields)))

    async def get_note(request: Request) -> Response:
        note_id = request.path_params["id"]
        with store.lock:
            note = store.notes.get(note_id)
            if note is None or not note["active_flag"] or not store.visible("note", note_id):
                raise errors.not_found("Note not found")
            return ok_v1(v1_records.render_note(store, note))

    async def delete_note(request: Request) -> Response:
        with store.lock:
            store.delete_note(request.path_params["id"])
        return ok_v1(True)

    async def list_leads(request: Request) -> Response:
        params = envelope.params(request)
        if params.get("filter_id"):
            raise errors.bad_request("filter_id is not implemented by the sandbox")
        # "Leads are sorted by the time they were created, from oldest to newest."
        sort = v1_records.parse_sort(params.get("sort"), v1_records.LEAD_SORTS, "add_time ASC")
        equals = _equals(params, ("owner_id", "person_id", "organization_id"))

        def keep(lead: dict[str, Any]) -> bool:
            return all(lead.get(key) == value for key, value in equals.items())

        with store.lock:
            leads = [
                lead
                for lead in store.leads.values()
                if not lead["is_archived"] and store.visible("lead", lead["id"])
            ]
            page, extra = v1_records.offset_page(leads, params, sort, keep)
            return ok_v1([dict(lead) for lead in page], extra)

    async def get_lead(request: Request) -> Response:
        lead_id = request.path_params["id"]
        with store.lock:
            lead = store.leads.get(lead_id)
            if lead is None or not store.visible("lead", lead_id):
                raise errors.not_found("Lead not found")
            return ok_v1(dict(lead))

    async def delete_lead(request: Request) -> Response:
        with store.lock:
            lead = store.delete_lead(request.path_params["id"])
        return ok_v1({"id": lead["id"]})

    async def add_lead(request: Request) -> Response:
        body = await envelope.json_body(request)
        fields = bodies.validate(body, bodies.LEAD_FIELDS, ("title",))
        with store.lock:
            return ok_v1(dict(v1_records.add_lead(store, fields)), status=201)

    return [
        ("GET", "/v1/users", list_users),
        ("GET", "/v1/users/me", get_me),
        ("GET", "/v1/users/{id:int}", get_user),
        ("GET", "/v1/activityTypes", list_activity_types),
        ("GET", "/v1/notes", list_notes),
        ("POST", "/v1/notes", add_note),
        ("GET", "/v1/notes/{id:int}", get_note),
        ("DELETE", "/v1/notes/{id:int}", delete_note),
        ("GET", "/v1/leads", list_leads),
        ("POST", "/v1/leads", add_lead),
        ("GET", "/v1/leads/{id}", get_lead),
        ("DELETE", "/v1/leads/{id}", delete_lead),
    ]
