"""Which changes Pipedrive's webhook announced: the nudges of the last while, so that a change
a listing finds and no nudge announced tells that Pipedrive is not calling (a ban drops 30
minutes of calls; a webhook deleted after three days of failures sends none)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from daemon.instant.nudges import Nudge

# Items remembered at most: a flood of nudges costs bounded memory, and an item pushed out
# only makes one change look unannounced (one listing sooner, nothing lost).
CAPACITY = 50_000


class Announcements:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        # Nudges that name no item (relayed from another replica, an unreadable body)
        # announce every change of their feed.
        self._feeds: dict[tuple[str, str], float] = {}

    def nudged(self, nudge: Nudge, now: float) -> None:
        if nudge.entity_id is None:
            self._feeds[(nudge.account, nudge.object_type)] = now
            return
        key = (nudge.account, nudge.object_type, nudge.entity_id)
        self._items[key] = now
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def unannounced(
        self,
        account: str,
        object_type: str,
        item_ids: Sequence[str],
        within_s: float,
        now: float,
    ) -> list[str]:
        """The items among `item_ids` that no nudge announced within `within_s` before now."""
        feed_at = self._feeds.get((account, object_type))
        if feed_at is not None and now - feed_at <= within_s:
            return []
        return [
            item
            for item in item_ids
            if (at := self._items.get((account, object_type, item))) is None or now - at > within_s
        ]
