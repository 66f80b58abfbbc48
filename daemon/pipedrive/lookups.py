"""Gather the related Pipedrive objects a batch's payloads name, in a few batched calls."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon import clock as clock_module
from daemon.pipedrive.custom_fields import FieldCatalog, parse_field_definitions

LOOKUP_CACHE_TTL_S = 3600
"""How long the whole-list users and stages stay cached before a batch that needs them fetches
them again (an id never seen refreshes at once): `/v1/users` costs 20 tokens, and a rename
shows within the hour."""

BATCH_RESOURCES = ("persons", "organizations", "deals", "activities")
"""The v2 resources fetched by `ids` for each batch."""

RELATED_CACHE_TTL_S = 120.0
"""How long a person, organization or deal fetched by id is reused: one default poll
interval. A catch-up's pages name many of the same ones (one call per 100 ids, 10 tokens
each), and a name in a payload is never older than this."""

RELATED_CACHE_MAX = 10_000
"""Objects kept per resource, the least recently fetched dropped first: bounds memory."""

REUSED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "persons": ("id", "name"),
    "organizations": ("id", "name"),
    "deals": ("id", "title"),
}
"""The by-id resources reused across batches, and the only fields of them that payloads read:
what is kept is a name, not a kilobyte of person. (Activities are not reused: each is the
next or last activity of one deal.)"""

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

    `persons`, `organizations`, `deals` and `activities` are fetched by these ids. Users and
    stages are always fetched as whole lists; their ids here only tell the cache whether it
    has seen every one of them or must refresh because a new user or stage appeared.
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


class _WholeList:
    """One whole-list resource (users or stages), cached for a TTL and refreshed on a miss."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: ById = {}
        self._fetched_at: float | None = None
        # Ids a refresh did not bring (e.g. a deleted user on an old deal): without this memory
        # every batch naming them would refetch the whole list until the TTL ran out.
        self._known_missing: frozenset[int] = frozenset()
        # Concurrent batches share one refresh instead of each fetching the list.
        self._lock = asyncio.Lock()

    async def get(
        self, fetch: Callable[[], Awaitable[list[dict[str, Any]]]], wanted: AbstractSet[int]
    ) -> ById:
        if not wanted:
            return self._items  # nobody needs the list: no call, whatever its age
        async with self._lock:
            expired = self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl_s
            unknown = wanted - self._items.keys() - self._known_missing
            if expired or unknown:
                # Replaced, never mutated: Lookups already handed out keep a consistent snapshot.
                items = index_by_id(await fetch())
                still_missing = (frozenset() if expired else self._known_missing) | wanted
                self._items = items
                self._fetched_at = self._clock()
                self._known_missing = frozenset(still_missing - items.keys())
            return self._items


def reused_part(resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a reused object (`REUSED_FIELDS`)."""
    return {name: obj[name] for name in REUSED_FIELDS[resource] if name in obj}


class _Recent:
    """Objects of one by-id resource fetched lately, and the ids Pipedrive did not return
    (a deleted person), each kept for the TTL."""

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_items: int) -> None:
        self._ttl_s = ttl_s
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
            if entry is None or now - entry[0] >= self._ttl_s:
                missing.append(ident)
            elif entry[1] is not None:
                known[ident] = entry[1]
        return known, missing

    def add(self, asked: Sequence[int], fetched: ById) -> None:
        now = self._clock()
        for ident in asked:
            self._items[ident] = (now, fetched.get(ident))
            self._items.move_to_end(ident)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    def forget_expired(self) -> None:
        # Kept in fetch order, so the expired ones are at the front.
        now = self._clock()
        while self._items and now - next(iter(self._items.values()))[0] >= self._ttl_s:
            self._items.popitem(last=False)


class LookupCache:
    """Resolves a `LookupRequest` against Pipedrive, keeping users and stages between batches."""

    def __init__(
        self,
        *,
        ttl_s: float = LOOKUP_CACHE_TTL_S,
        related_ttl_s: float = RELATED_CACHE_TTL_S,
        clock: clock_module.Clock = clock_module.SYSTEM,
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = monotonic = clock.monotonic  # ages are intervals
        self._users = _WholeList(ttl_s, monotonic)
        self._stages = _WholeList(ttl_s, monotonic)
        self._related = {
            resource: _Recent(related_ttl_s, monotonic, RELATED_CACHE_MAX)
            for resource in REUSED_FIELDS
        }
        self._fields: dict[str, tuple[float, FieldCatalog]] = {}

    def forget_expired(self) -> None:
        """Drop the by-id objects past their interval: an account gone quiet holds none."""
        for recent in self._related.values():
            recent.forget_expired()

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
        """Fetch what `request` names; ids Pipedrive does not return are simply absent."""
        users = await self._users.get(source.list_users, request.users)
        stages = await self._stages.get(source.list_stages, request.stages)
        # One call per resource, one after another: the client already splits ids into pages,
        # and sequential calls keep the rate limiter and error handling simple.
        fetched: dict[str, ById] = {}
        for resource in BATCH_RESOURCES:
            ids: frozenset[int] = getattr(request, resource)
            recent = self._related.get(resource)
            if recent is None:
                if ids:
                    fetched[resource] = index_by_id(await source.get_many(resource, sorted(ids)))
                continue
            known, missing = recent.split(ids)
            if missing:
                got = {
                    ident: reused_part(resource, obj)
                    for ident, obj in index_by_id(await source.get_many(resource, missing)).items()
                }
                recent.add(missing, got)
                known.update((ident, got[ident]) for ident in missing if ident in got)
            fetched[resource] = known
        return Lookups(
            users=users,
            stages=stages,
            persons=fetched.get("persons", {}),
            organizations=fetched.get("organizations", {}),
            deals=fetched.get("deals", {}),
            activities=fetched.get("activities", {}),
        )
