"""List-endpoint query parameters: parse them as strictly as v2 does, then filter and page."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daemon.dev.sandbox import clock, errors, pagination

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_IDS = 100
DELETED_VISIBLE_FOR = timedelta(days=30)
DEAL_STATUSES = ("open", "won", "lost", "deleted")


@dataclass(frozen=True)
class ListQuery:
    """Everything a v2 list request asks for, already validated."""

    equals: Mapping[str, Any] = field(default_factory=dict)
    ids: frozenset[int] | None = None
    updated_since: str | None = None
    updated_until: str | None = None
    sort_by: str = "id"
    sort_direction: str = "asc"
    limit: int = DEFAULT_LIMIT
    cursor: pagination.Cursor | None = None


def _invalid(name: str, expected: str) -> errors.ApiError:
    return errors.schema_error(name, f"Parameter '{name}' must be {expected}")


def int_param(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if not text.lstrip("-").isdigit():
        raise _invalid(name, "integer")
    return int(text)


def bool_param(params: Mapping[str, str], name: str) -> bool | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise _invalid(name, "boolean")


def csv_param(params: Mapping[str, str], name: str, allowed: Sequence[str]) -> list[str] | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    values = [part.strip() for part in text.split(",") if part.strip()]
    for value in values:
        if value not in allowed:
            raise _invalid(name, f"one of {', '.join(allowed)} (got '{value}')")
    return values


def ids_param(params: Mapping[str, str]) -> frozenset[int] | None:
    text = params.get("ids")
    if text is None or text == "":
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise _invalid("ids", "a comma separated list of integers")
    if len(parts) > MAX_IDS:
        raise errors.schema_error("ids", f"A maximum of {MAX_IDS} ids is allowed")
    return frozenset(int(part) for part in parts)


def time_param(params: Mapping[str, str], name: str) -> str | None:
    """Normalised to the stored form, so filters compare strings like the sort does."""
    text = params.get(name)
    if text is None or text == "":
        return None
    moment = clock.parse_rfc3339(text)
    if moment is None:
        raise _invalid(name, "an RFC3339 timestamp without fractions, e.g. 2025-01-01T10:20:00Z")
    return clock.rfc3339(moment)


def parse_list_query(
    params: Mapping[str, str],
    sort_fields: Sequence[str],
    int_filters: Sequence[str] = (),
    time_filters: bool = True,
) -> ListQuery:
    """Parse the paging, sorting, id and range parameters that every v2 list shares."""
    limit = int_param(params, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise errors.schema_error("limit", f"Parameter 'limit' must be between 1 and {MAX_LIMIT}")
    sort_by = (csv_param(params, "sort_by", sort_fields) or ["id"])[0]
    direction = (csv_param(params, "sort_direction", ("asc", "desc")) or ["asc"])[0]
    cursor = None
    if params.get("cursor"):
        cursor = pagination.decode_cursor(params["cursor"], sort_fields)
        if cursor is None:
            raise errors.bad_request("Invalid cursor")
    equals = {}
    for name in int_filters:
        value = int_param(params, name)
        if value is not None:
            equals[name] = value
    return ListQuery(
        equals=equals,
        ids=ids_param(params),
        updated_since=time_param(params, "updated_since") if time_filters else None,
        updated_until=time_param(params, "updated_until") if time_filters else None,
        sort_by=sort_by,
        sort_direction=direction,
        limit=limit,
        cursor=cursor,
    )


def matches(item: Mapping[str, Any], query: ListQuery) -> bool:
    if query.ids is not None and item["id"] not in query.ids:
        return False
    if any(item.get(name) != value for name, value in query.equals.items()):
        return False
    if query.updated_since is not None and item["update_time"] < query.updated_since:
        return False
    return query.updated_until is None or item["update_time"] < query.updated_until


def select(
    items: Iterable[Mapping[str, Any]], query: ListQuery
) -> tuple[list[Mapping[str, Any]], str | None]:
    """The page of matching items and the next cursor."""
    chosen = [item for item in items if matches(item, query)]
    return pagination.paginate(
        chosen, query.sort_by, query.sort_direction, query.cursor, query.limit
    )


def deal_listed(
    deal: Mapping[str, Any],
    statuses: Sequence[str] | None,
    deleted_at: datetime | None,
    now: datetime,
) -> bool:
    """Archived deals never; deleted ones only on request and only for 30 days."""
    if deal["is_archived"]:
        return False
    if deal["is_deleted"]:
        if statuses is None or "deleted" not in statuses:
            return False
        return deleted_at is not None and now - deleted_at <= DELETED_VISIBLE_FOR
    return statuses is None or deal["status"] in statuses
