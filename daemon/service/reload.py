"""SIGHUP: re-read the config file and apply it to the running daemon, or reject it whole.

A valid new config takes effect without a restart: subscriptions and accounts added, removed
or changed (a changed `secret` signs the next attempt), and `[admin] token_file`, read again.
An invalid one is refused with the same lines `check-config` prints, logged once, and the
running config keeps going. `RESTART_ONLY` keys are said to need a restart. systemd
hears `RELOADING=1` (with `MONOTONIC_USEC`) when a reload begins and `READY=1` when it ends,
either way (`Type=notify-reload` waits for that pair).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon import config as config_module
from daemon.config import Config
from daemon.db import database
from daemon.errors import ConfigError, DatabaseError
from daemon.service import sd_notify

logger = logging.getLogger(__name__)

# Keys read once at start: a reload that changes them says so, and a restart applies them.
RESTART_ONLY = (
    "database.url",
    "delivery.timeout",
    "admin.listen",
    "instant.listen",
    "cluster.lease",
    "cluster.instance",
)


def read_config(path: str | Path) -> Config:
    """What `check-config` checks, as a Config or a ConfigError with every problem."""
    config = config_module.load_to_run(path)
    try:
        database.sync_url(config.database.url)
    except DatabaseError as error:
        raise ConfigError(str(path), [str(error)]) from None
    return config


@dataclass(frozen=True)
class Changes:
    """What a reload changes, by name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    accounts_added: list[str] = field(default_factory=list)
    accounts_removed: list[str] = field(default_factory=list)
    accounts_changed: list[str] = field(default_factory=list)
    restart_only: list[str] = field(default_factory=list)  # RESTART_ONLY keys that changed

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def _instant_listen(config: Config) -> str | None:
    return config.instant.listen if config.instant is not None else None


def changes(old: Config, new: Config) -> Changes:
    """Compare two configs (pure)."""
    old_subs = {s.name: s for s in old.subscriptions}
    new_subs = {s.name: s for s in new.subscriptions}
    old_accounts = {a.name: a for a in old.accounts}
    new_accounts = {a.name: a for a in new.accounts}
    restart_only = []
    if old.database.url != new.database.url:
        restart_only.append("database.url")
    if old.delivery.timeout != new.delivery.timeout:
        restart_only.append("delivery.timeout")
    if old.admin.listen != new.admin.listen:  # `[admin]` added or removed too
        restart_only.append("admin.listen")
    # The ingress binds once; the rest of `[instant]` is read by each repair (see
    # `instant.registration.repair_all`), so a reload applies it at the next one.
    if _instant_listen(old) != _instant_listen(new):  # `[instant]` added or removed too
        restart_only.append("instant.listen")
    # A replica keeps its name and lease for its life.
    restart_only.extend(
        f"cluster.{key}"
        for key in ("lease", "instance")
        if getattr(old.cluster, key) != getattr(new.cluster, key)
    )
    return Changes(
        added=[n for n in new_subs if n not in old_subs],
        removed=[n for n in old_subs if n not in new_subs],
        changed=[n for n in new_subs if n in old_subs and old_subs[n] != new_subs[n]],
        accounts_added=[n for n in new_accounts if n not in old_accounts],
        accounts_removed=[n for n in old_accounts if n not in new_accounts],
        accounts_changed=[
            n for n in new_accounts if n in old_accounts and old_accounts[n] != new_accounts[n]
        ],
        restart_only=restart_only,
    )


def log_changes(found: Changes) -> None:
    for name in found.added:
        logger.info(
            "reload: subscription %r added",
            name,
            extra={"action": "reload.subscription_added", "subscription": name},
        )
    for name in found.removed:
        logger.warning(
            "reload: subscription %r removed: it is no longer polled; its pending events stay "
            "in the outbox, shown as orphaned by `status`, until it comes back or is renamed "
            "(`subscriptions rename`)",
            name,
            extra={"action": "reload.subscription_removed", "subscription": name},
        )
    for name in found.changed:
        logger.info(
            "reload: subscription %r changed",
            name,
            extra={"action": "reload.subscription_changed", "subscription": name},
        )
    for kind, names in (
        ("added", found.accounts_added),
        ("removed", found.accounts_removed),
        ("changed", found.accounts_changed),
    ):
        for name in names:
            logger.info(
                "reload: account %r %s", name, kind, extra={"action": f"reload.account_{kind}"}
            )
    for key in found.restart_only:
        logger.warning(
            "reload: %s changed; it is read once at start, so restart the daemon to apply it",
            key,
            extra={"action": "reload.needs_restart"},
        )


class Reloads:
    """Reload requests (SIGHUP calls `request`), served one at a time by `serve`."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._requested = asyncio.Event()

    def request(self) -> None:
        self._requested.set()

    async def serve(
        self,
        apply: Callable[[Config], Awaitable[None]],
        reloaded: Callable[[bool], Awaitable[None]],
    ) -> None:
        """Forever: wait for a request, read the config, `apply` it or reject it, then
        `reloaded(rejected)`. Requests that come during a reload make one more reload."""
        while True:
            await self._requested.wait()
            self._requested.clear()
            sd_notify.reloading()
            logger.info("SIGHUP: reloading %s", self.path, extra={"action": "reload.started"})
            try:
                new = read_config(self.path)
            except ConfigError as error:
                logger.error(
                    "reload rejected; the running config keeps going:\n%s",
                    error,
                    extra={"action": "reload.rejected"},
                )
                await reloaded(True)
                continue
            try:
                await apply(new)
            except Exception:
                logger.exception(
                    "reload of %s failed while applying it",
                    self.path,
                    extra={"action": "reload.failed"},
                )
                await reloaded(True)
                continue
            logger.info("reloaded %s", self.path, extra={"action": "reload.done"})
            await reloaded(False)
