"""The feed plan: which (account, object type) feeds a config asks for, who reads each, and how
often it is listed. Pure: the poller, the forecast, status and the admin listener read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon import times
from daemon.config import EARLIEST_TIME, LATEST_TIME, Config, SubscriptionConfig
from daemon.triggers.base import ObjectType


@dataclass(frozen=True)
class Feed:
    """Subscriptions that watch one object type of one account: they share one listing."""

    account: str
    object: ObjectType
    subscriptions: tuple[SubscriptionConfig, ...]
    interval_s: float
    look_back_s: float

    @property
    def key(self) -> str:
        return f"{self.account}/{self.object.name}"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subscriptions]


def feeds(config: Config, intervals: Mapping[tuple[str, str], float] | None = None) -> list[Feed]:
    """One feed per watched (account, object type); an object nobody subscribes to is never
    listed. A feed polls at its fastest subscription's interval unless `intervals` says."""
    grouped: dict[tuple[str, str], list[SubscriptionConfig]] = {}
    objects: dict[str, ObjectType] = {}
    for subscription in config.subscriptions:
        obj = subscription.definition.object
        objects[obj.name] = obj
        grouped.setdefault((subscription.account, obj.name), []).append(subscription)
    result = []
    for (account, object_name), subs in grouped.items():
        interval = min(s.poll_interval for s in subs)
        if intervals is not None:
            interval = intervals.get((account, object_name), interval)
        look_back = config.account(account).look_back
        result.append(Feed(account, objects[object_name], tuple(subs), interval, look_back))
    return result


def unservable(feed: Feed) -> dict[str, str]:
    """Subscriptions whose `start` this feed cannot read from (by name, with why): outside
    the config's bounds once in UTC, or so early that the look-back leaves datetime's range.
    The config refuses such values; this keeps one that slips through from stalling a feed."""
    refused: dict[str, str] = {}
    look_back = timedelta(seconds=feed.look_back_s)
    for sub in feed.subscriptions:
        if not isinstance(sub.start, datetime):
            continue
        try:
            utc = sub.start.astimezone(UTC)
            fits = EARLIEST_TIME <= utc <= LATEST_TIME and utc - look_back < utc
        except OverflowError:
            fits = False
        if not fits:
            refused[sub.name] = (
                f"start {times.format_iso(sub.start)} cannot be served: it must be between "
                f"{times.format_rfc3339_z(EARLIEST_TIME)} and "
                f"{times.format_rfc3339_z(LATEST_TIME)} in UTC; fix the config"
            )
    return refused
