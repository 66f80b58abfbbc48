"""Deciding, for one listed page, which items changed and which subscriptions' triggers fire.

Pure: the poller brings the page and the stored item states, and commits what this returns.
An item version is new to the feed when its content differs from what was stored (so two
edits in one second are two versions); a subscription that is still backfilling also looks at
versions the feed already knew, as never seen by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daemon.model.items import ItemStateRow, StoredItem
from daemon.payloads.envelope import raw_json
from daemon.triggers.base import (
    Item,
    ObjectType,
    Observation,
    Trigger,
    UnmappableItem,
    item_key,
    required_moment,
)
from daemon.triggers.filters import Filter

# How far ahead of our clock a listing may be dated when Pipedrive's reply names no time (or
# one we cannot believe): the feed's watermark never moves past the listing's own time.
CLOCK_SKEW = timedelta(seconds=60)
# A reply's `Date` further than this from our clock is not believed (a proxy's, a broken one).
DATE_TRUSTED_WITHIN = timedelta(hours=1)


def listing_time(served_at: datetime | None, now: datetime) -> datetime:
    """The time a listing was made: the reply's `Date` when it has a sane one, else our clock
    plus `CLOCK_SKEW`. Nothing listed can have changed after it, so no watermark passes it."""
    if served_at is not None and abs(served_at - now) <= DATE_TRUSTED_WITHIN:
        return served_at
    return now + CLOCK_SKEW


@dataclass(frozen=True)
class FutureDated:
    """A version dated more than `CLOCK_SKEW` after the listing that served it (a bad clock,
    an import): delivered, but it does not move the watermark, and it is reported once."""

    item_id: str
    update_time: datetime


@dataclass(frozen=True)
class Reader:
    """A subscription as its feed sees it."""

    name: str
    trigger: Trigger
    filter: Filter
    start: datetime
    id_floor: int | None
    position: datetime  # update_time it has read up to
    include_custom_fields: bool = False


@dataclass(frozen=True)
class Firing:
    reader: Reader
    item_id: str
    version: int  # the item's version number in the feed: one per observed change
    current: Item
    previous: Item | None
    lineage: str  # names this version for its event id (see `lineage`)


@dataclass(frozen=True)
class Rejected:
    """An item no trigger can reason about; dead-lettered for the reader, never stored."""

    reader: Reader
    item: Item
    reason: str


@dataclass
class PageDecision:
    states: list[ItemStateRow] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    newest_update: datetime | None = None  # never past the listing's time (`ceiling`)
    max_id: int | None = None
    future: list[FutureDated] = field(default_factory=list)  # new versions dated ahead of it


def content_hash(item: Item) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lineage(before: str | None, digest: str) -> str:
    """Names a version by every version this database saw of the item, in order: `before`
    is the last one's lineage (None for the first), `digest` this one's `content_hash`. A
    number would restart with a fresh database or repeat after a restored backup; this
    differs wherever the observed content does, and a re-read of a version keeps it."""
    return hashlib.sha256(f"{before or ''}:{digest}".encode()).hexdigest()


def decide(
    page: Sequence[Item],
    stored: Mapping[str, StoredItem],
    readers: Sequence[Reader],
    obj: ObjectType,
    *,
    watermark: datetime,
    look_back: timedelta,
    digests: Sequence[str] | None = None,
    ceiling: datetime | None = None,
) -> PageDecision:
    """What this page changes; `watermark` is the feed's at the start of the cycle, `digests`
    the items' `content_hash`es when the caller has them already, `ceiling` the listing's
    time (see `listing_time`): an item dated after it is delivered but moves no mark."""
    decision = PageDecision()
    if digests is None:
        digests = [content_hash(item) for item in page]
    for item, digest in zip(page, digests, strict=True):
        try:
            key = item_key(item, obj)
            updated = required_moment(item, "update_time")
        except UnmappableItem as error:
            decision.rejected.extend(Rejected(r, item, str(error)) for r in readers)
            continue
        known = stored.get(key)
        novel = known is None or known.content_hash != digest
        if known is None:
            version, named = 1, lineage(None, digest)
        elif novel:
            version, named = known.version + 1, lineage(known.lineage, digest)
        else:
            version, named = known.version, known.lineage
        failed = False
        for reader in readers:
            previous: Item | None
            if novel:
                previous = known.snapshot if known else None
            elif reader.position < watermark and updated >= reader.position - look_back:
                previous = None  # backfilling: the feed knew this version, the reader did not
            else:
                continue
            observation = Observation(previous, item, reader.start, reader.id_floor)
            try:
                fires = reader.trigger.fires(observation) and reader.filter.matches(item)
            except UnmappableItem as error:
                decision.rejected.append(Rejected(reader, item, str(error)))
                failed = True
                continue
            if fires:
                decision.firings.append(Firing(reader, key, version, item, previous, named))
        if novel and not failed:
            decision.states.append(
                ItemStateRow(key, version, digest, updated, raw_json(item), named)
            )
        if ceiling is not None and updated > ceiling:
            # Reported only well past it: a `Date` is whole seconds, and often a second stale.
            if novel and not failed and updated > ceiling + CLOCK_SKEW:
                decision.future.append(FutureDated(key, updated))
            updated = ceiling
        if decision.newest_update is None or updated > decision.newest_update:
            decision.newest_update = updated
        ident = item.get("id")
        if isinstance(ident, int) and (decision.max_id is None or ident > decision.max_id):
            decision.max_id = ident
    return decision


def previous_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], always: Sequence[str] = ()
) -> dict[str, Any]:
    """For each field of `after` whose value differs in `before`, the earlier value."""
    return {
        name: before.get(name)
        for name in after
        if name in always or before.get(name) != after[name]
    }
