"""`instance_lock.is_held` on PostgreSQL, where no file lock exists: a command that must not
run beside the daemon (`subscriptions rename`) asks the replicas' heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy

from daemon.db import database, instance_lock, tables
from tests.conftest import scratch_postgres


def _beat(url: str, name: str, heartbeat_at: datetime, stopped: bool = False) -> None:
    engine = database.create_sync_engine(url, pooled=False)
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.insert(tables.instances).values(
                instance=name,
                host="host-a",
                pid=4242,
                started_at=heartbeat_at - timedelta(minutes=5),
                heartbeat_at=heartbeat_at,
                stopped_at=heartbeat_at if stopped else None,
                lease_s=10.0,
            )
        )
    engine.dispose()


def test_only_a_replica_beating_now_holds_a_postgresql_database() -> None:
    with scratch_postgres("pdt_lock") as url:
        assert not instance_lock.is_held(url), "never migrated: nothing ever ran on it"
        database.upgrade(url)
        assert not instance_lock.is_held(url)
        now = datetime.now(UTC)
        _beat(url, "stopped", now, stopped=True)
        _beat(url, "gone", now - timedelta(seconds=25))  # two leases of 10 s ago and more
        assert not instance_lock.is_held(url)
        _beat(url, "running", now)
        assert instance_lock.is_held(url)
