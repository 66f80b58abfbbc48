"""Response shapes: stored records plus what is computed per request (include_fields, v1 users)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from daemon.dev.sandbox import clock

DEAL_INCLUDE_FIELDS = (
    "next_activity_id",
    "last_activity_id",
    "first_won_time",
    "products_count",
    "files_count",
    "notes_count",
    "followers_count",
    "email_messages_count",
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "participants_count",
    "last_incoming_mail_time",
    "last_outgoing_mail_time",
    "smart_bcc_email",
    "source_lead_id",
)
ACTIVITY_INCLUDE_FIELDS = ("attendees",)

# Present in the store for bookkeeping but served only through include_fields.
_DEAL_INCLUDE_ONLY = frozenset({"source_lead_id"})
_ACTIVITY_INCLUDE_ONLY = frozenset({"attendees"})

COMPANY_ID = 7700001
COMPANY = {
    "company_id": COMPANY_ID,
    "company_name": "Sandbox Trading Ltd",
    "company_domain": "sandbox",
    "company_country": "EE",
    "company_industry": "IT Services",
    "language": {"language_code": "en", "country_code": "US"},
}


def _deal_extras(
    deal: Mapping[str, Any], activities: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    mine = [a for a in activities if a["deal_id"] == deal["id"] and not a["is_deleted"]]
    done = [a for a in mine if a["done"]]
    undone = [a for a in mine if not a["done"]]
    upcoming = sorted(undone, key=lambda a: (a["due_date"] is None, a["due_date"] or "", a["id"]))
    finished = sorted(done, key=lambda a: (a["marked_as_done_time"] or "", a["id"]))
    return {
        "next_activity_id": upcoming[0]["id"] if upcoming else None,
        "last_activity_id": finished[-1]["id"] if finished else None,
        "first_won_time": deal["won_time"],
        "products_count": 0,
        "files_count": 0,
        "notes_count": 0,
        "followers_count": 1,
        "email_messages_count": 0,
        "activities_count": len(mine),
        "done_activities_count": len(done),
        "undone_activities_count": len(undone),
        "participants_count": 1 if deal["person_id"] is not None else 0,
        "last_incoming_mail_time": None,
        "last_outgoing_mail_time": None,
        "smart_bcc_email": f"sandbox+deal{deal['id']}@pipedrivemail.com",
        "source_lead_id": deal["source_lead_id"],
    }


def deal(
    record: Mapping[str, Any],
    include: Sequence[str] = (),
    activities: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    shaped = {k: v for k, v in record.items() if k not in _DEAL_INCLUDE_ONLY}
    if include:
        extras = _deal_extras(record, activities)
        shaped.update({name: extras[name] for name in include})
    return shaped


def activity(record: Mapping[str, Any], include: Sequence[str] = ()) -> dict[str, Any]:
    shaped = {k: v for k, v in record.items() if k not in _ACTIVITY_INCLUDE_ONLY}
    if "attendees" in include:
        shaped["attendees"] = record["attendees"]
    return shaped


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return dict(record)


def user_v1(record: Mapping[str, Any], me_id: int, with_company: bool = False) -> dict[str, Any]:
    """The v1 user object (v1 times are 'YYYY-MM-DD HH:MM:SS')."""
    created = clock.v1_time(record["created"])
    shaped: dict[str, Any] = {
        "id": record["id"],
        "name": record["name"],
        "default_currency": "EUR",
        "locale": "en_US",
        "lang": 1,
        "email": record["email"],
        "phone": record.get("phone"),
        "activated": True,
        "last_login": created,
        "created": created,
        "modified": created,
        "has_created_company": record["id"] == 1,
        "access": [
            {
                "app": "sales",
                "admin": record["is_admin"],
                "permission_set_id": f"00000000-0000-4000-8000-{record['id']:012d}",
            }
        ],
        "active_flag": record["active_flag"],
        "timezone_name": "Europe/Tallinn",
        "timezone_offset": "+02:00",
        "role_id": 1,
        "icon_url": None,
        "is_you": record["id"] == me_id,
        "is_deleted": False,
    }
    if with_company:
        shaped.update(COMPANY)
    return shaped
