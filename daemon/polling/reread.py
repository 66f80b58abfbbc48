"""Replaying dead letters whose item could not be read or mapped when it was listed: the item
is read again from Pipedrive (GET by id) and mapped afresh, never resent as the raw object
that failed. One that still does not map stays dead, and the replay says why."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.config import Config, SubscriptionConfig
from daemon.db import feed_store, outbox_admin
from daemon.errors import PipedriveError
from daemon.pipedrive import lookups
from daemon.pipedrive.client import PipedriveClient
from daemon.polling import events
from daemon.triggers.base import Observation, item_key, required_moment

# What an item id must look like to be asked for by id: digits, or a lead's UUID.
_READABLE_ID = re.compile(r"^[0-9]{1,19}$|^[0-9a-fA-F-]{1,64}$")


class StillUnreadable(Exception):
    """The item cannot be read again, or still does not map; the message says which."""


@dataclass
class Replayed:
    resent: int = 0  # ordinary dead letters queued again as they were
    reread: list[int] = field(default_factory=list)  # unreadable ones read again and queued
    kept: list[tuple[int, str]] = field(default_factory=list)  # kept dead, and why


async def replay(
    engine: AsyncEngine,
    config: Config,
    clients: Mapping[str, PipedriveClient],
    caches: Mapping[str, lookups.LookupCache],
    selection: outbox_admin.Selection,
    now: datetime,
) -> Replayed:
    """`dead-letters replay`: ordinary letters go back as they are; an unreadable one is read
    again and queued with the body its item maps to now, unless a later version of the item
    was queued since (superseded) or it still cannot be read or mapped."""
    result = Replayed(resent=await outbox_admin.replay(engine, selection, now))
    by_name = {s.name: s for s in config.subscriptions}
    for letter in await outbox_admin.list_dead(engine, selection):
        if not letter.unreadable:
            continue  # died since the replay above
        if letter.superseded_by is not None:
            result.kept.append((letter.id, f"not replayed: {letter.note}"))
            continue
        try:
            body = await _read_again(engine, by_name, clients, caches, letter, now)
        except StillUnreadable as error:
            reason = f"replay at {times.format_iso_seconds(now)}: {error}"
            await outbox_admin.keep_unreadable(engine, letter.id, reason)
            result.kept.append((letter.id, str(error)))
            continue
        if await outbox_admin.requeue_reread(engine, letter.id, body, now):
            result.reread.append(letter.id)
    return result


async def _read_again(
    engine: AsyncEngine,
    subscriptions: Mapping[str, SubscriptionConfig],
    clients: Mapping[str, PipedriveClient],
    caches: Mapping[str, lookups.LookupCache],
    letter: outbox_admin.DeadLetter,
    now: datetime,
) -> str:
    sub = subscriptions.get(letter.subscription)
    if sub is None:
        raise StillUnreadable(f"subscription {letter.subscription!r} is not in the config")
    trigger, obj = sub.definition, sub.definition.object
    ident = letter.item_id
    if not _READABLE_ID.match(ident):
        raise StillUnreadable(f"item id {ident!r} cannot be asked for: the item stays unreadable")
    client, cache = clients[sub.account], caches[sub.account]
    try:
        answer = await client.call("GET", f"{obj.path}/{ident}")
    except PipedriveError as error:
        raise StillUnreadable(f"cannot read {obj.name} item {ident} again: {error}") from None
    current = answer.get("data")
    if not isinstance(current, dict):
        raise StillUnreadable(f"Pipedrive answered no object for {obj.name} item {ident}")
    try:
        key = item_key(current, obj)
        required_moment(current, "update_time")
        previous = None
        if trigger.kind != "added":
            stored = await feed_store.load_items(
                engine, account=sub.account, object_type=obj.name, item_ids=[key]
            )
            previous = stored[key].snapshot if key in stored else None
        state = (await feed_store.load_states(engine, [sub.name])).get(sub.name)
        if state is not None:  # reads every field a trigger reads: raises if one is garbage
            trigger.fires(Observation(previous, current, state.start_at, state.id_floor))
        resolved = await cache.resolve(client, events.needs(trigger, current, previous))
        catalog = None
        if sub.include_custom_fields and obj.fields_path:
            catalog = await cache.field_catalog(client, obj.fields_path)
        return events.body(trigger, sub.name, current, previous, resolved, catalog, now)
    except PipedriveError as error:
        raise StillUnreadable(
            f"cannot read what {obj.name} item {ident} refers to: {error}"
        ) from None
    except Exception as error:  # whatever the payload code raised: the item still fails
        raise StillUnreadable(
            f"{obj.name} item {ident} still cannot be mapped: {type(error).__name__}: {error}"
        ) from None
