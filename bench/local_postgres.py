"""The benchmarks' PostgreSQL: the tests' server (trust auth on 127.0.0.1), started if down."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy

from daemon.db import database

POSTGRES_ADMIN_URL = os.environ.get(
    "PIPEDRIVE_TRIGGERS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def ensure_running() -> None:
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL)
    try:
        with admin.connect():
            return
    except sqlalchemy.exc.OperationalError:
        pass
    finally:
        admin.dispose()
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        raise RuntimeError("PostgreSQL is not running and no local cluster to start")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True
    )


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A migrated, empty database `bench_<random>` on the local server, dropped at the end."""
    ensure_running()
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = (
        sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL)
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    try:
        database.upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
