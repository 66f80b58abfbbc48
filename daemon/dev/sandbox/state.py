"""The sandbox's in-memory account: records, id counters, one lock, and Pipedrive's write rules.

Records are kept in their v2 response shape (times as RFC 3339 strings, which sort like the
times they encode); `render` adds what is computed per request. Every public method takes the
lock, because the app runs in a uvicorn thread while tests read and mutate from theirs.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from daemon.dev.sandbox import bodies, changes, clock, custom_fields, errors, render

DEFAULT_CURRENCY = "EUR"
DEFAULT_VISIBLE_TO = 3
KINDS = (
    "user", "pipeline", "stage", "person", "organization", "deal", "activity", "note", "lead",
    "field", "option",
)  # fmt: skip
# Record kinds that can be made visible late (`Store.hide`), with their tables' names.
HIDEABLE = {
    "deal": "deals",
    "activity": "activities",
    "person": "persons",
    "organization": "organizations",
    "note": "notes",
    "lead": "leads",
}


class Store:
    def __init__(self, now: Callable[[], datetime] = clock.utc_now) -> None:
        self.lock = threading.RLock()
        self.now = now
        self.users: dict[int, dict[str, Any]] = {}
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.stages: dict[int, dict[str, Any]] = {}
        self.persons: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.deal_deleted_at: dict[int, datetime] = {}
        # (kind, id) -> the sandbox-clock moment from which the record is served at all.
        self.hidden_until: dict[tuple[str, int | str], datetime] = {}
        # entity -> custom field definitions (v2 *Fields shape), in creation order.
        self.custom_fields: dict[str, list[dict[str, Any]]] = {
            "deal": [], "person": [], "organization": [], "activity": [],
        }  # fmt: skip
        self.me_id = 0
        # The account's company, as `GET /v1/users/me` names it; a second sandbox may differ.
        self.company_id = render.COMPANY_ID
        self._last_id = dict.fromkeys(KINDS, 0)
        # Told of every write of a record, under the lock (the webhook sender).
        self.listeners: list[changes.Listener] = []

    def _next_id(self, kind: str) -> int:
        # Monotonic per resource, never reused, like Pipedrive's autoincrement ids.
        self._last_id[kind] += 1
        return self._last_id[kind]

    def _stamp(self, at: datetime | None) -> str:
        return clock.rfc3339(at or self.now())

    # -- change notices -------------------------------------------------------------------------

    def snapshot(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """A record's state before a write, kept only when someone listens."""
        return copy.deepcopy(record) if self.listeners else None

    def emit(
        self,
        action: str,
        kind: str,
        record: dict[str, Any],
        before: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Tell the listeners of a write (call with the lock held, after the write)."""
        if not self.listeners:
            return
        change = changes.Change(
            action,
            kind,
            copy.deepcopy(record),
            before,
            at or clock.parse_any(record["update_time"]),
            self.me_id,
            self.company_id,
            tuple(sorted(u["id"] for u in self.users.values() if u["active_flag"])),
        )
        for listener in self.listeners:
            listener(change)

    def next_id(self, kind: str) -> int:
        with self.lock:
            return self._next_id(kind)

    # -- late visibility --------------------------------------------------------------------

    def table(self, kind: str) -> dict[Any, dict[str, Any]]:
        if kind not in HIDEABLE:
            raise ValueError(f"unknown kind {kind!r} (one of {', '.join(HIDEABLE)})")
        table: dict[Any, dict[str, Any]] = getattr(self, HIDEABLE[kind])
        return table

    def hide(self, kind: str, record_id: int | str, seconds: float) -> datetime:
        """Serve the record (in lists and by id) only from its update_time + `seconds` on:
        a commit that becomes visible late, after records written after it."""
        with self.lock:
            record = self.table(kind).get(record_id)
            if record is None:
                raise ValueError(f"no {kind} with id {record_id!r}")
            moment = clock.parse_any(record["update_time"]) + timedelta(seconds=seconds)
            self.hidden_until[(kind, record_id)] = moment
            return moment

    def visible(self, kind: str, record_id: int | str, now: datetime | None = None) -> bool:
        until = self.hidden_until.get((kind, record_id))
        return until is None or (now or self.now()) >= until

    # -- account structure ------------------------------------------------------------------

    def add_user(self, name: str, email: str, **extra: Any) -> dict[str, Any]:
        with self.lock:
            user_id = self._next_id("user")
            user = {
                "id": user_id,
                "name": name,
                "email": email,
                "created": extra.pop("created", None) or self.now(),
                "active_flag": True,
                "is_admin": user_id == 1,
                **extra,
            }
            self.users[user_id] = user
            if not self.me_id:
                self.me_id = user_id
            return user

    def add_pipeline(self, name: str, stage_names: list[str]) -> dict[str, Any]:
        with self.lock:
            stamp = self._stamp(None)
            pipeline: dict[str, Any] = {
                "id": self._next_id("pipeline"),
                "name": name,
                "order_nr": len(self.pipelines) + 1,
                "is_deleted": False,
                "is_deal_probability_enabled": False,
                "add_time": stamp,
                "update_time": stamp,
            }
            self.pipelines[pipeline["id"]] = pipeline
            step = 100 // (len(stage_names) or 1)
            for order_nr, stage_name in enumerate(stage_names, start=1):
                stage: dict[str, Any] = {
                    "id": self._next_id("stage"),
                    "order_nr": order_nr,
                    "name": stage_name,
                    "is_deleted": False,
                    "deal_probability": min(100, step * order_nr),
                    "pipeline_id": pipeline["id"],
                    "is_deal_rot_enabled": False,
                    "days_to_rotten": None,
                    "add_time": stamp,
                    "update_time": stamp,
                }
                self.stages[stage["id"]] = stage
            return pipeline

    def add_organization(self, name: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            stamp = self._stamp(fields.pop("add_time", None))
            org = {
                "id": self._next_id("organization"),
                "name": name,
                "owner_id": fields.pop("owner_id", self.me_id),
                "add_time": stamp,
                "update_time": stamp,
                "is_deleted": False,
                "visible_to": DEFAULT_VISIBLE_TO,
                "address": None,
                "label_ids": [],
                "website": None,
                "linkedin": None,
                "industry": None,
                "annual_revenue": None,
                "employee_count": None,
                "custom_fields": custom_fields.initial(self, "organization", None),
                **fields,
            }
            self.organizations[org["id"]] = org
            return org

    def add_person(self, name: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            stamp = self._stamp(fields.pop("add_time", None))
            first, _, last = name.partition(" ")
            email, phone = fields.pop("email", None), fields.pop("phone", None)
            person = {
                "id": self._next_id("person"),
                "name": name,
                "first_name": first,
                "last_name": last,
                "owner_id": fields.pop("owner_id", self.me_id),
                "org_id": fields.pop("org_id", None),
                "add_time": stamp,
                "update_time": stamp,
                "emails": [{"value": email, "primary": True, "label": "work"}] if email else [],
                "phones": [{"value": phone, "primary": True, "label": "work"}] if phone else [],
                "is_deleted": False,
                "visible_to": DEFAULT_VISIBLE_TO,
                "label_ids": [],
                "picture_id": None,
                "postal_address": None,
                "notes": None,
                "im": [],
                "birthday": None,
                "job_title": fields.pop("job_title", None),
                "custom_fields": custom_fields.initial(self, "person", None),
                **fields,
            }
            self.persons[person["id"]] = person
            return person

    # -- lookups ------------------------------------------------------------------------------

    def _require(self, table: Mapping[int, Any], name: str, key: str, value: int | None) -> None:
        if value is not None and value not in table:
            raise errors.bad_request(f"{name} with id {value} does not exist ({key})")

    def _first_stage(self, pipeline_id: int) -> int:
        stages = [s for s in self.stages.values() if s["pipeline_id"] == pipeline_id]
        if not stages:
            raise errors.bad_request(f"Pipeline {pipeline_id} has no stages")
        return int(min(stages, key=lambda s: (s["order_nr"], s["id"]))["id"])

    def _place(self, pipeline_id: int | None, stage_id: int | None, current: int | None) -> int:
        """The stage a deal lands in: stage_id implies its pipeline, pipeline_id alone its
        first stage (kept when unchanged), neither keeps the current or the default."""
        if stage_id is not None:
            stage = self.stages.get(stage_id)
            if stage is None:
                raise errors.bad_request(f"Stage with id {stage_id} does not exist (stage_id)")
            if pipeline_id is not None and stage["pipeline_id"] != pipeline_id:
                raise errors.bad_request(
                    f"Stage {stage_id} does not belong to pipeline {pipeline_id} "
                    f"(it is in pipeline {stage['pipeline_id']})"
                )
            return stage_id
        if pipeline_id is not None:
            self._require(self.pipelines, "Pipeline", "pipeline_id", pipeline_id)
            if current is not None and self.stages[current]["pipeline_id"] == pipeline_id:
                return current
            return self._first_stage(pipeline_id)
        if current is not None:
            return current
        default = min(self.pipelines.values(), key=lambda p: (p["order_nr"], p["id"]))
        return self._first_stage(default["id"])

    # -- deals --------------------------------------------------------------------------------

    def _apply_status(self, deal: dict[str, Any], fields: dict[str, Any], now: datetime) -> None:
        status = fields.get("status", deal["status"])
        for key, allowed in (("won_time", ("won",)), ("lost_time", ("lost",))):
            if fields.get(key) is not None and status not in allowed:
                raise errors.bad_request(f"{key} can only be set if deal status is {allowed[0]}")
        if fields.get("close_time") is not None and status not in ("won", "lost"):
            raise errors.bad_request("close_time can only be set if deal status is won or lost")
        if fields.get("lost_reason") is not None and status != "lost":
            raise errors.bad_request("lost_reason can only be set if deal status is lost")
        changed = status != deal["status"]
        deal["status"] = status
        if status in ("won", "lost") and (changed or f"{status}_time" in fields):
            moment = fields.get(f"{status}_time") or now
            deal[f"{status}_time"] = clock.rfc3339(moment)
            deal[f"local_{status}_date"] = moment.date().isoformat()
            closed = fields.get("close_time") or moment
            deal["close_time"] = clock.rfc3339(closed)
            deal["local_close_date"] = closed.date().isoformat()
        if changed and status == "open":
            deal["close_time"] = deal["local_close_date"] = None
        if status != "lost":
            deal["lost_reason"] = None
        elif "lost_reason" in fields:
            deal["lost_reason"] = fields["lost_reason"]

    def _check_links(self, fields: Mapping[str, Any]) -> None:
        self._require(self.users, "User", "owner_id", fields.get("owner_id"))
        self._require(self.persons, "Person", "person_id", fields.get("person_id"))
        self._require(self.organizations, "Organization", "org_id", fields.get("org_id"))
        probability = fields.get("probability")
        if probability is not None and not 0 <= probability <= 100:
            raise errors.schema_error("probability", "Parameter 'probability' must be 0..100")
        title = fields.get("title")
        if title is not None and not title.strip():
            raise errors.schema_error("title", "Parameter 'title' must not be empty")

    def create_deal(
        self,
        fields: dict[str, Any],
        origin: str = "API",
        add_time: datetime | None = None,
        update_time: datetime | None = None,
    ) -> dict[str, Any]:
        """`fields` already passed `bodies.validate(..., DEAL_FIELDS)`."""
        if fields.get("is_deleted") or fields.get("status") == "deleted":
            raise errors.bad_request("It is no longer possible to create an already deleted deal")
        with self.lock:
            self._check_links(fields)
            now = self.now()
            added = add_time or now
            stage_id = self._place(fields.get("pipeline_id"), fields.get("stage_id"), None)
            archived = bool(fields.get("is_archived"))
            deal: dict[str, Any] = {
                "id": self._next_id("deal"),
                "title": fields["title"],
                "creator_user_id": self.me_id,
                "owner_id": fields.get("owner_id", self.me_id),
                "value": fields.get("value", 0),
                "person_id": fields.get("person_id"),
                "org_id": fields.get("org_id"),
                "stage_id": stage_id,
                "pipeline_id": self.stages[stage_id]["pipeline_id"],
                "currency": fields.get("currency", DEFAULT_CURRENCY),
                "archive_time": None,
                "add_time": clock.rfc3339(added),
                "update_time": clock.rfc3339(update_time or now),
                "stage_change_time": None,
                "status": "open",
                "is_archived": archived,
                "is_deleted": False,
                "probability": fields.get("probability"),
                "lost_reason": None,
                "visible_to": fields.get("visible_to", DEFAULT_VISIBLE_TO),
                "close_time": None,
                "won_time": None,
                "lost_time": None,
                "local_won_date": None,
                "local_lost_date": None,
                "local_close_date": None,
                "expected_close_date": fields.get("expected_close_date"),
                "label_ids": fields.get("label_ids", []),
                "origin": origin,
                "origin_id": None,
                "channel": None,
                "channel_id": None,
                "source_lead_id": None,
                "acv": None,
                "arr": None,
                "mrr": None,
                "custom_fields": custom_fields.initial(self, "deal", fields.get("custom_fields")),
            }
            if archived:
                deal["archive_time"] = clock.rfc3339(fields.get("archive_time") or now)
            self._apply_status(deal, fields, added)
            self.deals[deal["id"]] = deal
            self.emit(changes.CREATE, "deal", deal)
            return deal

    def update_deal(
        self, deal_id: int, fields: dict[str, Any], at: datetime | None = None
    ) -> dict[str, Any]:
        """PATCH semantics; `fields` already passed `bodies.validate(..., DEAL_FIELDS)`.
        `at` (helpers only) stands in for now: the update_time and any stage/status times."""
        if fields.get("is_deleted") or fields.get("status") == "deleted":
            raise errors.bad_request("It is no longer possible to delete a deal with PATCH")
        with self.lock:
            deal = self.deals.get(deal_id)
            if deal is None or deal["is_deleted"]:
                raise errors.not_found("Deal not found")
            if deal["is_archived"] and fields.get("is_archived") is not False:
                raise errors.bad_request("Archived deals cannot be edited")
            self._check_links(fields)
            before = self.snapshot(deal)
            now = at or self.now()
            changed_fields = custom_fields.merged(
                self, "deal", deal["custom_fields"], fields.get("custom_fields")
            )
            stage_id = self._place(
                fields.get("pipeline_id"), fields.get("stage_id"), deal["stage_id"]
            )
            if stage_id != deal["stage_id"]:
                deal["stage_change_time"] = clock.rfc3339(now)
            deal["stage_id"] = stage_id
            deal["pipeline_id"] = self.stages[stage_id]["pipeline_id"]
            for key in (
                "title", "owner_id", "person_id", "org_id", "value", "currency", "probability",
                "visible_to", "expected_close_date", "label_ids",
            ):  # fmt: skip
                if key in fields:
                    deal[key] = fields[key]
            deal["custom_fields"] = changed_fields
            if "is_archived" in fields:
                deal["is_archived"] = fields["is_archived"]
                archived_at = fields.get("archive_time") or now
                deal["archive_time"] = clock.rfc3339(archived_at) if deal["is_archived"] else None
            self._apply_status(deal, fields, now)
            deal["update_time"] = clock.rfc3339(now)
            self.emit(changes.CHANGE, "deal", deal, before)
            return deal

    def archive_deal(self, deal_id: int) -> dict[str, Any]:
        with self.lock:
            deal = self.deals[deal_id]
            before = self.snapshot(deal)
            now = self.now()
            deal.update(is_archived=True, archive_time=clock.rfc3339(now))
            deal["update_time"] = clock.rfc3339(now)
            self.emit(changes.CHANGE, "deal", deal, before)
            return deal

    def delete_deal(
        self, deal_id: int, at: datetime | None = None, strict: bool = False
    ) -> dict[str, Any]:
        """Soft delete. `strict` (the API): an unknown or already deleted deal is a 404."""
        with self.lock:
            deal = self.deals.get(deal_id)
            if deal is None or (strict and deal["is_deleted"]):
                raise errors.not_found("Deal not found")
            before = self.snapshot(deal)
            moment = at or self.now()
            deal.update(is_deleted=True, status="deleted", update_time=clock.rfc3339(moment))
            self.deal_deleted_at[deal_id] = moment
            self.emit(changes.DELETE, "deal", deal, before, moment)
            return deal

    def delete_record(
        self, kind: str, record_id: int, at: datetime | None = None
    ) -> dict[str, Any]:
        """`DELETE /api/v2/{persons,organizations,activities}/{id}`: "marks as deleted" (gone
        from lists and GETs, a delete webhook sent). An unknown or deleted one is a 404."""
        with self.lock:
            record = self.table(kind).get(record_id)
            if record is None or record.get("is_deleted") or not self.visible(kind, record_id):
                raise errors.not_found(f"{kind.capitalize()} not found")
            before = self.snapshot(record)
            moment = at or self.now()
            record.update(is_deleted=True, update_time=clock.rfc3339(moment))
            self.emit(changes.DELETE, kind, record, before, moment)
            return record

    def delete_note(self, note_id: int, at: datetime | None = None) -> dict[str, Any]:
        """`DELETE /v1/notes/{id}`: gone from lists and GETs (kept here inactive), a delete
        webhook sent. An unknown or deleted one is a 404."""
        with self.lock:
            note = self.notes.get(note_id)
            if note is None or not note["active_flag"] or not self.visible("note", note_id):
                raise errors.not_found("Note not found")
            before = self.snapshot(note)
            moment = at or self.now()
            note.update(active_flag=False, update_time=clock.v1_time(moment))
            self.emit(changes.DELETE, "note", note, before, moment)
            return note

    def delete_lead(self, lead_id: str, at: datetime | None = None) -> dict[str, Any]:
        """`DELETE /v1/leads/{id}`: gone from lists and GETs (Pipedrive keeps no deleted lead
        to show), a delete webhook sent. An unknown or deleted one is a 404."""
        with self.lock:
            lead = self.leads.get(lead_id)
            if lead is None or not self.visible("lead", lead_id):
                raise errors.not_found("Lead not found")
            before = self.snapshot(lead)
            moment = at or self.now()
            del self.leads[lead_id]
            lead["update_time"] = clock.lead_time(moment)
            self.emit(changes.DELETE, "lead", lead, before, moment)
            return lead

    # -- activities ---------------------------------------------------------------------------

    def _activity_links(
        self, fields: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> tuple[int | None, list[dict[str, Any]] | None]:
        """(person_id, participants) after a write; None participants: unchanged."""
        self._require(self.users, "User", "owner_id", fields.get("owner_id"))
        self._require(self.deals, "Deal", "deal_id", fields.get("deal_id"))
        self._require(self.persons, "Person", "person_id", fields.get("person_id"))
        self._require(self.organizations, "Organization", "org_id", fields.get("org_id"))
        participants = fields.get("participants")
        for participant in participants or []:
            self._require(self.persons, "Person", "participants", participant.get("person_id"))
        person_id = fields.get("person_id", current["person_id"] if current else None)
        if participants:
            # v2 derives person_id from the primary participant (migration guide).
            primary = [p for p in participants if p.get("primary")] or participants[:1]
            person_id = primary[0].get("person_id")
        elif "participants" in fields:
            person_id = None if "person_id" not in fields else person_id
            participants = [] if person_id is None else [{"person_id": person_id, "primary": True}]
        elif "person_id" in fields or current is None:
            participants = [] if person_id is None else [{"person_id": person_id, "primary": True}]
        return person_id, participants

    def create_activity(
        self,
        fields: dict[str, Any],
        add_time: datetime | None = None,
        update_time: datetime | None = None,
    ) -> dict[str, Any]:
        """`fields` already passed `bodies.validate(..., ACTIVITY_FIELDS)`."""
        with self.lock:
            person_id, participants = self._activity_links(fields, None)
            now = self.now()
            done = bool(fields.get("done", False))
            activity = {
                "id": self._next_id("activity"),
                "subject": fields.get("subject", "Call"),
                "type": fields.get("type", "call"),
                "owner_id": fields.get("owner_id", self.me_id),
                "creator_user_id": self.me_id,
                "is_deleted": False,
                "add_time": clock.rfc3339(add_time or now),
                "update_time": clock.rfc3339(update_time or now),
                "deal_id": fields.get("deal_id"),
                "lead_id": fields.get("lead_id"),
                "person_id": person_id,
                "org_id": fields.get("org_id"),
                "project_id": fields.get("project_id"),
                "due_date": fields.get("due_date"),
                "due_time": fields.get("due_time"),
                "duration": fields.get("duration"),
                "busy": fields.get("busy", False),
                "done": done,
                "marked_as_done_time": clock.rfc3339(update_time or now) if done else None,
                "location": fields.get("location"),
                "participants": participants or [],
                "attendees": fields.get("attendees") or [],
                "conference_meeting_client": None,
                "conference_meeting_url": None,
                "conference_meeting_id": None,
                "public_description": fields.get("public_description"),
                "priority": fields.get("priority"),
                "note": fields.get("note"),
            }
            self.activities[activity["id"]] = activity
            self.emit(changes.CREATE, "activity", activity)
            return activity

    def update_activity(
        self, activity_id: int, fields: dict[str, Any], at: datetime | None = None
    ) -> dict[str, Any]:
        """PATCH semantics: `done` false -> true stamps marked_as_done_time, true -> false
        clears it; every PATCH moves update_time to now (or `at`, helpers only)."""
        with self.lock:
            activity = self.activities.get(activity_id)
            if activity is None or activity["is_deleted"]:
                raise errors.not_found("Activity not found")
            person_id, participants = self._activity_links(fields, activity)
            before = self.snapshot(activity)
            now = at or self.now()
            for key in (
                "subject", "type", "owner_id", "deal_id", "lead_id", "org_id", "project_id",
                "due_date", "due_time", "duration", "busy", "location", "attendees",
                "public_description", "priority", "note",
            ):  # fmt: skip
                if key in fields:
                    activity[key] = fields[key]
            activity["person_id"] = person_id
            if participants is not None:
                activity["participants"] = participants
            if "done" in fields and fields["done"] != activity["done"]:
                activity["done"] = fields["done"]
                activity["marked_as_done_time"] = clock.rfc3339(now) if fields["done"] else None
            activity["update_time"] = clock.rfc3339(now)
            self.emit(changes.CHANGE, "activity", activity, before)
            return activity


def helper_fields(
    fields: dict[str, Any], table: Mapping[str, bodies.Field]
) -> tuple[dict[str, Any], datetime | None, datetime | None]:
    """Validate helper kwargs like an API body, minus the admin-only add/update times."""
    times: list[datetime | None] = []
    for key in ("add_time", "update_time"):
        value = fields.pop(key, None)
        if isinstance(value, str):
            value = clock.parse_timestamp(value)
            if value is None:
                raise ValueError(f"{key}: not a timestamp")
        times.append(value)
    try:
        checked = bodies.validate(fields, table)
    except errors.ApiError as exc:
        raise ValueError(exc.body["error"]) from exc
    return checked, times[0], times[1]
