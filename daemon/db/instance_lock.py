"""One `run` per SQLite database: a second daemon would fight the first over SQLite's single
writer. (On PostgreSQL, replicas share the database: each account is polled by the holder of
its lease, see `db.leases`; nothing here applies.)

`flock(2)` on `<database>.lock` beside the file, held for the process's life. The kernel
releases it when the process ends however it ends (SIGKILL, a crash), so no stale lock is ever
left to clean by hand, and `status` and other readers are not blocked, as an exclusive SQLite
locking mode would block them. The file holds the holder's pid for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy
from sqlalchemy import select

from daemon.db import database, instances, tables
from daemon.errors import DatabaseError, DatabaseInUse

LOCK_SUFFIX = ".lock"


def lock_path(url: str) -> Path | None:
    """The lock file for a SQLite file database, None for other databases."""
    parsed = database.parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(f"{parsed.database}{LOCK_SUFFIX}")


@contextlib.contextmanager
def hold(url: str) -> Iterator[None]:
    """Hold a SQLite database's lock until the block ends, or raise DatabaseInUse at once;
    nothing to hold on other databases."""
    path = lock_path(url)
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise DatabaseError(
            f"cannot open database {path.with_suffix('')}: cannot create its lock file "
            f"{path} ({error.strerror}; does the directory exist, and may this user write to it?)"
        ) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            raise DatabaseInUse(
                str(database.parse_url(url).database), f"lock {path}", f"pid {holder or 'unknown'}"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def is_held(url: str) -> bool:
    """Whether a `run` works on the database now (for commands that must not run beside
    one): the SQLite lock is held, or a replica's heartbeat in the database is fresh."""
    if lock_path(url) is not None:
        try:
            with hold(url):
                return False
        except DatabaseInUse:
            return True
    return bool(_running_replicas(url))


def _running_replicas(url: str) -> list[str]:
    engine = database.create_sync_engine(url, pooled=False)
    try:
        with database.opening(url), engine.connect() as connection:
            rows = connection.execute(select(tables.instances)).all()
    except sqlalchemy.exc.ProgrammingError:  # not migrated yet: nothing ever ran on it
        return []
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    replicas = (instances.Instance(**row._mapping) for row in rows)
    return [r.instance for r in replicas if r.state(now) == "running"]
