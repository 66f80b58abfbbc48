"""Pure mapping of Pipedrive v2 objects onto the connector schemas downstream consumers expect."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from daemon import times
from daemon.errors import PayloadError as PayloadError  # re-exported: mapping errors
from daemon.pipedrive.lookups import ById, Lookups

DEAL_INCLUDE_FIELDS = ",".join(
    (
        "next_activity_id",
        "last_activity_id",
        "products_count",
        "files_count",
        "notes_count",
        "followers_count",
        "email_messages_count",
        "activities_count",
        "done_activities_count",
        "undone_activities_count",
        "participants_count",
    )
)
"""`include_fields` for `GET /api/v2/deals[/{id}]`: v2 leaves these fields out unless asked."""

_DEAL_COUNTS = tuple(name for name in DEAL_INCLUDE_FIELDS.split(",") if name.endswith("_count"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    """Reads typed fields of one Pipedrive object, raising `PayloadError` naming it."""

    def __init__(self, kind: str, obj: Any, role: str | None = None) -> None:
        suffix = f" ({role})" if role else ""
        if not isinstance(obj, Mapping):
            raise PayloadError(
                f"{kind}{suffix}", "id", f"expected a JSON object, got {type(obj).__name__}"
            )
        self._obj: Mapping[str, Any] = obj
        self.name = f"{kind}{suffix}"
        ident: Any = obj.get("id")
        if not _is_int(ident):
            self.fail("id", "missing" if ident is None else f"expected an integer, got {ident!r}")
        self.id: int = ident
        self.name = f"{kind} {ident}{suffix}"

    def fail(self, field: str, problem: str) -> NoReturn:
        raise PayloadError(self.name, field, problem)

    def raw(self, field: str) -> Any:
        return self._obj.get(field)

    def _get(self, field: str, expected: tuple[type, ...], label: str) -> Any:
        value = self._obj.get(field)
        if value is not None and (
            not isinstance(value, expected) or (bool not in expected and isinstance(value, bool))
        ):
            self.fail(field, f"expected {label}, got {value!r}")
        return value

    def integer(self, field: str) -> int | None:
        value: int | None = self._get(field, (int,), "an integer")
        return value

    def number(self, field: str) -> int | float | None:
        value: int | float | None = self._get(field, (int, float), "a number")
        return value

    def string(self, field: str) -> str | None:
        value: str | None = self._get(field, (str,), "a string")
        return value

    def boolean(self, field: str) -> bool | None:
        value: bool | None = self._get(field, (bool,), "a boolean")
        return value

    def _text(self, field: str) -> str | None:
        # Pipedrive has used "" as well as null for "no value" in date and time fields.
        return self.string(field) or None

    def instant(self, field: str) -> datetime | None:
        text = self._text(field)
        if text is None:
            return None
        try:
            return times.parse_date_time(text)
        except ValueError as error:
            self.fail(field, str(error))

    def required_instant(self, field: str) -> datetime:
        value = self.instant(field)
        if value is None:
            self.fail(field, "missing")
        return value

    def day(self, field: str) -> date | None:
        text = self._text(field)
        if text is None:
            return None
        try:
            return times.parse_date(text)
        except ValueError as error:
            self.fail(field, str(error))

    def clock(self, field: str, *, duration: bool = False) -> tuple[int, int, int] | None:
        """(hours, minutes, seconds) of a `HH:MM[:SS]` time of day or duration."""
        text = self._text(field)
        if text is None:
            return None
        try:
            return times.parse_clock(text, length=duration)
        except ValueError as error:
            self.fail(field, str(error))


def _format_instant(value: datetime | None) -> str | None:
    return None if value is None else times.format_connector(value)


def _format_day(value: date | None) -> str | None:
    return None if value is None else times.format_date(value)


def _hh_mm(value: tuple[int, int, int] | None) -> str | None:
    # The connector's HH:MM has no seconds; Pipedrive schedules in whole minutes anyway.
    return None if value is None else times.format_clock(value, seconds=False)


def _hh_mm_ss(value: tuple[int, int, int] | None) -> str | None:
    return None if value is None else times.format_clock(value)


def _related(kind: str, objects: ById, ident: int | None, role: str) -> _Reader | None:
    """A reader for the looked-up object `ident`, or None when there is none to read."""
    if ident is None or ident not in objects:
        return None
    return _Reader(kind, objects[ident], role)


def _user(lookups: Lookups, ident: int | None, role: str) -> dict[str, Any] | None:
    if ident is None:
        return None
    user = _related("user", lookups.users, ident, role)
    return {
        "id": ident,
        "name": user.string("name") if user else None,
        "email": user.string("email") if user else None,
    }


def _name(kind: str, objects: ById, ident: int | None, role: str, field: str = "name") -> Any:
    related = _related(kind, objects, ident, role)
    return related.string(field) if related else None


def _named_ref(kind: str, objects: ById, ident: int | None, role: str) -> dict[str, Any] | None:
    # v1 deals nested person/org as {name, value}; the connector kept that shape.
    if ident is None:
        return None
    return {"name": _name(kind, objects, ident, role), "value": ident}


def _next_activity(act: _Reader | None) -> dict[str, Any]:
    if act is None:
        return dict.fromkeys(
            (
                "next_activity_date",
                "next_activity_time",
                "next_activity_subject",
                "next_activity_type",
                "next_activity_duration",
                "next_activity_note",
            )
        )
    due_date = act.day("due_date")
    due_time = act.clock("due_time")
    moment = None
    if due_date is not None and due_time is not None:
        # Pipedrive keeps due_time in UTC; the connector's next_activity_time is a full date-time.
        hours, minutes, seconds = due_time
        moment = datetime(
            due_date.year, due_date.month, due_date.day, hours, minutes, seconds, tzinfo=UTC
        )
    return {
        "next_activity_date": _format_day(due_date),
        "next_activity_time": _format_instant(moment),
        "next_activity_subject": act.string("subject"),
        "next_activity_type": act.string("type"),
        # v1 deals gave this as HH:MM:SS ("00:30:00"), unlike an activity's own HH:MM duration.
        "next_activity_duration": _hh_mm_ss(act.clock("duration", duration=True)),
        "next_activity_note": act.string("note"),
    }


def _visible_to(deal: _Reader) -> str | None:
    # v1 and the connector give the visibility code as a string ("3"); v2 gives an integer.
    value = deal.raw("visible_to")
    if value is None:
        return None
    if _is_int(value) or (isinstance(value, str) and value.isdigit()):
        return str(value)
    deal.fail("visible_to", f"expected an integer visibility code, got {value!r}")


def deal_v2(deal: Mapping[str, Any], lookups: Lookups) -> dict[str, Any]:
    """`DealResponseV2` for a v2 deal (fetched with `include_fields=DEAL_INCLUDE_FIELDS`)."""
    d = _Reader("deal", deal)
    role_of = f"of deal {d.id}"
    status = d.string("status")
    next_id = d.integer("next_activity_id")
    last_id = d.integer("last_activity_id")
    next_act = _related("activity", lookups.activities, next_id, f"next activity {role_of}")
    last_act = _related("activity", lookups.activities, last_id, f"last activity {role_of}")
    upcoming = _next_activity(next_act)
    counts = {name: d.integer(name) for name in _DEAL_COUNTS}
    return {
        "id": d.id,
        "creator_user_id": _user(lookups, d.integer("creator_user_id"), f"creator {role_of}"),
        "user_id": _user(lookups, d.integer("owner_id"), f"owner {role_of}"),
        "person_id": _named_ref("person", lookups.persons, d.integer("person_id"), role_of),
        "org_id": _named_ref("organization", lookups.organizations, d.integer("org_id"), role_of),
        "status": status,
        "title": d.string("title"),
        "value": d.number("value"),
        "currency": d.string("currency"),
        "add_time": _format_instant(d.required_instant("add_time")),
        "update_time": _format_instant(d.instant("update_time")),
        "stage_id": d.integer("stage_id"),
        "stage_change_time": _format_instant(d.instant("stage_change_time")),
        "active": None if status is None else status == "open",
        "deleted": d.boolean("is_deleted"),
        "next_activity_date": upcoming["next_activity_date"],
        "next_activity_time": upcoming["next_activity_time"],
        "next_activity_id": next_id,
        "last_activity_id": last_id,
        "last_activity_date": _format_day(last_act.day("due_date")) if last_act else None,
        "lost_reason": d.string("lost_reason"),
        "visible_to": _visible_to(d),
        "close_time": _format_instant(d.instant("close_time")),
        "pipeline_id": d.integer("pipeline_id"),
        "products_count": counts["products_count"],
        "files_count": counts["files_count"],
        "notes_count": counts["notes_count"],
        "followers_count": counts["followers_count"],
        "email_messages_count": counts["email_messages_count"],
        "activities_count": counts["activities_count"],
        "done_activities_count": counts["done_activities_count"],
        "undone_activities_count": counts["undone_activities_count"],
        # Neither v1 nor v2 has ever exposed this count; only the connector's schema names it.
        "reference_activities_count": None,
        "participants_count": counts["participants_count"],
        "expected_close_date": _format_day(d.day("expected_close_date")),
        "next_activity_subject": upcoming["next_activity_subject"],
        "next_activity_type": upcoming["next_activity_type"],
        "next_activity_duration": upcoming["next_activity_duration"],
        "next_activity_note": upcoming["next_activity_note"],
    }


def deal_legacy(deal: Mapping[str, Any], lookups: Lookups) -> dict[str, Any]:
    """`DealResponse`: `DealResponseV2` plus `stage_name` (after `stage_id`, as in the schema)."""
    mapped = deal_v2(deal, lookups)
    stage_name = _name("stage", lookups.stages, mapped["stage_id"], f"of deal {mapped['id']}")
    result: dict[str, Any] = {}
    for key, value in mapped.items():
        result[key] = value
        if key == "stage_id":
            result["stage_name"] = stage_name
    return result


def activity(activity: Mapping[str, Any], lookups: Lookups) -> dict[str, Any]:
    """`ActivityResponse` for a v2 activity."""
    a = _Reader("activity", activity)
    role_of = f"of activity {a.id}"
    owner_id = a.integer("owner_id")
    deal_id = a.integer("deal_id")
    org_id = a.integer("org_id")
    person_id = a.integer("person_id")
    return {
        "id": a.id,
        "user_id": owner_id,
        "done": a.boolean("done"),
        "type": a.string("type"),
        "due_date": _format_day(a.day("due_date")),
        "due_time": _hh_mm(a.clock("due_time")),
        "duration": _hh_mm(a.clock("duration", duration=True)),
        "subject": a.string("subject"),
        "deal_id": deal_id,
        "deal_title": _name("deal", lookups.deals, deal_id, role_of, field="title"),
        "org_id": org_id,
        "org_name": _name("organization", lookups.organizations, org_id, role_of),
        "person_id": person_id,
        "person_name": _name("person", lookups.persons, person_id, role_of),
        "add_time": _format_instant(a.required_instant("add_time")),
        "update_time": _format_instant(a.instant("update_time")),
        "marked_as_done_time": _format_instant(a.instant("marked_as_done_time")),
        # API v2 dropped the Google Calendar fields; why not v1 /recents: docs/payloads.md.
        "gcal_event_id": None,
        "google_calendar_id": None,
        "note": a.string("note"),
        "assigned_to_user_id": owner_id,
        "created_by_user_id": a.integer("creator_user_id"),
        "owner_name": _name("user", lookups.users, owner_id, f"owner {role_of}"),
    }


def stage(stage: Mapping[str, Any]) -> dict[str, Any]:
    """`StageResponse` for a v2 stage."""
    s = _Reader("stage", stage)
    return {"id": s.id, "name": s.string("name")}
