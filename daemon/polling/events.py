"""Building an event, in one place: the `data` a trigger's item maps to, its envelope, its id,
and the `NewEvent` the outbox queues, for a firing, an item that cannot be mapped, and one that
cannot be read. The poller builds every event it queues here, and the dead-letter replay
builds the body of an item it read again with the same `body`.

Pure: the caller brings the lookups, the field catalog, the origin and the time. It lives in
`polling` because what it builds from is the change feed's decision (`Firing`, `Rejected`)
and a trigger's kind, both above `payloads`.
"""

from __future__ import annotations

from datetime import datetime

from daemon import errors
from daemon.model import deliveries
from daemon.payloads import envelope
from daemon.pipedrive import lookups
from daemon.pipedrive.custom_fields import FieldCatalog
from daemon.polling import change_feed
from daemon.triggers.base import Item, Trigger


def needs(trigger: Trigger, current: Item, previous: Item | None) -> lookups.LookupRequest:
    """The related objects the event's `data` (and `previous`) name."""
    return trigger.payload.needs([current] + ([previous] if previous else []))


def body(
    trigger: Trigger,
    subscription: str,
    current: Item,
    previous: Item | None,
    resolved: lookups.Lookups,
    catalog: FieldCatalog | None,
    now: datetime,
) -> str:
    """The envelope of `trigger` for `current`; a change carries in `previous` the earlier
    value of each field that differs from `previous` (what was last seen of the item, None if
    nothing). `catalog`: the custom field definitions, when the subscription asks for them."""
    data = trigger.payload.data(current, resolved, catalog)
    if trigger.kind == "added":
        return envelope.body(trigger.name, subscription, data, now)
    before = None
    if previous is not None:
        before = change_feed.previous_fields(
            trigger.payload.data(previous, resolved, catalog), data, trigger.always_previous
        )
    return envelope.body(trigger.name, subscription, data, now, change=True, previous=before)


def event(
    firing: change_feed.Firing,
    origin: envelope.Origin,
    resolved: lookups.Lookups,
    catalog: FieldCatalog | None,
    now: datetime,
) -> deliveries.NewEvent:
    """A firing's event; raises whatever the payload code raises (see `unmappable`)."""
    reader, trigger = firing.reader, firing.reader.trigger
    text = body(
        trigger,
        reader.name,
        firing.current,
        firing.previous,
        resolved,
        catalog if reader.include_custom_fields else None,
        now,
    )
    if trigger.kind == "added":
        event_id = origin.addition(reader.name, trigger.name, firing.item_id)
    else:
        event_id = origin.change(reader.name, trigger.name, firing.item_id, firing.lineage)
    return deliveries.NewEvent(reader.name, event_id, trigger.name, firing.item_id, text)


def unmappable(
    firing: change_feed.Firing, origin: envelope.Origin, error: Exception, now: datetime
) -> deliveries.NewEvent:
    """A firing whose payload cannot be built: dead-lettered at once with the raw object."""
    reader, trigger = firing.reader, firing.reader.trigger
    reason = f"cannot map item {firing.item_id}: {errors.describe(error)}"
    return envelope.dead_on_arrival(
        origin, reader.name, trigger.name, firing.item_id, firing.current, reason, now
    )


def rejected(
    rejection: change_feed.Rejected, origin: envelope.Origin, now: datetime
) -> deliveries.NewEvent:
    """A listed item no trigger can reason about: dead-lettered at once with the raw object."""
    reader, trigger = rejection.reader, rejection.reader.trigger
    reason = f"cannot read a listed {trigger.object.name} item: {rejection.reason}"
    item_id = str(rejection.item.get("id"))[:64]
    return envelope.dead_on_arrival(
        origin, reader.name, trigger.name, item_id, rejection.item, reason, now
    )


def legacy_id(firing: change_feed.Firing) -> str:
    """The id revisions up to 0007 gave this firing's event (see `envelope.legacy_id`)."""
    trigger = firing.reader.trigger
    version = None if trigger.kind == "added" else firing.version
    return envelope.legacy_id(firing.reader.name, trigger.name, firing.item_id, version)
