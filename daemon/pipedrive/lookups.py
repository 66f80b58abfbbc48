"""Gather the related Pipedrive objects a batch's payloads name, in a few batched calls."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon import clock as clock_module
from daemon.pipedrive import costs
from daemon.pipedrive.custom_fields import FieldCatalog, parse_field_definitions

LOOKUP_CACHE_TTL_S = 3600
"""How long users and stages stay cached (an id never seen is fetched at once): a rename
shows within the hour."""

RELATED_CACHE_TTL_S = 120.0
"""How long a person, organization or deal fetched by id is reused: one default poll
interval. A catch-up's pages name many of the same ones (one call per 100 ids, 10 tokens
each), and a name in a payload is never older than this. While the account's webhook is
healthy (instant mode) they are kept as long as users, since every change of one evicts it
(`LookupCache.forget`)."""

RELATED_CACHE_MAX = 10_000
"""Objects kept per resource, the least recently fetched dropped first: bounds memory."""

BY_ID_AT_MOST = 5
"""A handful of missing ids is fetched one `GET .../{id}` each when that costs fewer tokens
than one listing (a person: 1 token against 10; a user: 2 against 20); more, or where the
listing is as cheap, one listing. Tokens are the customer's money; calls stay few."""

REUSED_FIELDS: Mapping[str, tuple[str, ...] | None] = {
    "users": None,
    "stages": None,
    "persons": ("id", "name"),
    "organizations": ("id", "name"),
    "deals": ("id", "title"),
}
"""The resources reused across batches, and the only fields of them that payloads read (None:
the whole object): what is kept of a person is a name, not a kilobyte. (Activities are not
reused: each is the next or last activity of one deal.)"""

RELATED = ("persons", "organizations", "deals")
"""The reused resources whose objects change often: kept for `RELATED_CACHE_TTL_S`."""

RESOURCES = ("users", "stages", "persons", "organizations", "deals", "activities")

LIST_PATHS = {"users": "/v1/users"} | {r: f"/api/v2/{r}" for r in RESOURCES[1:]}

ById = Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True)
class Lookups:
    """Related objects by id: v1 user objects, v2 objects for the rest."""

    users: ById = field(default_factory=dict)
    persons: ById = field(default_factory=dict)
    organizations: ById = field(default_factory=dict)
    stages: ById = field(default_factory=dict)
    deals: ById = field(default_factory=dict)
    activities: ById = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Lookups:
        return cls()


@dataclass(frozen=True)
class LookupRequest:
    """Ids a batch refers to, per resource.

    Each resource's missing ids are fetched one by one or in one listing, whichever costs
    fewer tokens (see `BY_ID_AT_MOST`); users and stages are listed whole.
    """

    users: frozenset[int] = frozenset()
    stages: frozenset[int] = frozenset()
    persons: frozenset[int] = frozenset()
    organizations: frozenset[int] = frozenset()
    deals: frozenset[int] = frozenset()
    activities: frozenset[int] = frozenset()

    def __or__(self, other: LookupRequest) -> LookupRequest:
        return LookupRequest(
            users=self.users | other.users,
            stages=self.stages | other.stages,
            persons=self.persons | other.persons,
            organizations=self.organizations | other.organizations,
            deals=self.deals | other.deals,
            activities=self.activities | other.activities,
        )


class LookupSource(Protocol):
    """The part of the Pipedrive client that lookups need."""

    async def find(self, path: str) -> dict[str, Any] | None:
        """`GET path` of one object, None when Pipedrive answers 404."""
        ...

    async def list_users(self) -> list[dict[str, Any]]:
        """`GET /v1/users`: all users."""
        ...

    async def list_stages(self) -> list[dict[str, Any]]:
        """`GET /api/v2/stages`, all pages."""
        ...

    async def get_many(self, resource: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """`GET /api/v2/{resource}?ids=...`, ids chunked by 100; missing ids are simply absent."""
        ...

    async def list_pages(self, path: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every item of a listing (field definitions)."""
        ...


def _ids(objects: Iterable[Mapping[str, Any]], *fields: str) -> frozenset[int]:
    # Anything but a real integer is left out here; the payload mapping reports it by name.
    return frozenset(
        value
        for obj in objects
        for name in fields
        if isinstance(value := obj.get(name), int) and not isinstance(value, bool)
    )


def needed_for_deals(deals: Iterable[Mapping[str, Any]]) -> LookupRequest:
    """Related objects that `payloads.deal_v2` / `deal_legacy` name for these v2 deals."""
    deals = list(deals)
    return LookupRequest(
        users=_ids(deals, "owner_id", "creator_user_id"),
        stages=_ids(deals, "stage_id"),
        persons=_ids(deals, "person_id"),
        organizations=_ids(deals, "org_id"),
        activities=_ids(deals, "next_activity_id", "last_activity_id"),
    )


def needed_for_activities(activities: Iterable[Mapping[str, Any]]) -> LookupRequest:
    """Related objects that `payloads.activity` names for these v2 activities."""
    activities = list(activities)
    return LookupRequest(
        users=_ids(activities, "owner_id"),
        persons=_ids(activities, "person_id"),
        organizations=_ids(activities, "org_id"),
        deals=_ids(activities, "deal_id"),
    )


def index_by_id(objects: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Key objects by their integer `id`; an object without one can match no reference."""
    return {
        obj["id"]: obj
        for obj in objects
        if isinstance(obj.get("id"), int) and not isinstance(obj["id"], bool)
    }


def reused_part(resource: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What is kept of a reused object (`REUSED_FIELDS`)."""
    fields = REUSED_FIELDS[resource]
    if fields is None:
        return obj
    return {name: obj[name] for name in fields if name in obj}


def one_by_one_is_cheaper(list_path: str, count: int) -> bool:
    """Whether `count` objects cost fewer tokens as one `GET {list_path}/{id}` each than as
    one listing of `list_path`, for a handful at most (`BY_ID_AT_MOST`)."""
    if count > BY_ID_AT_MOST:
        return False
    one = costs.token_cost("GET", f"{list_path}/{{id}}")
    return count * one < costs.token_cost("GET", list_path)


def by_id_is_cheaper(resource: str, count: int) -> bool:
    """`one_by_one_is_cheaper` for a lookup resource."""
    return one_by_one_is_cheaper(LIST_PATHS[resource], count)


class _Recent:
    """Objects of one resource fetched lately, and the ids Pipedrive did not return (a deleted
    person), each kept for the TTL."""

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_items: int) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_items = max_items
        self._items: OrderedDict[int, tuple[float, Mapping[str, Any] | None]] = OrderedDict()

    def split(self, wanted: AbstractSet[int]) -> tuple[dict[int, Mapping[str, Any]], list[int]]:
        """(what is known, fresh; the ids to fetch), the ids sorted."""
        now = self._clock()
        known: dict[int, Mapping[str, Any]] = {}
        missing: list[int] = []
        for ident in sorted(wanted):
            entry = self._items.get(ident)
            if entry is None or now - entry[0] >= self.ttl_s:
                missing.append(ident)
            elif entry[1] is not None:
                known[ident] = entry[1]
        return known, missing

    def add(self, asked: Sequence[int], fetched: ById) -> None:
        """What a fetch brought (a whole list brings more than was asked), and the asked ids
        it did not bring, as missing."""
        now = self._clock()
        asked_ids = set(asked)
        for ident in [*asked, *(i for i in fetched if i not in asked_ids)]:
            self._items[ident] = (now, fetched.get(ident))
            self._items.move_to_end(ident)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    def forget(self, ident: int | None) -> None:
        """One object (None: every one), so that the next batch naming it fetches it."""
        if ident is None:
            self._items.clear()
        else:
            self._items.pop(ident, None)

    def forget_expired(self) -> None:
        # Kept in fetch order, so the expired ones are at the front.
        now = self._clock()
        while self._items and now - next(iter(self._items.values()))[0] >= self.ttl_s:
            self._items.popitem(last=False)


class LookupCache:
    """Resolves a `LookupRequest` against Pipedrive, keeping what later batches reuse."""

    def __init__(
        self,
        *,
        ttl_s: float = LOOKUP_CACHE_TTL_S,
        related_ttl_s: float = RELATED_CACHE_TTL_S,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._ttl_s = ttl_s
        self._related_ttl_s = related_ttl_s
        self._clock = monotonic = clock.monotonic  # ages are intervals
        self._kept = {
            resource: _Recent(
                related_ttl_s if resource in RELATED else ttl_s, monotonic, RELATED_CACHE_MAX
            )
            for resource in REUSED_FIELDS
        }
        # Concurrent batches wanting the same resource share one fetch.
        self._locks = {resource: asyncio.Lock() for resource in REUSED_FIELDS}
        self._fields: dict[str, tuple[float, FieldCatalog]] = {}

    def rely_on_webhooks(self, healthy: bool) -> None:
        """Instant mode: while the account's webhook is healthy, every change of a person,
        organization, deal, user or stage comes as a nudge that evicts it (`forget`), so
        persons, organizations and deals are kept as long as users; otherwise one interval."""
        ttl_s = self._ttl_s if healthy else self._related_ttl_s
        for resource in RELATED:
            self._kept[resource].ttl_s = ttl_s

    def forget(self, resource: str, ident: int | str | None) -> None:
        """A nudge said this object changed (its id as the webhook gave it; None, or an id
        that is not one: some object of the resource did)."""
        kept = self._kept.get(resource)
        if isinstance(ident, str):
            ident = int(ident) if ident.isascii() and ident.isdigit() else None
        if kept is not None:
            kept.forget(ident)

    def forget_expired(self) -> None:
        """Drop the objects past their TTL: an account gone quiet holds none."""
        for kept in self._kept.values():
            kept.forget_expired()

    async def field_catalog(self, source: LookupSource, path: str) -> FieldCatalog:
        """Custom field definitions (`/api/v2/dealFields`, ...), fetched only when an event
        needs them and kept for the TTL."""
        cached = self._fields.get(path)
        if cached is None or self._clock() - cached[0] >= self._ttl_s:
            definitions = parse_field_definitions(await source.list_pages(path, {}))
            cached = (self._clock(), FieldCatalog.of(definitions))
            self._fields[path] = cached
        return cached[1]

    async def resolve(self, source: LookupSource, request: LookupRequest) -> Lookups:
        """Fetch what `request` names; ids Pipedrive does not return are simply absent. One
        resource after another: the client already splits ids into pages, and sequential
        calls keep the rate limiter and error handling simple."""
        found: dict[str, ById] = {}
        for resource in RESOURCES:
            ids: frozenset[int] = getattr(request, resource)
            if ids:
                found[resource] = await self._get(source, resource, ids)
        return Lookups(**found)

    async def _get(self, source: LookupSource, resource: str, ids: frozenset[int]) -> ById:
        kept = self._kept.get(resource)
        if kept is None:
            return index_by_id(await _fetch(source, resource, sorted(ids)))
        async with self._locks[resource]:
            known, missing = kept.split(ids)
            if missing:
                fetched = index_by_id(await _fetch(source, resource, missing))
                got = {ident: reused_part(resource, obj) for ident, obj in fetched.items()}
                kept.add(missing, got)
                known.update((ident, got[ident]) for ident in missing if ident in got)
        return known


async def _fetch(source: LookupSource, resource: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    """`ids` of `resource` (and, for users and stages, the others a listing brings)."""
    if by_id_is_cheaper(resource, len(ids)):
        path = LIST_PATHS[resource]
        found = [await source.find(f"{path}/{ident}") for ident in ids]
        return [obj for obj in found if obj is not None]
    if resource == "users":
        return await source.list_users()
    if resource == "stages":
        return await source.list_stages()
    return await source.get_many(resource, ids)
