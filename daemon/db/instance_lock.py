"""One `run` per database: a second daemon would poll everything twice (doubling the API
spend), and on SQLite fight over its single writer.

SQLite: `flock(2)` on `<database>.lock` beside the file, held for the process's life. The
kernel releases it when the process ends however it ends (SIGKILL, a crash), so no stale lock
is ever left to clean by hand, and `status` and other readers are not blocked, as an
exclusive SQLite locking mode would block them. The file holds the holder's pid for the
message.

PostgreSQL: a session advisory lock on a connection of its own, held for the process's life.
The server drops it with the session; server-side TCP keepalives of 10 s (3 probes 5 s apart)
make that happen within half a minute when the daemon's host is gone, not after the kernel's
two hours. (Replicas sharing one database by leases per feed would replace this lock.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from sqlalchemy import func, select

from daemon.db import database
from daemon.db.tables import heartbeat
from daemon.errors import DatabaseError, DatabaseInUse

LOCK_SUFFIX = ".lock"


# pg_advisory_lock's key: the first 8 bytes of sha256("pipedrive-triggers run"), signed.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"pipedrive-triggers run").digest()[:8], signed=True)
KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


def lock_path(url: str) -> Path | None:
    """The lock file for a SQLite file database, None for other databases."""
    parsed = database.parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(f"{parsed.database}{LOCK_SUFFIX}")


@contextlib.contextmanager
def hold(url: str) -> Iterator[None]:
    """Hold the database's lock until the block ends, or raise DatabaseInUse at once."""
    if database.parse_url(url).get_backend_name() == "postgresql":
        with _advisory_lock(url):
            yield
        return
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


@contextlib.contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    engine = database.create_sync_engine(url, pooled=False)
    try:
        with database.opening(url):
            connection = engine.connect()
        try:
            with database.opening(url):
                for name, value in KEEPALIVES.items():
                    connection.exec_driver_sql(f"SET {name} = {value}")
                held = connection.scalar(select(func.pg_try_advisory_lock(ADVISORY_KEY)))
                connection.commit()
            if not held:
                raise DatabaseInUse(
                    database.describe(url),
                    f"PostgreSQL advisory lock {ADVISORY_KEY}",
                    _heartbeat_holder(connection),
                )
            yield
        finally:
            connection.close()  # ends the session, and so the lock
    finally:
        engine.dispose()


def _heartbeat_holder(connection: sqlalchemy.Connection) -> str:
    """Who holds it, as its last heartbeat says (see `heartbeat`)."""
    try:
        row = connection.execute(
            select(heartbeat.c.pid, heartbeat.c.host).where(heartbeat.c.name == "daemon")
        ).first()
    except sqlalchemy.exc.DBAPIError:
        connection.rollback()
        row = None
    return f"pid {row.pid} on {row.host}" if row else "pid unknown"


def is_held(url: str) -> bool:
    """Whether a `run` holds the database's lock now (for commands that must not run beside
    one)."""
    try:
        with hold(url):
            return False
    except DatabaseInUse:
        return True
