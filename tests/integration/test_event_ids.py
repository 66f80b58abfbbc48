"""`webhook-id` never names two different events, whatever happens to the database.

Consumers deduplicate on it, so an id sent once for one change and again for another would
make them drop the second. Each test runs the poller against the sandbox on real databases,
as the daemon does, and reads the ids the outbox queued (the ids consumers receive).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon.db import database, tables
from daemon.dev.local_server import serve
from daemon.dev.sandbox import Sandbox
from daemon.pipedrive.lookups import LookupCache
from daemon.polling import plan, poller
from tests.conftest import API_TOKEN, config_text, scratch_postgres
from tests.sandbox_client import sandbox_client

UPDATED = [{"name": "orgs", "trigger": "organization.updated"}]
ADDED = [{"name": "deals", "trigger": "deal.added"}]


@dataclass
class Run:
    """One daemon process on one database: its poller, and what its outbox holds."""

    config: config_module.Config
    poll: poller.Poller
    engine: AsyncEngine

    async def cycle(self) -> None:
        for feed in plan.feeds(self.config):
            await self.poll.poll(feed)

    async def ids(self, trigger: str) -> list[str]:
        query = (
            select(tables.deliveries.c.event_id)
            .where(tables.deliveries.c.event_type == trigger)
            .order_by(tables.deliveries.c.id)
        )
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).scalars())

    async def names(self) -> list[str]:
        """The organization names the outbox's events carry, in detection order."""
        query = select(tables.deliveries.c.body).order_by(tables.deliveries.c.id)
        async with self.engine.connect() as connection:
            bodies = (await connection.execute(query)).scalars()
            return [json.loads(body)["data"]["name"] for body in bodies]

    async def version(self, item_id: int) -> int:
        query = select(tables.item_states.c.version).where(
            tables.item_states.c.item_id == str(item_id)
        )
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())


@pytest.fixture
def run(tmp_path: Path) -> Any:
    @contextlib.asynccontextmanager
    async def start(
        url: str, sandbox: Sandbox, subscriptions: list[dict[str, Any]]
    ) -> AsyncIterator[Run]:
        path = tmp_path / "config.toml"
        text = config_text(
            database_url=url,
            api_url=sandbox.base_url,
            callback_url="http://127.0.0.1:9",
            subscriptions=subscriptions,
        )
        path.write_text(text, encoding="utf-8")
        config = config_module.load(path)
        engine = database.create_engine(url)
        http, client = sandbox_client(sandbox.base_url)
        try:
            poll = poller.Poller(engine, {"main": client}, {"main": LookupCache()})
            yield Run(config, poll, engine)
        finally:
            await http.aclose()
            await engine.dispose()

    return start


@contextlib.contextmanager
def fresh_database(like: str, tmp_path: Path, name: str) -> Iterator[str]:
    """Another, new database of the same kind as `like`, migrated."""
    if like.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / name}.db"
        database.upgrade(url)
        yield url
        return
    with scratch_postgres("pdt_ids") as url:
        database.upgrade(url)
        yield url


@contextlib.contextmanager
def second_account(company_id: int) -> Iterator[Sandbox]:
    """Another Pipedrive account (another company), served beside the first."""
    other = Sandbox(token=API_TOKEN, company_id=company_id)
    with serve(other.app) as server:
        other.base_url = server.base_url  # type: ignore[attr-defined]
        yield other


async def test_a_fresh_database_gives_a_new_change_a_new_id(
    run: Any, database_url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The defect: the same config on a new database numbered a different change as version 2
    again, and sent it under the id the first database had sent for its version 2."""
    org = sandbox.add_organization("Acme")
    async with run(database_url, sandbox, UPDATED) as first:
        await first.cycle()  # sees the organization (version 1): older than the start
        sandbox.update_organization(org["id"], name="Acme Ltd")
        await first.cycle()
        before = await first.ids("organization.updated")
        assert await first.names() == ["Acme Ltd"] and await first.version(org["id"]) == 2
    # Whatever changed in the second a subscription starts counts as after it: let the second
    # of "Acme Ltd" pass, so the new database starts after it however loaded the machine is.
    await asyncio.sleep(1)
    with fresh_database(database_url, tmp_path, "fresh") as url:
        async with run(url, sandbox, UPDATED) as second:
            await second.cycle()
            sandbox.update_organization(org["id"], name="Acme Group")
            await second.cycle()
            after = await second.ids("organization.updated")
            assert await second.version(org["id"]) == 2  # the same number, another change
            assert await second.names() == ["Acme Group"]
    assert len(before) == len(after) == 1 and after != before


async def test_one_subscription_name_on_two_accounts_gives_two_ids(
    run: Any, database_url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Deal 1 of one company and deal 1 of another are two additions; deal 1 of the same
    company seen by two databases is one, and keeps its id."""
    with (
        second_account(company_id=7700002) as other,
        fresh_database(database_url, tmp_path, "other") as other_url,
        fresh_database(database_url, tmp_path, "again") as again_url,
    ):
        async with (
            run(database_url, sandbox, ADDED) as first,
            run(other_url, other, ADDED) as second,
            run(again_url, sandbox, ADDED) as third,
        ):
            for each in (first, second, third):
                await each.cycle()
            assert (sandbox.add_deal("Ours")["id"], other.add_deal("Theirs")["id"]) == (1, 1)
            for each in (first, second, third):
                await each.cycle()
            ours, theirs, ours_again = [await r.ids("deal.added") for r in (first, second, third)]
    assert len(ours) == len(theirs) == 1 and ours != theirs
    assert ours_again == ours


async def test_a_restored_backup_reuses_an_id_only_for_the_same_change(
    run: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A backup, a change the restored database never saw, then: re-reading that change gives
    its id again (the same event, deduplicated), and a later change gets a new one."""
    path = tmp_path / "live.db"
    url = f"sqlite:///{path}"
    database.upgrade(url)
    backup = tmp_path / "backup.db"
    org = sandbox.add_organization("Acme")
    async with run(url, sandbox, UPDATED) as live:
        await live.cycle()
        sandbox.update_organization(org["id"], name="Acme Ltd")
        await live.cycle()
        await live.engine.dispose()  # everything on disk before the copy
        shutil.copyfile(path, backup)
        sandbox.update_organization(org["id"], name="Acme Group")
        await live.cycle()
        lost = await live.ids("organization.updated")
        assert await live.version(org["id"]) == 3
    shutil.copyfile(backup, path)  # restored: it never saw "Acme Group"
    async with run(url, sandbox, UPDATED) as restored:
        await restored.cycle()
        assert await restored.ids("organization.updated") == lost  # the same change: same id
        await restored.engine.dispose()
    shutil.copyfile(backup, path)  # restored again, and the organization changes once more
    sandbox.update_organization(org["id"], name="Acme Holding")
    async with run(url, sandbox, UPDATED) as restored:
        await restored.cycle()
        ids = await restored.ids("organization.updated")
        assert await restored.version(org["id"]) == 3  # the number the lost change had
        assert (await restored.names())[-1] == "Acme Holding"
    assert len(lost) == len(ids) == 2  # version 1 predates the start: no event
    assert ids[0] == lost[0] and ids[1] not in lost


async def test_restarts_and_re_reads_keep_every_id(
    run: Any, database_url: str, sandbox: Sandbox
) -> None:
    """A restart (new client, new poller) and look-backs that read the same versions again
    queue nothing new; the company is asked once per client, and only when an event needs it."""
    subs = [*UPDATED, {"name": "deals", "trigger": "deal.updated"}]
    org = sandbox.add_organization("Acme")
    async with run(database_url, sandbox, subs) as first:
        await first.cycle()
        await first.cycle()
        sandbox.update_organization(org["id"], name="Acme Ltd")
        await first.cycle()
        await first.cycle()
        before = await first.ids("organization.updated")
        assert sandbox.calls_to("GET", "/v1/users/me") == 1
    async with run(database_url, sandbox, subs) as restarted:
        for _ in range(3):
            await restarted.cycle()  # the look-back reads the last version again
        assert await restarted.ids("organization.updated") == before
        assert sandbox.calls_to("GET", "/v1/users/me") == 1  # nothing new: nothing asked
        sandbox.update_organization(org["id"], name="Acme Group")
        await restarted.cycle()
        await restarted.cycle()
        after = await restarted.ids("organization.updated")
    assert len(before) == 1 and after[:1] == before and len(after) == 2
    assert sandbox.calls_to("GET", "/v1/users/me") == 2
