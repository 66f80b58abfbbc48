"""Polling: one listing per account and resource per cycle, shared by every subscription on it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import events, lookups, payloads, store
from daemon.config import Config, SubscriptionConfig
from daemon.detection import Item, Mark, added_at, select_new
from daemon.errors import PayloadError, PipedriveError
from daemon.pipedrive import PipedriveClient

logger = logging.getLogger(__name__)

DUE_TOLERANCE_S = 1.0  # a tick that comes a little early still polls a subscription
Resource = Literal["deals", "activities"]

_MAPPERS: dict[str, Callable[[Mapping[str, Any], lookups.Lookups], dict[str, Any]]] = {
    "deal.added": payloads.deal_v2,
    "deal.added.legacy": payloads.deal_legacy,
    "activity.added": payloads.activity,
}


@dataclass(frozen=True)
class Group:
    """Subscriptions that watch one resource of one account: they share one listing."""

    account: str
    resource: Resource
    subscriptions: tuple[SubscriptionConfig, ...]

    @property
    def interval_s(self) -> float:
        return min(subscription.poll_interval for subscription in self.subscriptions)

    @property
    def key(self) -> str:
        return f"{self.account}/{self.resource}"


def groups(config: Config) -> list[Group]:
    by_key: dict[tuple[str, Resource], list[SubscriptionConfig]] = {}
    for subscription in config.subscriptions:
        by_key.setdefault((subscription.account, subscription.resource), []).append(subscription)
    return [Group(account, resource, tuple(subs)) for (account, resource), subs in by_key.items()]


def is_due(state: store.SubscriptionState | None, interval_s: float, now: datetime) -> bool:
    if state is None or state.last_poll_at is None:
        return True
    return (now - state.last_poll_at).total_seconds() >= interval_s - DUE_TOLERANCE_S


def _list_params(resource: Resource, sort_by: str) -> dict[str, Any]:
    params: dict[str, Any] = {"sort_by": sort_by, "sort_direction": "desc"}
    if resource == "deals":
        params["include_fields"] = payloads.DEAL_INCLUDE_FIELDS
    return params


def _needed(resource: Resource, items: Sequence[Item]) -> lookups.LookupRequest:
    if resource == "deals":
        return lookups.needed_for_deals(items)
    return lookups.needed_for_activities(items)


class Poller:
    def __init__(
        self,
        engine: AsyncEngine,
        clients: Mapping[str, PipedriveClient],
        caches: Mapping[str, lookups.LookupCache],
        *,
        on_new_events: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._clients = clients
        self._caches = caches
        self._on_new_events = on_new_events
        self._clock = clock

    async def poll(self, group: Group) -> None:
        """One cycle for the group's due subscriptions; errors mark them failing, never lost."""
        now = self._clock()
        states = await store.load_states(self._engine, [s.name for s in group.subscriptions])
        due = [s for s in group.subscriptions if is_due(states.get(s.name), s.poll_interval, now)]
        if not due:
            return
        client = self._clients[group.account]
        try:
            listed = await self._list(client, group.resource, due, states)
            found = {s.name: select_new(listed, _mark(states, s), _start(s)) for s in due}
            new_items = {item["id"]: item for d in found.values() for item in d.new_items}
            resolved = await self._caches[group.account].resolve(
                client, _needed(group.resource, list(new_items.values()))
            )
        except PipedriveError as error:
            await self._record_failure(group, due, str(error), now)
            return
        total = 0
        for subscription in due:
            detection = found[subscription.name]
            new_events = [_event(subscription, item, resolved, now) for item in detection.new_items]
            await store.record_detection(
                self._engine,
                subscription=subscription.name,
                account=subscription.account,
                trigger=subscription.trigger,
                events=new_events,
                mark=detection.mark,
                now=now,
            )
            total += len(new_events)
            if new_events:
                logger.info(
                    "subscription %r: %d new %s",
                    subscription.name,
                    len(new_events),
                    group.resource,
                    extra={"action": "poll.detected", "subscription": subscription.name},
                )
        if total:
            self._on_new_events()

    async def _list(
        self,
        client: PipedriveClient,
        resource: Resource,
        due: Sequence[SubscriptionConfig],
        states: Mapping[str, store.SubscriptionState],
    ) -> list[Item]:
        path = f"/api/v2/{resource}"
        marks = [mark.id for s in due if (mark := _mark(states, s)) is not None]
        if marks:
            floor = min(marks)
            # Newest first, down to the lowest mark: one call per cycle when little changed.
            listed = await client.list_pages(
                path, _list_params(resource, "id"), stop=lambda item: item["id"] <= floor
            )
        else:
            # Only first runs: the newest item is all that is needed to set a mark.
            listed = await client.list_pages(
                path, {**_list_params(resource, "id"), "limit": 1}, max_items=1
            )
        starts = [start for s in due if _mark(states, s) is None and (start := _start(s))]
        if starts:
            earliest = min(starts)
            backfill = await client.list_pages(
                path,
                _list_params(resource, "add_time"),
                stop=lambda item: _added_before(item, earliest),
            )
            known = {item["id"] for item in listed}
            listed += [item for item in backfill if item["id"] not in known]
        result: list[Item] = []
        result.extend(listed)
        return result

    async def _record_failure(
        self, group: Group, due: Sequence[SubscriptionConfig], error: str, now: datetime
    ) -> None:
        for subscription in due:
            logger.warning(
                "subscription %r: poll failed, will retry next cycle: %s",
                subscription.name,
                error,
                extra={"action": "poll.failed", "subscription": subscription.name},
            )
            await store.record_poll_failure(
                self._engine,
                subscription=subscription.name,
                account=subscription.account,
                trigger=subscription.trigger,
                error=error,
                now=now,
            )


def _mark(
    states: Mapping[str, store.SubscriptionState], subscription: SubscriptionConfig
) -> Mark | None:
    """The subscription's mark; none when its trigger was changed in the config, since a deal
    id means nothing to an activity listing: it then starts afresh from its `start`."""
    state = states.get(subscription.name)
    if state is None or state.trigger != subscription.trigger:
        return None
    return state.mark


def _start(subscription: SubscriptionConfig) -> datetime | None:
    """The backfill start of a first run; None for "now"."""
    return subscription.start if isinstance(subscription.start, datetime) else None


def _added_before(item: Item, moment: datetime) -> bool:
    added = added_at(item)
    return added is not None and added < moment


def _event(
    subscription: SubscriptionConfig, item: Item, resolved: lookups.Lookups, now: datetime
) -> store.NewEvent:
    event_id = events.event_id(subscription.name, subscription.trigger, item["id"])
    try:
        data = _MAPPERS[subscription.trigger](item, resolved)
    except PayloadError as error:
        # Detected but unmappable: dead-lettered with the raw object, never dropped.
        logger.error(
            "subscription %r: cannot map item %s: %s",
            subscription.name,
            item["id"],
            error,
            extra={
                "action": "poll.unmappable",
                "subscription": subscription.name,
                "event_id": event_id,
            },
        )
        return store.NewEvent(
            event_id,
            subscription.trigger,
            item["id"],
            events.body(subscription.trigger, subscription.name, dict(item), now),
            str(error),
        )
    return store.NewEvent(
        event_id,
        subscription.trigger,
        item["id"],
        events.body(subscription.trigger, subscription.name, data, now),
    )
