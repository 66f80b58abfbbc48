"""Deletions that polling cannot see (`person.deleted`, `organization.deleted`,
`activity.deleted`, `note.deleted`, `lead.deleted`): fired from Pipedrive's delete webhook once
the API confirms the item is gone.

The webhook's body is unsigned and never read: its `entity_id` only names what to ask about.
An item the daemon never stored (an invented id, one created and deleted between two
listings) costs no call and fires nothing: there is no state of it to send. A stored one costs
one `GET` of the item (1 token on v2, 2 on v1); when Pipedrive answers 404, or the object with
`is_deleted` (v2) or `active_flag` false (v1 notes), the events carry the state last stored,
and they are queued together with the item's tombstone (`db.deletions`), so a duplicated,
late or replayed delete finds the tombstone and neither calls nor fires again. Each event's id
is a change's: (company, installation, subscription, trigger, item, the stored version's
lineage), so even two confirmations racing queue one event. An item that still exists (a
forged or stale delete) fires nothing.

`Confirmations` runs them for the daemon: one task per item, at most `MAX_PENDING` at once.
No listing will ever show a deletion again, so a confirmation that fails (Pipedrive down, a
429, the database) is tried again (`RETRY_AFTER_S`, about 45 min in all, then given up at
ERROR); one whose account another replica took, or still waiting at a stop, is handed over
through `instant_deletes` to whoever holds the account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon import errors
from daemon.config import Config, SubscriptionConfig
from daemon.db import deletions as deletion_store
from daemon.db import feed_store, installation, instant_nudges, leases, transient
from daemon.errors import PipedriveError, PipedriveNotFound
from daemon.instant.nudges import Nudge
from daemon.model import deliveries
from daemon.model.items import StoredItem
from daemon.payloads import envelope
from daemon.pipedrive import lookups
from daemon.pipedrive.client import PipedriveClient
from daemon.triggers import OBJECT_TYPES
from daemon.triggers.base import ObjectType, UnmappableItem, item_key

logger = logging.getLogger(__name__)

DELETE = "delete"  # webhooks v2's action
MAX_PENDING = 256  # confirmations waiting or running at once, over all accounts
# While Pipedrive or the database fails, a confirmation is tried again after each of these
# (about 45 min in all), then given up, said at ERROR.
RETRY_AFTER_S = (5.0, 30.0, 120.0, 600.0, 1800.0)
HAND_OVER_S = 2.0  # at a stop, how long handing retries over may take


def watchers(config: Config, account: str, object_type: str) -> list[SubscriptionConfig]:
    """The subscriptions that fire on a deletion of `object_type` on `account`: none unless
    the account is in instant mode (the config refuses them otherwise)."""
    if config.instant is None or not config.account(account).instant:
        return []
    return [
        s
        for s in config.subscriptions
        if s.account == account and s.definition.deletion and s.object_type == object_type
    ]


def item_id(obj: ObjectType, entity_id: str | None) -> str | None:
    """The id as `item_states` keeps it, or None for one that cannot be an id of `obj`."""
    if entity_id is None:
        return None
    value: Any = entity_id
    if not obj.string_ids:
        if not entity_id.isascii() or not entity_id.isdigit() or len(entity_id) > 19:
            return None
        value = int(entity_id)
    try:
        return item_key({"id": value}, obj)
    except UnmappableItem:
        return None


def path(obj: ObjectType, key: str) -> str:
    """The item's single GET: `/api/v2/persons/5`, `/v1/notes/7`, `/v1/leads/<uuid>`."""
    return f"{obj.path}/{key}"


def gone(answer: Any) -> bool:
    """Whether the item Pipedrive served (None: it answered 404) is deleted."""
    if answer is None:
        return True
    if not isinstance(answer, Mapping):
        raise ValueError("Pipedrive answered without an object")
    return answer.get("is_deleted") is True or answer.get("active_flag") is False


def fires(subscription: SubscriptionConfig, snapshot: Mapping[str, Any], now: datetime) -> bool:
    """The subscription's filter, on the state last stored; nothing before its `start`."""
    start = subscription.start
    if isinstance(start, datetime) and now < start:
        return False
    return subscription.compiled_filter().matches(snapshot)


def _event(
    subscription: SubscriptionConfig,
    key: str,
    stored: StoredItem,
    origin: envelope.Origin,
    resolved: lookups.Lookups,
    catalog: Any,
    now: datetime,
) -> deliveries.NewEvent:
    trigger = subscription.definition
    try:
        data = trigger.payload.data(
            stored.snapshot, resolved, catalog if subscription.include_custom_fields else None
        )
    except Exception as error:  # as a listing's unmappable item: dead at once, raw object
        reason = f"cannot map item {key}: {errors.describe(error)}"
        return envelope.dead_on_arrival(
            origin, subscription.name, trigger.name, key, stored.snapshot, reason, now
        )
    return deliveries.NewEvent(
        subscription.name,
        origin.change(subscription.name, trigger.name, key, stored.lineage),
        trigger.name,
        key,
        envelope.body(trigger.name, subscription.name, data, now, change=True, previous=None),
    )


async def _answer(client: PipedriveClient, where: str) -> Any:
    try:
        body = await client.call("GET", where)
    except PipedriveNotFound:
        return None
    return body.get("data")


async def confirm(
    engine: AsyncEngine,
    config: Config,
    client: PipedriveClient,
    cache: lookups.LookupCache,
    nudge: Nudge,
    *,
    installation_id: str,
    now: datetime,
    fence: leases.Fence | None = None,
) -> list[deliveries.NewEvent]:
    """Act on one nudge: when it is a delete of an item some subscription watches the deletion
    of, and the daemon stored the item, ask Pipedrive (one GET) and, if it is gone, queue the
    events with the tombstone. Returns the events queued now (none for anything else). Raises
    what the API or the database raise (LeaseLost when `fence` no longer holds)."""
    obj = OBJECT_TYPES.get(nudge.object_type)
    subscriptions = watchers(config, nudge.account, nudge.object_type)
    if nudge.action != DELETE or obj is None or not subscriptions:
        return []
    key = item_id(obj, nudge.entity_id)
    where = f"account {nudge.account!r}: {obj.name} item {nudge.entity_id!r}"
    extra = {"action": "instant.deletion", "account": nudge.account}
    if key is None:
        logger.debug("%s: not an id, deletion ignored", where, extra=extra)
        return []
    stored = (
        await feed_store.load_items(
            engine, account=nudge.account, object_type=obj.name, item_ids=[key]
        )
    ).get(key)
    if stored is None:
        logger.debug("%s: never stored, nothing to send of its deletion", where, extra=extra)
        return []
    if stored.content_hash == deletion_store.TOMBSTONE:
        logger.debug("%s: its deletion was fired already", where, extra=extra)
        return []
    if not gone(await _answer(client, path(obj, key))):
        logger.info(
            "%s: Pipedrive called its webhook with a delete, but the item still exists; "
            "nothing fired",
            where,
            extra={**extra, "action": "instant.deletion_refuted"},
        )
        return []
    firing = [s for s in subscriptions if fires(s, stored.snapshot, now)]
    events: list[deliveries.NewEvent] = []
    if firing:
        origin = envelope.Origin(await client.company_id(), installation_id)
        request = lookups.LookupRequest()
        for subscription in firing:
            request = request | subscription.definition.payload.needs([stored.snapshot])
        resolved = await cache.resolve(client, request)
        catalog = None
        if obj.fields_path and any(s.include_custom_fields for s in firing):
            catalog = await cache.field_catalog(client, obj.fields_path)
        events = [_event(s, key, stored, origin, resolved, catalog, now) for s in firing]
    queued = await deletion_store.commit(
        engine,
        account=nudge.account,
        object_type=obj.name,
        item_id=key,
        lineage=stored.lineage,
        events=events,
        now=now,
        fence=fence,
    )
    fired = [e for e in events if e.event_id in queued]
    for event in fired:
        logger.info(
            "subscription %r: %s %s confirmed deleted",
            event.subscription,
            obj.name,
            key,
            extra={
                "action": "instant.deletion_fired",
                "subscription": event.subscription,
                "event_id": event.event_id,
            },
        )
    return fired


class Confirmations:
    """The daemon's confirmations: `submit` a nudge from `_Running.nudged`; each delete worth
    a look runs as its own task (the ingress never waits), one per item at a time, at most
    `MAX_PENDING` at once (a flood beyond is dropped, and said once)."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: Callable[[], Config],
        clients: Mapping[str, PipedriveClient],
        caches: Mapping[str, lookups.LookupCache],
        *,
        fence_for: Callable[[str], leases.Fence | None] = lambda account: None,
        on_events: Callable[[list[deliveries.NewEvent]], None] = lambda events: None,
        clock: clock_module.Clock = clock_module.SYSTEM,
        limit: int = MAX_PENDING,
    ) -> None:
        self._engine = engine
        self._config = config
        self._clients = clients
        self._caches = caches
        self._fence_for = fence_for
        self._on_events = on_events
        self._clock = clock
        self._limit = limit
        self._installation: str | None = None
        self._running: dict[tuple[str, str, str | None], asyncio.Task[None]] = {}
        self._retrying: dict[tuple[str, str, str | None], Nudge] = {}  # waiting to try again
        self._overflowing = False

    def submit(self, nudge: Nudge) -> bool:
        """Start confirming `nudge` if it is a delete some subscription watches; False when
        it is not, or the same item is being confirmed already, or too many are."""
        if nudge.action != DELETE or not watchers(self._config(), nudge.account, nudge.object_type):
            return False
        key = (nudge.account, nudge.object_type, nudge.entity_id)
        if key in self._running:
            return False
        if len(self._running) >= self._limit:
            if not self._overflowing:
                self._overflowing = True
                logger.warning(
                    "instant mode: %d deletions are being confirmed already; more delete "
                    "webhooks are dropped until they end",
                    self._limit,
                    extra={"action": "instant.deletions_overflow", "account": nudge.account},
                )
            return False
        task = asyncio.create_task(self._confirm(nudge), name=f"confirm deletion {key}")
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))
        return True

    async def _confirm(self, nudge: Nudge) -> None:
        """Confirm, trying again after `RETRY_AFTER_S` while Pipedrive or the database fails
        (a deletion no listing will ever show must not hang on one failed call); if another
        replica took the account over, the delete is relayed to it."""
        key = (nudge.account, nudge.object_type, nudge.entity_id)
        try:
            for attempt, wait_s in enumerate((*RETRY_AFTER_S, None), 1):
                error = await self._try(nudge)
                if error is None:
                    return
                if isinstance(error, errors.LeaseLost):
                    await self._relay([nudge])
                    return
                if wait_s is None:
                    logger.error(
                        "account %r: the deletion of %s item %s could not be confirmed after %d "
                        "tries, nothing fired: %s",
                        nudge.account, nudge.object_type, nudge.entity_id, attempt,
                        errors.describe(error),
                        extra={"action": "instant.deletion_given_up", "account": nudge.account},
                    )  # fmt: skip
                    return
                logger.warning(
                    "account %r: the deletion of %s item %s could not be confirmed yet (%s); "
                    "trying again in %gs",
                    nudge.account, nudge.object_type, nudge.entity_id, errors.describe(error),
                    wait_s, extra={"action": "instant.deletion_failed", "account": nudge.account},
                )  # fmt: skip
                self._retrying[key] = nudge
                await self._clock.sleep(wait_s)
                self._retrying.pop(key, None)
        finally:
            self._retrying.pop(key, None)
            if len(self._running) <= 1:
                self._overflowing = False

    async def _try(self, nudge: Nudge) -> Exception | None:
        """One confirmation; the failure worth trying again (or relaying), None otherwise."""
        client = self._clients.get(nudge.account)
        cache = self._caches.get(nudge.account)
        if client is None or cache is None:  # a reload removed the account
            return None
        now = self._clock.now()
        try:
            if self._installation is None:
                self._installation = await installation.installation_id(self._engine, now)
            fired = await confirm(
                self._engine,
                self._config(),
                client,
                cache,
                nudge,
                installation_id=self._installation,
                now=now,
                fence=self._fence_for(nudge.account),
            )
        except (PipedriveError, errors.LeaseLost) as error:
            return error
        except Exception as error:
            if transient.known(error) is not None:  # the database is failing: later
                return error
            logger.exception(
                "account %r: confirming the deletion of %s item %s failed",
                nudge.account,
                nudge.object_type,
                nudge.entity_id,
                extra={"action": "instant.deletion_failed", "account": nudge.account},
            )
            return None
        if fired:
            self._on_events(fired)
        return None

    async def _relay(self, pending: list[Nudge]) -> None:
        """Hand deletes over through the database (`instant_deletes`): the account's holder
        drains them within a second, this replica's next start if it holds them then."""
        items = {
            (n.account, n.object_type, n.entity_id): self._clock.now()
            for n in pending
            if n.entity_id is not None
        }
        try:
            await instant_nudges.relay(self._engine, {}, items)
        except Exception as error:
            logger.error(
                "instant mode: %d unconfirmed deletion(s) could not be handed over (%s): "
                "nothing fired for them",
                len(items),
                errors.describe(error),
                extra={"action": "instant.deletion_given_up"},
            )

    async def aclose(self) -> None:
        """Cancel what is still running (a stop); deletes waiting to be tried again are handed
        over through the database first, for whichever replica holds their account next."""
        if self._retrying:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HAND_OVER_S):
                    await self._relay(list(self._retrying.values()))
        await clock_module.cancel(list(self._running.values()))
