"""The connector's eight actions as a typed async client: validate, call API v2, map once."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any, TypeAlias

from daemon import payloads, times
from daemon.errors import ArgumentError, PipedriveBadRequest
from daemon.payloads import shapes
from daemon.pipedrive.client import PipedriveClient
from daemon.pipedrive.lookups import LookupCache

DealResponse: TypeAlias = dict[str, Any]
"""The connector's `DealResponse` (`payloads.DEAL_LEGACY`)."""
DealResponseV2: TypeAlias = dict[str, Any]
"""The connector's `DealResponseV2` (`payloads.DEAL_V2`)."""
ActivityResponse: TypeAlias = dict[str, Any]
StageResponse: TypeAlias = dict[str, Any]

# Ids come from the command line as text and from Python as int; the connector types several
# of them as strings, so both are accepted and checked the same way.
Id: TypeAlias = int | str
Number: TypeAlias = int | float | str

DEAL_STATUSES = ("open", "won", "lost")  # "deleted" cannot be set through API v2 writes
# Pipedrive's visibility codes: 1 owner & followers, 3 entire company, 5 owner's visibility
# group, 7 owner's visibility group and sub-groups (the last two on higher plans only).
VISIBLE_TO_CODES = (1, 3, 5, 7)
# The connector describes visible_to as "owner, followers or entire company": its words for the
# codes 1 and 3. Spaces, dashes and underscores are interchangeable, case is ignored.
VISIBLE_TO_WORDS: Mapping[str, int] = {
    "owner": 1,
    "followers": 1,
    "owner and followers": 1,
    "owner & followers": 1,
    "entire company": 3,
}
CURRENCY_LENGTH = 3  # ISO 4217 alphabetic code
_HH_MM = re.compile(r"\d{2}:\d{2}")  # exactly: `times.parse_clock` also takes H:MM and seconds
_INTEGER = re.compile(r"\+?\d+")


# -- validation: pure, before any request ------------------------------------------------------


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else repr(str(value))


def _bad(name: str, expected: str, value: Any) -> ArgumentError:
    return ArgumentError(f"{name}: expected {expected}, got {_shown(value)}")


def parse_id(name: str, value: Id) -> int:
    """A Pipedrive id: a positive integer, given as int or decimal text."""
    if isinstance(value, bool):
        raise _bad(name, "a positive integer id", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise _bad(name, "a positive integer id", value)
    if number <= 0:
        raise _bad(name, "a positive integer id", value)
    return number


def parse_optional_id(name: str, value: Id | None) -> int | None:
    return None if value is None else parse_id(name, value)


def parse_text(name: str, value: str | None) -> str:
    """A required, non-blank text parameter (title, subject, type)."""
    if value is None:
        raise ArgumentError(f"{name}: required")
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, "non-empty text", value)
    return value


def parse_day(name: str, value: str | date | None) -> str | None:
    """`yyyy-MM-dd`, and a real calendar date."""
    if value is None:
        return None
    if isinstance(value, date):
        return times.format_date(value)
    if isinstance(value, str):
        try:
            return times.format_date(times.parse_date(value))
        except ValueError:
            pass
    raise _bad(name, "yyyy-MM-dd", value)


def _hh_mm(name: str, value: str, *, length: bool) -> str:
    if not isinstance(value, str) or not _HH_MM.fullmatch(value):
        raise _bad(name, "HH:MM", value)
    try:
        times.parse_clock(value, length=length)
    except ValueError:
        raise _bad(name, "HH:MM", value) from None
    return value


def parse_time(name: str, value: str | None) -> str | None:
    """`HH:MM`, 00:00 to 23:59 (Pipedrive reads an activity's due time as UTC)."""
    return None if value is None else _hh_mm(name, value, length=False)


def parse_duration(name: str, value: str | None) -> str | None:
    """`HH:MM`; a duration, so the hours may pass 23 (up to 99)."""
    return None if value is None else _hh_mm(name, value, length=True)


def parse_status(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if value not in DEAL_STATUSES:
        raise _bad(name, " | ".join(DEAL_STATUSES), value)
    return value


def parse_visible_to(name: str, value: int | str | None) -> int | None:
    """A visibility code 1/3/5/7, or the connector's words owner / followers / entire company."""
    if value is None:
        return None
    if isinstance(value, str):
        word = " ".join(value.strip().lower().replace("_", " ").replace("-", " ").split())
        if word in VISIBLE_TO_WORDS:
            return VISIBLE_TO_WORDS[word]
        if _INTEGER.fullmatch(word):
            value = int(word)
    if isinstance(value, int) and not isinstance(value, bool) and value in VISIBLE_TO_CODES:
        return value
    raise _bad(name, "1, 3, 5, 7, owner, followers or entire company", value)


def parse_value(name: str, value: Number | None) -> int | float | None:
    """A finite number; integral values stay integers so the JSON body reads `1200`."""
    if value is None:
        return None
    number: float
    if isinstance(value, bool):
        raise _bad(name, "a number", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    else:
        try:
            number = float(value)
        except ValueError:
            raise _bad(name, "a number", value) from None
    if not math.isfinite(number):
        raise _bad(name, "a number", value)
    return int(number) if number.is_integer() else number


def parse_currency(name: str, value: str | None) -> str | None:
    """Three letters, upper-cased: Pipedrive's currency codes are ISO 4217 (EUR, USD)."""
    if value is None:
        return None
    if not (len(value) == CURRENCY_LENGTH and value.isascii() and value.isalpha()):
        raise _bad(name, "a 3-letter currency code", value)
    return value.upper()


def parse_lost_reason(name: str, value: str | None, status: str) -> str | None:
    if value is None:
        return None
    if status != "lost":
        raise ArgumentError(f"{name}: only allowed with status lost (status is {status!r})")
    return value


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields the caller set: PATCH semantics, and POST defaults stay Pipedrive's."""
    return {key: value for key, value in fields.items() if value is not None}


# -- the actions ---------------------------------------------------------------------------------


class Connector:
    """One account's actions; every call spends from the client's (the account's) rate limit."""

    def __init__(self, client: PipedriveClient, cache: LookupCache) -> None:
        self._client = client
        self._cache = cache

    async def _deal(self, deal_id: int) -> dict[str, Any]:
        # v2 writes answer without counts and next/last activity ids; the mapping needs them.
        return await self._client.get(
            f"/api/v2/deals/{deal_id}", {"include_fields": shapes.DEAL_INCLUDE_FIELDS}
        )

    async def _mapped(self, payload: payloads.Payload, item: Mapping[str, Any]) -> dict[str, Any]:
        """An API answer in `payload`'s shape, the related objects it names looked up."""
        found = await self._cache.resolve(self._client, payload.needs([item]))
        return payload.data(item, found)

    async def _mapped_deal(self, deal_id: int, *, legacy: bool) -> dict[str, Any]:
        deal = await self._deal(deal_id)
        return await self._mapped(payloads.DEAL_LEGACY if legacy else payloads.DEAL_V2, deal)

    async def _check_stage_in_pipeline(self, stage_id: int, pipeline_id: int) -> None:
        path = f"/api/v2/stages/{stage_id}"
        stage = await self._client.get(path)
        if stage.get("pipeline_id") != pipeline_id:
            # Refused here, as Pipedrive would: the message names both ids and the real pipeline.
            raise PipedriveBadRequest(
                f"account {self._client.account!r}: stage {stage_id} is not in pipeline "
                f"{pipeline_id} (it belongs to pipeline {stage.get('pipeline_id')})",
                path=path,
            )

    async def get_deal(self, deal_id: Id) -> DealResponse:
        """Get deal by ID: `GET /api/v2/deals/{id}` mapped to `DealResponse`."""
        return await self._mapped_deal(parse_id("ID", deal_id), legacy=True)

    async def get_stage(self, stage_id: Id) -> StageResponse:
        """Get stage by ID: `GET /api/v2/stages/{id}` mapped to `StageResponse`."""
        ident = parse_id("ID", stage_id)
        return shapes.stage(await self._client.get(f"/api/v2/stages/{ident}"))

    async def add_deal(
        self,
        title: str | None,
        *,
        pipeline_id: Id | None = None,
        stage_id: Id | None = None,
        status: str | None = None,
        value: Number | None = None,
        currency: str | None = None,
        person_id: Id | None = None,
        org_id: Id | None = None,
        expected_close_date: str | date | None = None,
        visible_to: int | str | None = None,
        legacy: bool = False,
    ) -> DealResponseV2 | DealResponse:
        """Add deal (V2), or with `legacy` the deprecated Add deal: `POST /api/v2/deals`.

        The legacy action has no pipeline parameter, so `pipeline_id` with `legacy` is refused
        rather than silently dropped. V2 with both ids checks the stage is in the pipeline.
        """
        body = _present(
            {
                "title": parse_text("--title", title),
                "pipeline_id": parse_optional_id("--pipeline-id", pipeline_id),
                "stage_id": parse_optional_id("--stage-id", stage_id),
                "status": parse_status("--status", status),
                "value": parse_value("--value", value),
                "currency": parse_currency("--currency", currency),
                "person_id": parse_optional_id("--person-id", person_id),
                "org_id": parse_optional_id("--org-id", org_id),
                "expected_close_date": parse_day("--expected-close-date", expected_close_date),
                "visible_to": parse_visible_to("--visible-to", visible_to),
            }
        )
        if legacy and "pipeline_id" in body:
            raise ArgumentError(
                "--pipeline-id: not a parameter of the legacy Add deal action "
                "(its stage implies the pipeline); drop --legacy or --pipeline-id"
            )
        if "pipeline_id" in body and "stage_id" in body:
            await self._check_stage_in_pipeline(body["stage_id"], body["pipeline_id"])
        created = await self._client.send("POST", "/api/v2/deals", body)
        return await self._mapped_deal(created["id"], legacy=legacy)

    async def update_deal_stage(
        self,
        deal_id: Id,
        stage_id: Id | None,
        *,
        pipeline_id: Id | None = None,
        expected_close_date: str | date | None = None,
        legacy: bool = False,
    ) -> DealResponseV2 | DealResponse:
        """Update deal stage (V2) or, with `legacy`, the deprecated one: `PATCH /api/v2/deals/{id}`.

        V2 requires the pipeline and checks the stage belongs to it before changing anything;
        the legacy action takes no pipeline (the stage implies it).
        """
        ident = parse_id("ID", deal_id)
        if stage_id is None:
            raise ArgumentError("--stage-id: required")
        body = _present(
            {
                "pipeline_id": parse_optional_id("--pipeline-id", pipeline_id),
                "stage_id": parse_id("--stage-id", stage_id),
                "expected_close_date": parse_day("--expected-close-date", expected_close_date),
            }
        )
        if legacy and "pipeline_id" in body:
            raise ArgumentError(
                "--pipeline-id: not a parameter of the legacy Update deal stage action "
                "(its stage implies the pipeline); drop --legacy or --pipeline-id"
            )
        if not legacy:
            if "pipeline_id" not in body:
                raise ArgumentError(
                    "--pipeline-id: required by Update deal stage (V2); "
                    "pass --legacy to let the stage imply its pipeline"
                )
            await self._check_stage_in_pipeline(body["stage_id"], body["pipeline_id"])
        await self._client.send("PATCH", f"/api/v2/deals/{ident}", body)
        return await self._mapped_deal(ident, legacy=legacy)

    async def update_deal_status(
        self, deal_id: Id, status: str | None, *, lost_reason: str | None = None
    ) -> DealResponse:
        """Update deal status (open, won, lost; a lost reason only with lost): `PATCH`."""
        ident = parse_id("ID", deal_id)
        if status is None:
            raise ArgumentError("--status: required")
        checked = parse_status("--status", status)
        assert checked is not None
        body = _present(
            {
                "status": checked,
                "lost_reason": parse_lost_reason("--lost-reason", lost_reason, checked),
            }
        )
        await self._client.send("PATCH", f"/api/v2/deals/{ident}", body)
        return await self._mapped_deal(ident, legacy=True)

    async def add_activity(
        self,
        type: str | None,
        subject: str | None,
        *,
        due_date: str | date | None = None,
        due_time: str | None = None,
        duration: str | None = None,
        note: str | None = None,
        user_id: Id | None = None,
        deal_id: Id | None = None,
        person_id: Id | None = None,
        org_id: Id | None = None,
    ) -> ActivityResponse:
        """Add activity: `POST /api/v2/activities` mapped to `ActivityResponse`.

        The connector's `user_id` (assignee) is v2's `owner_id`. The person goes in as the
        primary participant: the v2 migration guide calls `person_id` read-only on activities
        (the spec lists it), and a primary participant is what sets it either way.
        """
        person = parse_optional_id("--person-id", person_id)
        body = _present(
            {
                "type": parse_text("--type", type),
                "subject": parse_text("--subject", subject),
                "due_date": parse_day("--due-date", due_date),
                "due_time": parse_time("--due-time", due_time),
                "duration": parse_duration("--duration", duration),
                "note": note,
                "owner_id": parse_optional_id("--user-id", user_id),
                "deal_id": parse_optional_id("--deal-id", deal_id),
                "org_id": parse_optional_id("--org-id", org_id),
                "participants": None
                if person is None
                else [{"person_id": person, "primary": True}],
            }
        )
        created = await self._client.send("POST", "/api/v2/activities", body)
        return await self._mapped(payloads.ACTIVITY, created)
