"""This replica's share of the accounts: it beats its heartbeat, renews the leases it holds,
gives up what is over its share and takes free accounts up to it, once a second (a lease
freed by a replica that stopped is taken within about a second; one that ran out, within a
second of running out).

Each account is polled only by its lease holder, so its listings, lookups, rate limiter, 429
pauses and budget live in that one process. Leases are renewed every third of `[cluster]
lease`; when the database has not confirmed them for a whole lease, this replica stops
acting on every one (a commit would be refused anyway, see `db.leases.fence`) and takes them
again only through `acquire`, as any other replica would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.db import instances, leases, transient

logger = logging.getLogger(__name__)

LOOK_S = 1.0  # how often free leases are looked for (a cheap indexed read when none are)


@dataclass(frozen=True)
class Moves:
    release: int  # how many held accounts to give up
    acquire: int  # how many free ones to take


def share(accounts: int, replicas: int) -> int:
    """The most accounts one replica should hold: an even split, rounded up."""
    return math.ceil(accounts / max(replicas, 1))


def moves(held: int, accounts: int, replicas: int) -> Moves:
    """Pure: what a replica holding `held` of `accounts` does, with `replicas` live ones."""
    target = share(accounts, replicas)
    return Moves(release=max(held - target, 0), acquire=max(target - held, 0))


Gained = Callable[[dict[str, int]], Awaitable[None]]
Lost = Callable[[set[str]], None]


class LeaseKeeper:
    """The accounts this replica holds, with the epoch each was granted under."""

    def __init__(
        self,
        engine: AsyncEngine,
        me: instances.Me,
        accounts: Collection[str],
        *,
        on_gained: Gained,
        on_lost: Lost,
        clock: clock_module.Clock = clock_module.SYSTEM,
        sole: bool = False,
    ) -> None:
        self._engine = engine
        # The only process that may use the database (SQLite's lock says so): nobody can take
        # a lease over, so a late renewal (a busy single writer) never stops its polls.
        self._sole = sole
        self.me = me
        self._accounts = set(accounts)
        self._ensured: set[str] = set()
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._clock = clock
        self._held: dict[str, int] = {}  # lease name -> epoch
        self._valid_until = -math.inf  # monotonic: when held leases stop being trusted
        self._next_renewal = -math.inf
        self._outage = transient.Outage()
        self._fingerprints_said: set[str] = set()

    @property
    def lease_s(self) -> float:
        return self.me.lease_s

    def _trusted(self) -> bool:
        return self._sole or self._clock.monotonic() < self._valid_until

    def holds(self, account: str) -> bool:
        return leases.account_lease(account) in self._held and self._trusted()

    def fence(self, account: str) -> leases.Fence:
        """What a write for `account` must still hold; epoch 0 (never granted) when this
        replica does not hold it, so such a write is refused."""
        name = leases.account_lease(account)
        return leases.Fence(name, self.me.instance, self._held.get(name, 0))

    @property
    def holds_singleton(self) -> bool:
        return leases.SINGLETON in self._held and self._trusted()

    @property
    def held_accounts(self) -> list[str]:
        return sorted(a for n in self._held if (a := leases.lease_account(n)) is not None)

    def set_accounts(self, accounts: Collection[str]) -> None:
        """A reload's accounts: ones removed are given up at the next look."""
        self._accounts = set(accounts)

    async def run(self) -> None:
        """Look every LOOK_S until cancelled; a database outage is logged once."""
        while True:
            try:
                await self.look()
                self._outage.recovered()
            except Exception as error:
                if transient.known(error) is None:
                    logger.exception("lease upkeep failed", extra={"action": "lease.crashed"})
                else:
                    self._outage.failed("keeping leases", error)
                self._drop_if_untrusted()
            await self._clock.sleep(LOOK_S)

    def _drop_if_untrusted(self) -> None:
        if self._held and not self._trusted():
            lost = set(self._held)
            self._held = {}
            logger.warning(
                "the database has not confirmed this replica's leases for %gs: it stops "
                "polling its %d accounts until it takes them again",
                self.lease_s,
                len([n for n in lost if leases.lease_account(n) is not None]),
                extra={"action": "lease.expired"},
            )
            self._lost(lost)

    def _lost(self, names: set[str]) -> None:
        accounts = {a for n in names if (a := leases.lease_account(n)) is not None}
        if accounts:
            self._on_lost(accounts)

    async def look(self) -> None:
        now = self._clock.now()
        started = self._clock.monotonic()
        wanted = {leases.account_lease(a) for a in self._accounts} | {leases.SINGLETON}
        if wanted - self._ensured:
            await leases.ensure(self._engine, wanted - self._ensured)
            self._ensured |= wanted
        if started >= self._next_renewal:
            await instances.beat(self._engine, self.me, now)
            kept = await leases.renew(self._engine, self._held, self.me.instance, self.lease_s, now)
            lost = set(self._held) - kept
            self._held = {n: e for n, e in self._held.items() if n in kept}
            self._valid_until = started + self.lease_s
            self._next_renewal = started + self.lease_s / 3
            if lost:
                logger.warning(
                    "lost %d leases to other replicas (this one was paused or cut off): %s",
                    len(lost),
                    ", ".join(sorted(lost)),
                    extra={"action": "lease.lost"},
                )
                self._lost(lost)
        elif not self._trusted():
            return
        await self._balance()

    async def _balance(self) -> None:
        now = self._clock.now()
        replicas = await instances.read_all(self._engine)
        live = [r for r in replicas if r.is_live(now) or r.instance == self.me.instance]
        self._say_config_differences(live)
        held_accounts = {n for n in self._held if leases.lease_account(n) is not None}
        unwanted = {n for n in held_accounts if leases.lease_account(n) not in self._accounts}
        move = moves(len(held_accounts - unwanted), len(self._accounts), len(live))
        give_up = set(unwanted)
        if move.release:
            give_up |= set(sorted(held_accounts - unwanted)[-move.release :])
        if give_up:
            await leases.release(self._engine, give_up, self.me.instance)
            for name in give_up:
                self._held.pop(name, None)
            logger.info(
                "gave up %d accounts to other replicas (%d replicas share %d accounts)",
                len(give_up),
                len(live),
                len(self._accounts),
                extra={"action": "lease.released"},
            )
            self._lost(give_up)
        granted: dict[str, int] = {}
        if move.acquire:
            free = [leases.account_lease(a) for a in self._accounts]
            granted |= await leases.acquire(
                self._engine,
                [n for n in free if n not in self._held],
                self.me.instance,
                self.lease_s,
                now,
                move.acquire,
            )
        if leases.SINGLETON not in self._held:
            granted |= await leases.acquire(
                self._engine, [leases.SINGLETON], self.me.instance, self.lease_s, now, 1
            )
        if not granted:
            return
        self._held.update(granted)
        gained = {a: e for n, e in granted.items() if (a := leases.lease_account(n)) is not None}
        if gained:
            logger.info(
                "took %d accounts (%d replicas share %d accounts)",
                len(gained),
                len(live),
                len(self._accounts),
                extra={"action": "lease.acquired"},
            )
            await self._on_gained(gained)

    def _say_config_differences(self, live: list[instances.Instance]) -> None:
        """Once per fingerprint: a replica running another config (a rollout half done)."""
        mine = self.me.config_fingerprint
        for replica in live:
            theirs = replica.config_fingerprint
            if theirs is None or theirs == mine or theirs in self._fingerprints_said:
                continue
            self._fingerprints_said.add(theirs)
            logger.warning(
                "replica %r runs another config than this one (fingerprint %s, this one %s): "
                "finish the rollout so every replica reads the same file",
                replica.instance,
                theirs,
                mine,
                extra={"action": "cluster.config_differs"},
            )

    async def stop(self) -> None:
        """A clean stop: this replica marked stopped, then every lease given up, so the
        others count one replica less and take all its accounts at their next look."""
        names = set(self._held)
        self._held = {}
        try:
            await instances.mark_stopped(self._engine, self.me, self._clock.now())
        finally:
            await leases.release(self._engine, names, self.me.instance)
